"""The forms of the OAuth2 Provider Types: Microsoft 365, Google Workspace and Custom
Server with OAuth2, each with the fields its provider needs and its words for them.

Why apart from :mod:`.forms`: the contract's Custom Server form must stay as the vendor
guide has it, and each provider here names the same settings its own way (the Username is
the Mailbox to send as; the Password slot holds a client secret or a key file). What is
checked is still the service's rules (:func:`~flask_smtp_senders.validation.validate_settings`
by provider, :func:`~flask_smtp_senders.services.providers.checked_secret`).

Secrets are write-only here as the password is: a PasswordField, a textarea that never
renders its value, a file input; each is typed again with every edit.
"""

from __future__ import annotations

from typing import Any

from flask_wtf.file import FileField
from wtforms import PasswordField, StringField, TextAreaField
from wtforms.widgets import DateInput

from ..domain import PROVIDER_SERVERS, Provider
from ..services.providers import MAX_KEY_FILE
from .forms import SenderForm, SettingsForm

MSG_KEY_TWICE = "Upload the key file or paste its JSON, not both."
MSG_KEY_NOT_TEXT = "The key file must be the JSON file Google made (UTF-8 text)."


class SecretTextAreaField(TextAreaField):
    """A textarea that never sends its value back to the browser (a pasted key)."""

    def _value(self) -> str:
        return ""


def _preset(provider: Provider) -> tuple[str, str]:
    """The Server Name and Port a provider's new senders start with."""
    server, port = PROVIDER_SERVERS[provider]
    return server, str(port)


def _date_field() -> StringField:
    # A string, not a DateField: the service's rule says what is wrong with a bad date.
    return StringField("Secret Expires", widget=DateInput())


class _Addresses:
    """From and Reply-To, as on the Custom Server form."""

    from_name = StringField("From Name")
    from_address = StringField("From Address")
    reply_to_name = StringField("Reply-To Name")
    reply_to_address = StringField("Reply-To Address")


class MicrosoftForm(_Addresses, SettingsForm):
    """Email Sender Microsoft 365: an Entra app's client credentials, the mailbox it
    sends as, Microsoft's SMTP endpoint (editable)."""

    provider = Provider.MICROSOFT365
    heading = "Email Sender Microsoft 365"
    write_only_field = "client_secret"

    tenant_id = StringField("Tenant ID")
    client_id = StringField("Client ID")
    client_secret = PasswordField("Client Secret")
    username = StringField("Mailbox")
    server_name = StringField("Server Name", default=_preset(Provider.MICROSOFT365)[0])
    port = StringField("Port", default=_preset(Provider.MICROSOFT365)[1])
    secret_expires = _date_field()


class GoogleForm(_Addresses, SettingsForm):
    """Email Sender Google Workspace: a service account key (uploaded or pasted) with
    domain-wide delegation, the Workspace user it sends as, Gmail's SMTP endpoint."""

    provider = Provider.GOOGLE
    heading = "Email Sender Google Workspace"
    write_only_field = "service_account_key"
    multipart = True

    service_account_key_file = FileField("Service Account Key File")
    service_account_key = SecretTextAreaField("Service Account Key")
    username = StringField("Workspace User")
    server_name = StringField("Server Name", default=_preset(Provider.GOOGLE)[0])
    port = StringField("Port", default=_preset(Provider.GOOGLE)[1])
    secret_expires = _date_field()

    _key: str | None = None

    def secret(self) -> str:
        """The key file's text: the uploaded file's, else the pasted JSON."""
        if self._key is None:
            self._key = self._read_key()
        return self._key

    def _read_key(self) -> str:
        upload = self.service_account_key_file.data
        pasted = str(self.service_account_key.data or "")
        if upload is None or not getattr(upload, "filename", ""):
            return pasted
        if pasted.strip():
            raise ValueError(MSG_KEY_TWICE)
        data = upload.stream.read(MAX_KEY_FILE + 1)  # a longer one is refused as such
        try:
            return str(data.decode("utf-8-sig"))
        except UnicodeDecodeError:
            raise ValueError(MSG_KEY_NOT_TEXT) from None

    def validate(self, extra_validators: Any = None) -> bool:
        try:
            self.secret()
        except ValueError as exc:
            self._key = ""
            super().validate(extra_validators)  # every other field is checked too
            self.service_account_key.errors = [str(exc)]
            return False
        return super().validate(extra_validators)


class OAuth2Form(_Addresses, SettingsForm):
    """Email Sender Custom Server with OAuth2: any authorization server's client
    credentials grant (token URL, client ID and secret, scope)."""

    provider = Provider.OAUTH2
    heading = "Email Sender Custom Server with OAuth2"
    write_only_field = "client_secret"

    token_url = StringField("Token URL")
    client_id = StringField("Client ID")
    client_secret = PasswordField("Client Secret")
    scope = StringField("Scope")
    username = StringField("Username")
    server_name = StringField("Server Name")
    port = StringField("Port", default="465")
    secret_expires = _date_field()


#: The form of each Provider Type (the "+" step's choice, a saved sender's edit page).
FORMS: dict[Provider, type[SettingsForm]] = {
    Provider.CUSTOM: SenderForm,
    Provider.MICROSOFT365: MicrosoftForm,
    Provider.GOOGLE: GoogleForm,
    Provider.OAUTH2: OAuth2Form,
}


def form_for(provider: Provider, **kwargs: Any) -> SettingsForm:
    """A new form for ``provider``'s senders (``formdata=None``: not from the request)."""
    return FORMS[provider](**kwargs)
