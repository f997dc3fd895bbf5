"""The rules every sender field obeys, shared by the forms, the API, the CLI and the Python
API, so that each entry point refuses the same values with the same messages.

Text fields pass :mod:`flask_smtp_senders.text_checks` (no control character, no encoded
word hiding one); addresses pass :mod:`flask_smtp_senders.addresses` under the host's
:class:`~flask_smtp_senders.addresses.AddressRules`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, fields

from .addresses import DNS_LABEL, MAX_SERVER_NAME, AddressRules, normalise_address
from .domain import Provider
from .errors import InvalidSenderData
from .provider_fields import check_field, provider_of
from .text_checks import (
    CONTROL,
    MSG_CONTROL,
    MSG_REQUIRED,
    MSG_UNENCODABLE,
    check_name,
    check_text,
    too_long,
    unencodable,
)

MAX_NAME = 200
MAX_USERNAME = 254
MAX_PASSWORD = 1024
DEFAULT_PORT = 465

MSG_PORT = "Enter a port number from 1 to 65535."
MSG_SERVER = "Enter a host name or IP address, without a scheme, a port or spaces."


@dataclass(frozen=True)
class SenderSettings:
    """What an administrator enters for a sender, the password aside."""

    username: str
    server_name: str
    from_address: str
    port: int = DEFAULT_PORT
    from_name: str = ""
    reply_to_name: str = ""
    reply_to_address: str = ""
    #: How it signs in: a :class:`~flask_smtp_senders.domain.Provider` value. The fields
    #: below are the OAuth2 providers' (``provider_fields.USED``); "" when unused.
    provider: str = Provider.CUSTOM.value
    tenant_id: str = ""
    client_id: str = ""
    token_url: str = ""
    scope: str = ""
    #: When the client secret or key stops working (YYYY-MM-DD), to warn ahead of it.
    secret_expires: str = ""

    @property
    def provider_type(self) -> Provider:
        """The Provider Type (Custom Server for a value no release knows)."""
        try:
            return Provider(self.provider)
        except ValueError:
            return Provider.CUSTOM


SETTING_NAMES = tuple(f.name for f in fields(SenderSettings))
#: Each setting's label, as the form shows it.
SETTING_LABELS = {"username": "Username", "server_name": "Server Name", "port": "Port",
                  "from_name": "From Name", "from_address": "From Address",
                  "reply_to_name": "Reply-To Name", "reply_to_address": "Reply-To Address",
                  "password": "Password", "provider": "Provider Type",
                  "tenant_id": "Tenant ID", "client_id": "Client ID",
                  "token_url": "Token URL", "scope": "Scope",
                  "secret_expires": "Secret Expires"}


def normalise_server_name(value: str) -> str:
    """A host name (IDN allowed, returned in punycode) or an IP address literal."""
    if isinstance(value, str) and unencodable(value):
        raise ValueError(MSG_UNENCODABLE)
    if not value or CONTROL.search(value) or any(c.isspace() for c in value):
        raise ValueError(MSG_SERVER if value else MSG_REQUIRED)
    if len(value) > MAX_SERVER_NAME:
        raise ValueError(too_long(MAX_SERVER_NAME))
    candidate = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        pass
    try:
        ascii_name = value.rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise ValueError(MSG_SERVER) from None
    labels = ascii_name.split(".")
    if len(ascii_name) > MAX_SERVER_NAME or not all(DNS_LABEL.match(label) for label in labels):
        raise ValueError(MSG_SERVER)
    if labels[-1].isdigit():
        raise ValueError(MSG_SERVER)
    return ascii_name


def normalise_port(value: object) -> int:
    """An integer port 1-65535; blank means the default, 465."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return DEFAULT_PORT
    if isinstance(value, bool):
        raise ValueError(MSG_PORT)
    if isinstance(value, int):
        port = value
    elif (isinstance(value, str) and value.strip().isascii() and value.strip().isdigit()
          and len(value.strip()) <= 5):
        port = int(value.strip())
    else:
        raise ValueError(MSG_PORT)
    if not 1 <= port <= 65535:
        raise ValueError(MSG_PORT)
    return port


def validate_password(password: str | None) -> str:
    """The password as typed: required, bounded, otherwise used exactly."""
    if not password:
        raise InvalidSenderData({"password": MSG_REQUIRED})
    if not isinstance(password, str) or unencodable(password):
        raise InvalidSenderData({"password": MSG_UNENCODABLE})
    if len(password) > MAX_PASSWORD:
        raise InvalidSenderData({"password": too_long(MAX_PASSWORD)})
    if "\x00" in password:
        raise InvalidSenderData({"password": MSG_CONTROL})
    return password


def validate_settings(
    *,
    username: str,
    server_name: str,
    from_address: str,
    port: object = DEFAULT_PORT,
    from_name: str = "",
    reply_to_name: str = "",
    reply_to_address: str = "",
    provider: str = Provider.CUSTOM.value,
    tenant_id: str = "",
    client_id: str = "",
    token_url: str = "",
    scope: str = "",
    secret_expires: str = "",
    rules: AddressRules = AddressRules(),
) -> SenderSettings:
    """Check every field at once; raise InvalidSenderData with one message per bad field.
    ``rules``: the addresses the app allows (``AddressRules.from_config(app.config)``)."""
    errors: dict[str, str] = {}
    clean: dict[str, object] = {}

    def run(name: str, check) -> None:  # type: ignore[no-untyped-def]
        try:
            clean[name] = check()
        except ValueError as exc:
            errors[name] = str(exc)

    def text(value: str, limit: int, required: bool, name: bool = False) -> str:
        value = (value or "").strip(" \t")
        if required and not value:
            raise ValueError(MSG_REQUIRED)
        problem = (check_name if name else check_text)(value, limit)
        if problem:
            raise ValueError(problem)
        return value

    def address(value: str, required: bool) -> str:
        value = (value or "").strip(" \t")
        if not value:
            if required:
                raise ValueError(MSG_REQUIRED)
            return ""
        return normalise_address(value, rules)

    run("username", lambda: text(username, MAX_USERNAME, True))
    run("server_name", lambda: normalise_server_name((server_name or "").strip(" \t")))
    run("port", lambda: normalise_port(port))
    run("from_name", lambda: text(from_name, MAX_NAME, False, name=True))
    run("from_address", lambda: address(from_address, True))
    run("reply_to_name", lambda: text(reply_to_name, MAX_NAME, False, name=True))
    run("reply_to_address", lambda: address(reply_to_address, False))
    run("provider", lambda: provider_of(provider).value)
    kind = provider_of(clean.get("provider", ""))  # a bad one is reported above
    if kind.uses_oauth and "username" in clean:  # the mailbox to send as
        run("username", lambda: address(str(clean["username"]), True))
    oauth = {"tenant_id": tenant_id, "client_id": client_id, "token_url": token_url,
             "scope": scope, "secret_expires": secret_expires}
    for field_name, value in oauth.items():
        run(field_name, lambda n=field_name, v=value: check_field(
            n, text(v, 4096, False), kind))
    if errors:
        raise InvalidSenderData(errors)
    return SenderSettings(**clean)  # type: ignore[arg-type]


def validate_recipient(value: str, rules: AddressRules = AddressRules()) -> str:
    """Exactly one recipient address (no lists, no display names) that ``rules`` allow."""
    try:
        return normalise_address((value or "").strip(" \t"), rules)
    except ValueError as exc:
        raise InvalidSenderData({"recipient": str(exc)}) from None
