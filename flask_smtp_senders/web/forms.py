"""One FlaskForm per screen, labelled with the contract's words.

CSRF is forced on (``Meta.csrf``) even when a host turns it off globally. Field rules are
not repeated here: :mod:`flask_smtp_senders.validation` checks the values and its messages
are put beside the fields they concern. Password fields are never re-rendered.

:class:`SettingsForm` is what every sender form shares (filling, checking, where the
secret's errors go); :class:`SenderForm` is the contract's Custom Server, and the OAuth2
providers' forms are in :mod:`.provider_forms`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from flask_wtf import FlaskForm
from wtforms import HiddenField, PasswordField, SelectField, StringField, SubmitField
from wtforms.fields.choices import SelectChoice

from ..addresses import AddressRules
from ..domain import Provider
from ..errors import InvalidSenderData
from ..services.providers import checked_secret
from ..services.public import sender_tag, version_read
from ..state import get_service
from ..validation import (
    SETTING_NAMES,
    SenderSettings,
    validate_recipient,
    validate_settings,
)

if TYPE_CHECKING:
    from ..storage.base import Sender


def _rules() -> AddressRules:
    """The addresses the app allows: its SMTPUTF8 and internal-domain settings."""
    return get_service().address_rules


class _Form(FlaskForm):
    class Meta:
        csrf = True  # never off for these forms

    def add_errors(self, errors: dict[str, str]) -> None:
        for name, text in errors.items():
            field = self._fields.get(self.field_for(name))
            if field is not None:
                field.errors = [*field.errors, text]

    def field_for(self, name: str) -> str:
        """The field of this form an error about setting ``name`` is shown beside."""
        return name


class _Versioned:
    """A form with the hidden version field of the sender it changes."""

    version: HiddenField

    def expected_version(self, sender: Sender) -> int | None:
        """The version the page was read at (see :func:`.public.version_read`)."""
        return version_read(self.version.data, sender)


class NewSenderForm(_Form):
    """The + step: what kind of sender to add. Custom Server comes first, so a browser
    shows it chosen (the contract's choice); the OAuth2 providers follow. No default: a
    post without a Provider Type leads nowhere."""

    sender_type = SelectField("Sender Type", choices=[SelectChoice("email", "Email")])
    provider_type = SelectField("Provider Type", choices=[
        SelectChoice(provider.value, provider.label) for provider in Provider])
    submit = SubmitField("Next")


class SettingsForm(_Versioned, _Form):
    """What every sender form shares: its Provider Type, its heading, which field holds
    the write-only secret (a password, a client secret, a key) and the checks. Why one
    base: the settings' rules and the secret's are the service's, so each provider's form
    only says which fields it shows and under which labels."""

    provider: ClassVar[Provider]
    heading: ClassVar[str]
    #: The field the secret is typed in; the service's errors about "password" go there.
    write_only_field: ClassVar[str] = "password"
    #: Whether the form uploads a file (multipart/form-data).
    multipart: ClassVar[bool] = False

    version = HiddenField()
    submit = SubmitField("Save")

    settings: SenderSettings | None = None

    @property
    def secret_label(self) -> str:
        """What the secret is called on this form ("Password", "Client Secret"...)."""
        return str(self[self.write_only_field].label.text)

    @property
    def setting_names(self) -> tuple[str, ...]:
        """The settings this form shows (the others stay empty for its provider)."""
        return tuple(name for name in SETTING_NAMES if name in self._fields)

    def field_for(self, name: str) -> str:
        return self.write_only_field if name == "password" else name

    def secret(self) -> str:
        """The secret as typed (never kept on the page)."""
        return str(self[self.write_only_field].data or "")

    def fill(self, sender: Sender) -> None:
        """The saved settings; for a row changed behind the application's back, what is
        wrong with each field is shown beside it (``Sender.problems``)."""
        for name in self.setting_names:
            self[name].data = str(getattr(sender.settings, name))
        self.version.data = sender_tag(sender)
        self.add_errors(dict(getattr(sender, "problems", {}) or {}))

    def validate(self, extra_validators: Any = None) -> bool:
        ok = super().validate(extra_validators)
        values = {name: self[name].data or "" for name in self.setting_names}
        try:
            self.settings = validate_settings(**values, provider=self.provider.value,
                                              rules=_rules())
        except InvalidSenderData as exc:
            self.add_errors(exc.errors)
            ok = False
        try:
            checked_secret(self.provider, self.secret())
        except InvalidSenderData as exc:
            self.add_errors(exc.errors)
            ok = False
        return ok


class SenderForm(SettingsForm):
    """Email Sender Custom SMTP Server."""

    provider = Provider.CUSTOM
    heading = "Email Sender Custom SMTP Server"

    username = StringField("Username")
    password = PasswordField("Password")
    server_name = StringField("Server Name")
    port = StringField("Port", default="465")
    from_name = StringField("From Name")
    from_address = StringField("From Address")
    reply_to_name = StringField("Reply-To Name")
    reply_to_address = StringField("Reply-To Address")


class TestEmailForm(_Form):
    """Send Test Email: one recipient, nothing else is the user's to choose."""

    __test__ = False  # not a pytest test class

    recipient = StringField("Send to")
    submit = SubmitField("Send")
    check = SubmitField("Check connection")

    def validate(self, extra_validators: Any = None) -> bool:
        ok = super().validate(extra_validators)
        try:
            self.recipient.data = validate_recipient(self.recipient.data or "", _rules())
        except InvalidSenderData as exc:
            self.add_errors(exc.errors)
            ok = False
        return ok


class CheckConnectionForm(TestEmailForm):
    """Check connection, the dry run: the recipient (for RCPT TO) may be left empty, and
    then the From Address stands in."""

    def validate(self, extra_validators: Any = None) -> bool:
        if (self.recipient.data or "").strip(" \t"):
            return super().validate(extra_validators)
        self.recipient.data = None
        return _Form.validate(self, extra_validators)


class DeleteForm(_Versioned, _Form):
    version = HiddenField()
    submit = SubmitField("Delete")


class DefaultForm(_Form):
    """Make a sender the default for the host's own messages."""

    submit = SubmitField("Make default")
