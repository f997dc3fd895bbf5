"""Building and serialising the messages we send.

Headers take addresses in their ASCII form (IDN domains punycoded) and display names as
typed (the SMTP policy RFC 2047-encodes them). Serialisation is fastmail's (CRLF line
endings, byte-identical to ``email.policy.SMTP``).

A display name never reaches the stdlib in a form it could decode (Case G1): one holding a
control character is refused, and in one holding ``=?`` a WORD JOINER is put between
``=`` and ``?`` (:func:`defused_name`), so no parser takes it for an RFC 2047 encoded word.
The stdlib re-parses a display name when it builds a header from an ``Address``, and
before gh-121650 (CVE-2024-6923; Python < 3.11.10, 3.12.5) it wrote what an encoded word
decoded to, CR LF included, back raw. Every header built here is also checked once
folded (:func:`checked_fold`): a line break anywhere but between folded lines is refused,
whatever the stdlib did.
"""

from __future__ import annotations

import email.policy
import email.utils
import re
import time
from datetime import datetime, timezone
from email.headerregistry import Address, BaseHeader
from email.message import EmailMessage

from ..addresses import AddressRules, wire_address
from ..errors import DeliveryError
from ..text_checks import MSG_CONTROL, MSG_UNENCODABLE, unencodable
from ..validation import SenderSettings

POLICY = email.policy.SMTP
UTF8_POLICY = POLICY.clone(utf8=True)
MAX_LINE = POLICY.max_line_length or 78
#: Put between "=" and "?" in a display name: invisible, and no encoded word starts there.
WORD_JOINER = "\u2060"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: A folded header: its first line, then continuation lines (starting with a space or a
#: tab and holding more than blanks), each ending in CRLF; no other CR or LF.
_FOLDED = re.compile(r"[^\r\n]*\r\n(?:[ \t][^\r\n]*[^ \t\r\n][^\r\n]*\r\n)*")


def defused_name(name: str) -> str:
    """A display name the stdlib cannot read as an RFC 2047 encoded word: ``=?`` becomes
    ``=`` WORD JOINER ``?`` (a reader sees the text as typed); raises ValueError for one
    that holds a control character or cannot be encoded, which no header may carry."""
    if unencodable(name):
        raise ValueError(MSG_UNENCODABLE)
    if _CONTROL.search(name):
        raise ValueError(MSG_CONTROL)
    return name.replace("=?", f"={WORD_JOINER}?")


def checked_fold(name: str, folded: str) -> str:
    """``folded`` (a header as a policy folds it) when it is one header: else ValueError,
    whatever the Python version's folder did with the text it was given."""
    if not folded.startswith(f"{name}:") or not _FOLDED.fullmatch(folded):
        raise ValueError(MSG_CONTROL)
    return folded


def address_header(name: str, address: str, rules: AddressRules = AddressRules()) -> Address:
    """An address in its wire form: the domain as its A-label; a non-ASCII local part
    (only when ``rules`` allow SMTPUTF8) kept as the username, which the UTF-8 policy
    writes as it is. The display name is :func:`defused_name`'s."""
    name = defused_name(name)
    local, _at, domain = wire_address(address, rules).rpartition("@")
    if local.isascii():
        return Address(display_name=name, addr_spec=f"{local}@{domain}")
    return Address(display_name=name, username=local, domain=domain)


class SenderHeaders:
    """The headers a sender adds, built and folded once per sender version.

    Parsing and folding an address costs far more than sending a message on a reused
    connection, so From and Reply-To are folded here once (by the stdlib, with the SMTP
    policy) and stored on each message as that folded text with ``set_raw``: the policy
    writes such a string back exactly as it was folded, and reading ``message["From"]``
    still parses it into an address header. A value that would not be written back as it
    is (a line too long) is stored as the policy's header object instead.
    """

    def __init__(self, settings: SenderSettings, rules: AddressRules = AddressRules()) -> None:
        """Raises ValueError, its text naming the field, for a name or an address that
        cannot go in a header (a row changed behind the application's back)."""
        self.from_ = _stored("From", _named("From Name", settings.from_name,
                                            settings.from_address, rules))
        self.reply_to = (_stored("Reply-To", _named("Reply-To Name", settings.reply_to_name,
                                                    settings.reply_to_address, rules))
                         if settings.reply_to_address else None)
        self.envelope_from = wire_address(settings.from_address, rules)
        self.domain = self.envelope_from.rpartition("@")[2]
        self._date: tuple[int, str | BaseHeader | None] = (-1, None)

    def _date_header(self) -> str | BaseHeader | None:
        second = int(time.time())
        if self._date[0] != second:  # one Date header a second is plenty
            value = email.utils.format_datetime(datetime.fromtimestamp(second, timezone.utc))
            self._date = (second, _stored("Date", value))
        return self._date[1]

    def apply(self, message: EmailMessage) -> None:
        """Add From, Reply-To (only when set), Date and Message-ID unless the message has
        them."""
        present = {name.lower() for name in message.keys()}
        # set_raw, not message[name] = ...: these are single headers the message lacks,
        # and __setitem__'s count check builds a header class per call (~13 us).
        if "from" not in present:
            message.set_raw("From", self.from_)
        if "reply-to" not in present and self.reply_to is not None:
            message.set_raw("Reply-To", self.reply_to)
        if "date" not in present:
            message.set_raw("Date", self._date_header())
        if "message-id" not in present:
            message_id = email.utils.make_msgid(domain=self.domain)
            message.set_raw("Message-ID", _stored("Message-ID", message_id))


def message_id(message: EmailMessage) -> str | None:
    """The Message-ID as stored, without parsing a stored string again (~40 us)."""
    for name, value in message.raw_items():
        if name.lower() == "message-id":
            return str(value) if isinstance(value, BaseHeader) else "".join(value.splitlines())
    return None


def _named(label: str, name: str, address: str, rules: AddressRules) -> Address:
    try:
        return address_header(name, address, rules)
    except ValueError as exc:
        raise ValueError(f"{label}: {exc}") from None


def _stored(name: str, value: str | Address) -> str | BaseHeader:
    """What to ``set_raw`` so the policy writes the header as it folds it: text it writes
    back unchanged (printable ASCII lines that fit; an address is folded first), else the
    policy's header object. Either way its fold is :func:`checked_fold`'s."""
    if isinstance(value, str) and _written_as_is(name, value):
        return value  # a Date or a Message-ID we made: nothing to fold
    header = POLICY.header_factory(name, value)
    if isinstance(value, Address) and not value.addr_spec.isascii():
        # SMTPUTF8: folded by the UTF-8 policy, never as an encoded word
        checked_fold(name, header.fold(policy=UTF8_POLICY))
        return header
    folded = checked_fold(name, header.fold(policy=POLICY))
    text = folded[len(name) + 2:-2]
    if folded == f"{name}: {text}\r\n" and _written_as_is(name, text):
        return text
    return header


def _written_as_is(name: str, text: str) -> bool:
    """EmailPolicy._fold writes a stored string's lines back unchanged when they fit."""
    lines = text.split("\r\n")
    return (bool(text) and text.splitlines() == lines
            and all(line.isascii() and line.isprintable() for line in lines)
            and len(name) + 2 + len(lines[0]) <= MAX_LINE
            and all(len(line) <= MAX_LINE for line in lines[1:]))


def build_test_message(settings: SenderSettings, recipient: str, subject: str,
                       body: str, rules: AddressRules = AddressRules()) -> EmailMessage:
    """The fixed test message: our subject and body, one recipient. A saved name that
    cannot go in a header fails it at stage "sender", before anything is sent."""
    message = EmailMessage()
    message["Subject"] = subject
    message["To"] = address_header("", recipient, rules)
    try:
        headers = SenderHeaders(settings, rules)
    except ValueError as exc:
        raise DeliveryError("sender", str(exc)) from None
    headers.apply(message)
    message.set_content(body)
    return message
