"""The rules every sender field obeys, shared by the forms and the Python API.

Values that reach an SMTP command or a mail header never hold CR, LF, NUL or any other
control character; addresses go through email-validator (never ``parseaddr``). By default
a non-ASCII local part and an on-premises domain are refused, each with an error naming
the setting that allows it (:class:`AddressRules`); an IDN domain goes on the wire as its
IDNA 2008 A-label (:func:`wire_address`).
"""

from __future__ import annotations

import binascii
import functools
import ipaddress
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, fields
from email import header as email_header
from email import headerregistry
from typing import Any

import idna
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

from .errors import InvalidSenderData

MAX_NAME = 200
MAX_ADDRESS = 254
MAX_USERNAME = 254
MAX_SERVER_NAME = 253
MAX_PASSWORD = 1024
DEFAULT_PORT = 465

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: What a decoded RFC 2047 encoded word must not hold: C0 and C1 controls and the Unicode
#: line and paragraph separators (``str.splitlines`` breaks a header on all of them).
_DECODED_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
#: An RFC 2047 encoded word, read loosely (spaces allowed inside, as lenient decoders do).
_ENCODED_WORD = re.compile(r"=\?([^?]*)\?([bBqQ])\?(.*?)\?=", re.DOTALL)
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")

MSG_REQUIRED = "This field is required."
MSG_CONTROL = "Must not contain line breaks or other control characters."
MSG_ENCODED_CONTROL = ("Must not contain an RFC 2047 encoded word (=?...?=) that hides line "
                       "breaks or other control characters.")
MSG_UNENCODABLE = "Must be valid text: this holds characters that cannot be encoded."
MSG_PORT = "Enter a port number from 1 to 65535."
MSG_SERVER = "Enter a host name or IP address, without a scheme, a port or spaces."
MSG_INVALID_ADDRESS = "Enter a valid email address."
MSG_DOMAIN = f"{MSG_INVALID_ADDRESS} The part after the @-sign is not a valid domain name."
MSG_INTERNAL = ("{domain} is an internal domain. To send from or to internal domains, set "
                "SMTP_SENDERS_ALLOW_INTERNAL_DOMAINS = True.")
MSG_SMTPUTF8 = ("The part before the @-sign ({local}) is not ASCII: such an address needs "
                "SMTPUTF8 (RFC 6531); to allow it set SMTP_SENDERS_SMTPUTF8 = True.")

#: Domains that exist only inside a network (RFC 6761, RFC 6762, RFC 8375, ICANN's
#: .internal, and the customary .lan, .localdomain, .corp, .home), and any single label.
INTERNAL_SUFFIXES = ("local", "internal", "lan", "test", "localdomain", "home.arpa", "corp",
                     "home")
#: The domain a local part is checked against when email-validator cannot judge the real one.
_STAND_IN_DOMAIN = "example.com"


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
#: Each setting's label, as the form shows it.
SETTING_LABELS = {"username": "Username", "server_name": "Server Name", "port": "Port",
                  "from_name": "From Name", "from_address": "From Address",
                  "reply_to_name": "Reply-To Name", "reply_to_address": "Reply-To Address",
                  "password": "Password"}


@dataclass(frozen=True)
class AddressRules:
    """Which addresses beyond public, ASCII-local-part ones the host allows. Both are off
    by default: each only works with some mail servers, so a host opts in knowingly."""

    #: Accept a non-ASCII local part (RFC 6531): only servers offering SMTPUTF8 take it.
    smtputf8: bool = False
    #: Accept on-premises domains (INTERNAL_SUFFIXES, single labels): mail to or from them
    #: only works inside the network that knows them.
    internal_domains: bool = False

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> AddressRules:
        """The rules SMTP_SENDERS_SMTPUTF8 and SMTP_SENDERS_ALLOW_INTERNAL_DOMAINS set."""
        return cls(smtputf8=bool(config.get("SMTP_SENDERS_SMTPUTF8", False)),
                   internal_domains=bool(config.get("SMTP_SENDERS_ALLOW_INTERNAL_DOMAINS",
                                                    False)))


def check_text(value: str, limit: int) -> str | None:
    """The error for a single-line text value, or None when it is fine."""
    if not isinstance(value, str) or unencodable(value):
        return MSG_UNENCODABLE
    if _CONTROL.search(value):
        return MSG_CONTROL
    if len(value) > limit:
        return too_long(limit)
    return None


def check_name(value: str, limit: int) -> str | None:
    """:func:`check_text` for a display name (From Name, Reply-To Name), which also must
    not hold an encoded word that decodes to a control character (Case G1)."""
    return check_text(value, limit) or (MSG_ENCODED_CONTROL if hides_control(value)
                                         else None)


def decoded_texts(value: str) -> list[str]:
    """``value`` as each way of decoding its RFC 2047 encoded words reads it; raises
    (ValueError, LookupError, binascii.Error...) when one cannot decode it."""
    chunks = email_header.decode_header(value)
    decoded = []
    if value.isascii():  # make_header reads text outside encoded words as ASCII
        decoded.append(str(email_header.make_header(chunks)))
    for chunk, charset in chunks:
        raw = chunk if isinstance(chunk, bytes) else chunk.encode("utf-8", "replace")
        decoded.append(raw.decode("latin-1"))
        decoded.append(raw.decode(charset or "utf-8", "replace"))
    registry = headerregistry.HeaderRegistry()
    quoted = value.replace("\\", "\\\\").replace('"', '\\"')
    decoded += [str(registry("X-Name", value)),  # unstructured, as a Subject
                str(registry("From", f"{value} <a@example.com>")),  # as a phrase
                str(registry("From", f'"{quoted}" <a@example.com>'))]  # quoted too
    for match in _ENCODED_WORD.finditer(value):
        charset, encoding, text = match.groups()
        raw = (binascii.a2b_base64(text + "=" * (-len(text) % 4)) if encoding in "bB"
               else binascii.a2b_qp(text.encode("ascii", "replace"), header=True))
        decoded.append(raw.decode("latin-1"))
        decoded.append(raw.decode(charset.partition("*")[0] or "ascii", "replace"))
    return decoded


def unencodable(value: str) -> bool:
    """Whether ``value`` cannot be written as UTF-8 (a lone surrogate, say)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def hides_control(value: str) -> bool:
    """Whether ``value`` holds an RFC 2047 encoded word that decodes (by any of the ways
    a header is decoded: ``email.header``, the header registry, or a lenient reading of
    each word) to a control character or a line separator, or that cannot be decoded
    (then versions and mail programs may disagree on what it says): refused, since a
    parser that decodes it may write the decoded text back into a header raw
    (gh-121650, CVE-2024-6923)."""
    if "=?" not in value:
        return False
    try:
        decoded = decoded_texts(value)
    except Exception:  # undecodable (bad base64, unknown charset...): readers disagree
        return True
    return any(_DECODED_CONTROL.search(text) for text in decoded)


def normalise_address(value: str, rules: AddressRules = AddressRules()) -> str:
    """A valid address in its normalised form (the one stored); raises ValueError with a
    readable reason."""
    return _address_forms(value, rules)[0]


@functools.lru_cache(maxsize=4096)
def wire_address(value: str, rules: AddressRules = AddressRules()) -> str:
    """The addr-spec for MAIL FROM, RCPT TO and address headers: the local part and an
    all-ASCII domain exactly as given, a non-ASCII domain as its IDNA 2008 A-label (never
    the stdlib "idna" codec: IDNA 2003 drops ZWNJ). Raises ValueError with a readable
    reason for an address ``rules`` do not allow."""
    return _address_forms(value, rules)[1]


def ascii_address(value: str) -> str:
    """:func:`wire_address` with the default rules (its name before AddressRules)."""
    return wire_address(value)


def _address_forms(value: str, rules: AddressRules) -> tuple[str, str]:
    """(normalised, wire) forms of a valid address; raises ValueError otherwise."""
    if not isinstance(value, str) or unencodable(value):
        raise ValueError(MSG_UNENCODABLE)
    if _CONTROL.search(value):
        raise ValueError(MSG_CONTROL)
    if hides_control(value):  # =?...?= is atext: a lenient parser decodes it in an address
        raise ValueError(MSG_ENCODED_CONTROL)
    if len(value) > MAX_ADDRESS:
        raise ValueError(too_long(MAX_ADDRESS))
    local, at, domain = value.rpartition("@")
    internal = _internal_domain(domain) if at else None
    if internal is not None:
        unicode_domain, ascii_domain = internal
        local_part = _local_part(local, rules)
        if not rules.internal_domains:
            raise ValueError(MSG_INTERNAL.format(domain=domain))
        if len(f"{local}@{ascii_domain}") > MAX_ADDRESS:
            raise ValueError(too_long(MAX_ADDRESS))
        return (f"{local_part}@{unicode_domain}",
                f"{local}@{domain if domain.isascii() else ascii_domain}")
    try:
        valid = validate_email(value, allow_smtputf8=rules.smtputf8,
                               check_deliverability=False, allow_display_name=False)
    except EmailNotValidError as exc:
        reason = f"{MSG_INVALID_ADDRESS} {exc}"
    else:
        return valid.normalized, f"{local}@{domain if domain.isascii() else valid.ascii_domain}"
    if at:
        a_labels = _a_label_domain(domain)
        if a_labels or not local.isascii():
            _local_part(local, rules)  # names SMTP_SENDERS_SMTPUTF8 when that is what is missing
        if a_labels:  # valid IDNA 2008 that email-validator refuses: kept exactly as given
            return value, value
    raise ValueError(reason)


def _local_part(local: str, rules: AddressRules) -> str:
    """The normalised local part, checked by email-validator against a stand-in domain
    (for a domain it cannot judge, or to tell whether SMTPUTF8 is what is missing)."""
    try:
        return validate_email(f"{local}@{_STAND_IN_DOMAIN}", allow_smtputf8=rules.smtputf8,
                              check_deliverability=False, allow_display_name=False).local_part
    except EmailNotValidError as exc:
        if not rules.smtputf8 and not local.isascii():
            try:
                _local_part(local, AddressRules(smtputf8=True))
            except ValueError:
                pass
            else:
                raise ValueError(MSG_SMTPUTF8.format(local=local)) from None
        raise ValueError(f"{MSG_INVALID_ADDRESS} {exc}") from None


def _internal_domain(domain: str) -> tuple[str, str] | None:
    """(normalised, A-label) forms of an on-premises domain, None for any other; raises
    ValueError for a malformed one. Checked here, not by email-validator, which refuses
    .local and .test whatever it is told."""
    try:
        mapped = (domain.lower() if domain.isascii()
                  else idna.uts46_remap(domain, std3_rules=False, transitional=False))
    except UnicodeError:  # idna.IDNAError: not a domain; email-validator says why
        return None
    if not mapped or ("." in mapped and not any(
            mapped == suffix or mapped.endswith("." + suffix) for suffix in INTERNAL_SUFFIXES)):
        return None
    try:
        ascii_domain = ".".join(idna.alabel(label).decode("ascii")
                                for label in mapped.split("."))
        unicode_domain = idna.decode(ascii_domain)
        _check_bidi(unicode_domain)
    except UnicodeError:
        raise ValueError(MSG_DOMAIN) from None
    labels = ascii_domain.split(".")
    if (len(ascii_domain) > MAX_SERVER_NAME or labels[-1].isdigit()
            or not all(_LABEL.match(label) for label in labels)):
        raise ValueError(MSG_DOMAIN)
    return unicode_domain, ascii_domain


def _a_label_domain(domain: str) -> bool:
    """Whether ``domain`` is all ASCII, holds an A-label, passes email-validator's other
    domain checks, and every label is valid IDNA 2008 (CONTEXTJ included): email-validator
    refuses a U-label with ZWJ or ZWNJ even where RFC 5892 allows them (Persian, Indic)."""
    lower = domain.lower()
    if not domain.isascii() or "xn--" not in lower or len(domain) > MAX_SERVER_NAME:
        return False
    labels = domain.split(".")
    if (len(labels) < 2 or not labels[-1][-1:].isalpha()
            or not all(_LABEL.match(label) for label in labels)
            or any(lower == name or lower.endswith("." + name)
                   for name in SPECIAL_USE_DOMAIN_NAMES)):
        return False
    try:
        _check_bidi(idna.decode(domain))
    except UnicodeError:
        return False
    return True


def _check_bidi(domain: str) -> None:
    """RFC 5893's Bidi Rule on every label once one is right-to-left, as email-validator
    applies it (idna checks each label alone); raises idna.IDNAError."""
    if any(unicodedata.bidirectional(c) in ("R", "AL", "AN") for c in domain):
        for label in domain.split("."):
            idna.check_bidi(label, check_ltr=True)


def normalise_server_name(value: str) -> str:
    """A host name (IDN allowed, returned in punycode) or an IP address literal."""
    if isinstance(value, str) and unencodable(value):
        raise ValueError(MSG_UNENCODABLE)
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
    if errors:
        raise InvalidSenderData(errors)
    return SenderSettings(**clean)  # type: ignore[arg-type]


def validate_recipient(value: str, rules: AddressRules = AddressRules()) -> str:
    """Exactly one recipient address (no lists, no display names) that ``rules`` allow."""
    try:
        return normalise_address((value or "").strip(" \t"), rules)
    except ValueError as exc:
        raise InvalidSenderData({"recipient": str(exc)}) from None
