"""The rules every sender field obeys, shared by the forms and the Python API.

Values that reach an SMTP command or a mail header never hold CR, LF, NUL or any other
control character; addresses go through email-validator (never ``parseaddr``), with no
SMTPUTF8: a non-ASCII local part is refused and an IDN domain is punycoded on the wire.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass, fields

from email_validator import EmailNotValidError, validate_email

from .errors import InvalidSenderData

MAX_NAME = 200
MAX_ADDRESS = 254
MAX_USERNAME = 254
MAX_SERVER_NAME = 253
MAX_PASSWORD = 1024
DEFAULT_PORT = 465

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")

MSG_REQUIRED = "This field is required."
MSG_CONTROL = "Must not contain line breaks or other control characters."
MSG_PORT = "Enter a port number from 1 to 65535."
MSG_SERVER = "Enter a host name or IP address, without a scheme, a port or spaces."


def too_long(limit: int) -> str:
    return f"Must be at most {limit} characters."


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


SETTING_NAMES = tuple(f.name for f in fields(SenderSettings))


def check_text(value: str, limit: int) -> str | None:
    """The error for a single-line text value, or None when it is fine."""
    if _CONTROL.search(value):
        return MSG_CONTROL
    if len(value) > limit:
        return too_long(limit)
    return None


def normalise_address(value: str) -> str:
    """A valid address in its normalised form; raises ValueError with a readable reason."""
    if _CONTROL.search(value):
        raise ValueError(MSG_CONTROL)
    if len(value) > MAX_ADDRESS:
        raise ValueError(too_long(MAX_ADDRESS))
    try:
        return validate_email(
            value, allow_smtputf8=False, check_deliverability=False, allow_display_name=False
        ).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"Enter a valid email address. {exc}") from None


@functools.lru_cache(maxsize=4096)
def ascii_address(value: str) -> str:
    """The address as it goes on the wire: the domain in punycode."""
    return validate_email(
        value, allow_smtputf8=False, check_deliverability=False
    ).ascii_email or value


def normalise_server_name(value: str) -> str:
    """A host name (IDN allowed, returned in punycode) or an IP address literal."""
    if not value or _CONTROL.search(value) or any(c.isspace() for c in value):
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
    if len(ascii_name) > MAX_SERVER_NAME or not all(_LABEL.match(label) for label in labels):
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
) -> SenderSettings:
    """Check every field at once; raise InvalidSenderData with one message per bad field."""
    errors: dict[str, str] = {}
    clean: dict[str, object] = {}

    def run(name: str, check) -> None:  # type: ignore[no-untyped-def]
        try:
            clean[name] = check()
        except ValueError as exc:
            errors[name] = str(exc)

    def text(value: str, limit: int, required: bool) -> str:
        value = (value or "").strip(" \t")
        if required and not value:
            raise ValueError(MSG_REQUIRED)
        problem = check_text(value, limit)
        if problem:
            raise ValueError(problem)
        return value

    def address(value: str, required: bool) -> str:
        value = (value or "").strip(" \t")
        if not value:
            if required:
                raise ValueError(MSG_REQUIRED)
            return ""
        return normalise_address(value)

    run("username", lambda: text(username, MAX_USERNAME, True))
    run("server_name", lambda: normalise_server_name((server_name or "").strip(" \t")))
    run("port", lambda: normalise_port(port))
    run("from_name", lambda: text(from_name, MAX_NAME, False))
    run("from_address", lambda: address(from_address, True))
    run("reply_to_name", lambda: text(reply_to_name, MAX_NAME, False))
    run("reply_to_address", lambda: address(reply_to_address, False))
    if errors:
        raise InvalidSenderData(errors)
    return SenderSettings(**clean)  # type: ignore[arg-type]


def validate_recipient(value: str) -> str:
    """Exactly one recipient address (no lists, no display names)."""
    try:
        return normalise_address((value or "").strip(" \t"))
    except ValueError as exc:
        raise InvalidSenderData({"recipient": str(exc)}) from None
