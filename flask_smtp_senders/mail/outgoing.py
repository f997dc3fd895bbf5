"""What a host's message becomes on the wire, without touching the host's message object.

The sending API works on a detached copy (:func:`detached_copy`), so the same
``EmailMessage`` sent twice reaches its Bcc twice. On that copy:

- the envelope comes from the headers as ``smtplib.send_message`` takes it (RFC 5322
  §3.6.6): with one Resent- block, Resent-To/Cc/Bcc; with several, the message is refused;
  Bcc and Resent-Bcc are never transmitted (:func:`envelope_recipients`);
- addresses in address headers are written in their wire form (:func:`wire_address_headers`):
  an IDN domain as its IDNA 2008 A-label, never as an RFC 2047 encoded word inside an
  address (RFC 2047 §5); a non-ASCII local part only with SMTPUTF8 (RFC 6531), when the
  setting allows it;
- a header whose decoded value holds CR or LF (an RFC 2047 encoded word hiding a line
  break: the stdlib before gh-121650 writes it back raw) refuses the message
  (:func:`refuse_hidden_line_breaks`, Case G1), and every display name rewritten here is
  defused first (:func:`.headers.defused_name`);
- a body with 8-bit octets goes with ``BODY=8BITMIME`` when the server offers it, else as
  the 7-bit re-encoding :func:`seven_bit_copy` makes (RFC 6152 §3).

This module knows nothing of Flask or of the network.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterable
from email import base64mime, quoprimime
from email.headerregistry import Address, BaseHeader, Group
from email.message import Message

from ..addresses import AddressRules, wire_address
from ..domain import needs_smtputf8
from ..errors import InvalidSenderData
from ..text_checks import decoded_texts
from .fastmail import serialise
from .headers import defused_name

POLICY = email.policy.SMTP
#: The policy a message needing SMTPUTF8 is written with: UTF-8 headers, as RFC 6532 lets.
UTF8_POLICY = POLICY.clone(utf8=True)

#: Headers whose addresses are rewritten into their wire form (RFC 5322 §3.6.2-3.6.6).
ADDRESS_HEADERS = frozenset({
    "from", "sender", "reply-to", "to", "cc", "bcc",
    "resent-from", "resent-sender", "resent-to", "resent-cc", "resent-bcc",
})

MSG_RESENT_BLOCKS = ("The message has more than one Resent- block (RFC 5322 section 3.6.6): "
                     "it is unclear which one to send to. Not sent.")
MSG_NO_RECIPIENT = "The message has no recipient."
MSG_HIDDEN_LINE_BREAK = ("The header holds an RFC 2047 encoded word that decodes to a line "
                         "break (or cannot be decoded). Not sent.")
_FOLDING = re.compile(r"\r?\n(?=[ \t])")
MSG_DISPLAY_NAME = "A display name holds a control character. Not sent."


def detached_copy(message: Message) -> Message:
    """A copy whose headers and parts can change without changing ``message``: each part
    copied shallowly with its own header list (bodies are shared, never written to)."""
    if not isinstance(message.policy, email.policy.EmailPolicy):
        # A compat32 message (email.mime, older Django): its headers are plain strings;
        # read it again as the modern API sees it, which is also a copy.
        return email.message_from_bytes(message.as_bytes(), policy=POLICY)
    return _copy_part(message)


def _copy_part(message: Message) -> Message:
    # What copy.copy() does for a Message (a new instance sharing the attributes), a
    # third of its cost; then the two attributes that change get their own lists.
    clone = object.__new__(type(message))
    state = dict(message.__dict__)
    state["_headers"] = list(state["_headers"])
    payload = state.get("_payload")
    if isinstance(payload, list):
        state["_payload"] = [_copy_part(part) for part in payload]
    clone.__dict__.update(state)
    return clone


def resent_prefix(message: Message) -> str:
    """"Resent-" when the message carries exactly one Resent- block (its Resent-Date
    counts, as in smtplib), "" when none; several are refused."""
    dates = message.get_all("Resent-Date")
    if dates is None:
        return ""
    if len(dates) == 1:
        return "Resent-"
    raise InvalidSenderData({"message": MSG_RESENT_BLOCKS})


def envelope_recipients(message: Message, rules: AddressRules) -> tuple[str, ...]:
    """RCPT TO for ``message``: To, Cc and Bcc, or their Resent- forms; then Bcc and
    Resent-Bcc are removed from ``message`` (a detached copy), as smtplib does."""
    prefix = resent_prefix(message)
    recipients: list[str] = []
    for name in ("To", "Cc", "Bcc"):
        field = prefix + name
        try:
            headers = message.get_all(field, [])
            addresses = [(address, header) for header in headers
                         for address in header.addresses]
        except ValueError as exc:  # the stdlib refuses the header itself (a CR or LF)
            raise InvalidSenderData({"recipients": f"{field}: {exc}"}) from None
        for address, header in addresses:
            try:
                recipients.append(wire_address(address.addr_spec, rules))
            except ValueError as exc:  # named, so a batch's log says which one
                spec = address.addr_spec
                shown = _shown(spec if spec not in ("", "<>") else str(header))
                raise InvalidSenderData({"recipients": f"{field} {shown}: {exc}"}) from None
    if not recipients:
        raise InvalidSenderData({"recipients": MSG_NO_RECIPIENT})
    del message["Bcc"]
    del message["Resent-Bcc"]
    return tuple(recipients)


def _shown(value: str, limit: int = 80) -> str:
    """An address as an error message may quote it: one line, bounded, in quotes."""
    text = " ".join(str(value).split())
    return repr(text if len(text) <= limit else text[:limit] + "...")


def refuse_hidden_line_breaks(message: Message) -> None:
    """Raise InvalidSenderData naming the first header (of the message or any part) whose
    decoded value holds CR or LF: an encoded word hiding a line break, which the stdlib
    before gh-121650 (CVE-2024-6923) writes back raw when it refolds the header. A header
    whose encoded words cannot be decoded is refused too (readers would disagree)."""
    for part in message.walk():
        for name, value in part.raw_items():
            if isinstance(value, BaseHeader):  # a str, already decoded
                if "\r" in value or "\n" in value:
                    raise InvalidSenderData({name.lower(): MSG_HIDDEN_LINE_BREAK})
                continue
            if "=?" in str(value):
                unfolded = _FOLDING.sub("", str(value))  # folding is no line break
                try:
                    texts = [unfolded, *decoded_texts(unfolded),
                             str(POLICY.header_fetch_parse(name, unfolded))]
                except Exception:  # undecodable, or the stdlib refuses what it decodes to
                    texts = ["\n"]
            else:
                continue  # raw text: the generator writes its own lines, no decoding
            if any("\r" in text or "\n" in text for text in texts):
                raise InvalidSenderData({name.lower(): MSG_HIDDEN_LINE_BREAK})


def wire_address_headers(message: Message, rules: AddressRules) -> bool:
    """Write every address header's addresses in their wire form; True when the message
    needs SMTPUTF8 (a non-ASCII local part somewhere, which ``rules`` must allow).

    Only a header that holds a non-ASCII address is rebuilt (display names stay as they
    are, defused by :func:`.headers.defused_name`: the policy encodes them as RFC 2047
    allows in a phrase); the others are left exactly as given. Raises InvalidSenderData
    naming the header for an address (or a display name) that cannot be written.
    """
    items = list(message.raw_items())
    rebuilt: dict[int, BaseHeader] = {}
    needs_utf8 = False
    for index, (name, value) in enumerate(items):
        if name.lower() not in ADDRESS_HEADERS or str(value).isascii():
            continue
        header = value if isinstance(value, BaseHeader) else POLICY.header_fetch_parse(
            name, value)
        groups = getattr(header, "groups", None)
        if groups is None or all(a.addr_spec.isascii() for a in header.addresses):
            continue  # only the display names are non-ASCII: the policy encodes them
        try:
            new_groups = [_wire_group(group, rules) for group in groups]
        except ValueError as exc:
            raise InvalidSenderData({name.lower(): str(exc)}) from None
        needs_utf8 |= any(not a.username.isascii()
                          for group in new_groups for a in group.addresses)
        rebuilt[index] = POLICY.header_factory(name, [
            group if group.display_name is not None else group.addresses[0]
            for group in new_groups])
    if rebuilt:
        _replace_headers(message, items, rebuilt)
    return needs_utf8


def _wire_group(group: Group, rules: AddressRules) -> Group:
    name = group.display_name
    return Group(None if name is None else _defused(name),
                 tuple(_wire(address, rules) for address in group.addresses))


def _wire(address: Address, rules: AddressRules) -> Address:
    name = _defused(address.display_name)
    if address.addr_spec.isascii():
        return Address(name, addr_spec=address.addr_spec)
    wire = wire_address(address.addr_spec, rules)
    return Address(name, username=address.username, domain=wire.rpartition("@")[2])


def _defused(name: str) -> str:
    try:
        return defused_name(name)
    except ValueError:
        raise ValueError(MSG_DISPLAY_NAME) from None


def _replace_headers(message: Message, items: list[tuple[str, object]],
                     rebuilt: dict[int, BaseHeader]) -> None:
    """Put the headers back in their order, the rebuilt ones in place."""
    for name in {name.lower() for name, _value in items}:
        del message[name]
    for index, (name, value) in enumerate(items):
        message.set_raw(name, rebuilt.get(index, value))  # type: ignore[arg-type]


def wire_bytes(message: Message, envelope: Iterable[str],
               rules: AddressRules) -> tuple[bytes, bool]:
    """``message`` (a detached copy, its address headers rewritten here) as bytes, and
    whether it needs SMTPUTF8 (InvalidSenderData for a header hiding a line break, see
    :func:`refuse_hidden_line_breaks`): then with UTF-8 headers (RFC 6532), else with the SMTP
    policy, where a non-ASCII display name is an RFC 2047 encoded word."""
    refuse_hidden_line_breaks(message)
    smtputf8 = wire_address_headers(message, rules) or needs_smtputf8(envelope)
    if smtputf8:
        return message.as_bytes(policy=UTF8_POLICY), True
    return serialise(message), False


def seven_bit_bytes(message: Message) -> bytes:
    """``message`` written for a server without 8BITMIME (see :func:`seven_bit_copy`)."""
    return serialise(seven_bit_copy(message))


def seven_bit_copy(message: Message) -> Message:
    """``message`` with every 8-bit or binary body re-encoded for a server without
    8BITMIME (RFC 6152 §3): text as quoted-printable, anything else as base64; a
    container (multipart, message/*) declares 7bit once its parts are."""
    clone = detached_copy(message)
    for part in clone.walk():
        encoding = str(part.get("Content-Transfer-Encoding", "7bit")).strip().lower()
        if part.is_multipart():
            if encoding in ("8bit", "binary"):
                _set_encoding(part, "7bit")
            continue
        if encoding in ("quoted-printable", "base64"):
            continue
        raw = part.get_payload(decode=True)
        if not isinstance(raw, bytes) or raw.isascii():
            continue
        if part.get_content_maintype() == "text":
            part.set_payload(quoprimime.body_encode(raw.decode("latin-1"), 76))
            _set_encoding(part, "quoted-printable")
        else:
            part.set_payload(base64mime.body_encode(raw, 76))
            _set_encoding(part, "base64")
    return clone


def _set_encoding(part: Message, encoding: str) -> None:
    del part["Content-Transfer-Encoding"]
    part["Content-Transfer-Encoding"] = encoding
