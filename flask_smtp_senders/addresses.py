"""Email addresses: which ones a sender may use, as stored and as they go on the wire.

Addresses go through email-validator (never ``parseaddr``). By default a non-ASCII local
part and an on-premises domain are refused, each with an error naming the setting that
allows it (:class:`AddressRules`): each only works with some mail servers, so a host opts
in knowingly. An IDN domain goes on the wire as its IDNA 2008 A-label (:func:`wire_address`).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import idna
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

from .text_checks import (
    CONTROL,
    MSG_CONTROL,
    MSG_ENCODED_CONTROL,
    MSG_UNENCODABLE,
    hides_control,
    too_long,
    unencodable,
)

MAX_ADDRESS = 254
MAX_SERVER_NAME = 253

#: One DNS label in its ASCII form: 1-63 letters, digits and hyphens, no hyphen at an end.
DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")

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
    if CONTROL.search(value):
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
            or not all(DNS_LABEL.match(label) for label in labels)):
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
            or not all(DNS_LABEL.match(label) for label in labels)
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
