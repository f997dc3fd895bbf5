"""The checks every text value passes before it may reach an SMTP command or a mail header.

Why a module of its own: the sender fields (:mod:`flask_smtp_senders.validation`), the
addresses (:mod:`flask_smtp_senders.addresses`) and the headers we build all refuse the
same things, with the same messages: text that cannot be encoded, a CR, LF, NUL or any
other control character, and an RFC 2047 encoded word that decodes to one (Case G1).
"""

from __future__ import annotations

import binascii
import re
from email import header as email_header
from email import headerregistry

#: A C0 control character or DEL: never in a value bound for a command or a header.
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: What a decoded RFC 2047 encoded word must not hold: C0 and C1 controls and the Unicode
#: line and paragraph separators (``str.splitlines`` breaks a header on all of them).
_DECODED_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
#: An RFC 2047 encoded word, read loosely (spaces allowed inside, as lenient decoders do).
_ENCODED_WORD = re.compile(r"=\?([^?]*)\?([bBqQ])\?(.*?)\?=", re.DOTALL)

MSG_REQUIRED = "This field is required."
MSG_CONTROL = "Must not contain line breaks or other control characters."
MSG_ENCODED_CONTROL = ("Must not contain an RFC 2047 encoded word (=?...?=) that hides line "
                       "breaks or other control characters.")
MSG_UNENCODABLE = "Must be valid text: this holds characters that cannot be encoded."


def too_long(limit: int) -> str:
    """The message for a value longer than ``limit`` characters."""
    return f"Must be at most {limit} characters."


def check_text(value: str, limit: int) -> str | None:
    """The error for a single-line text value, or None when it is fine."""
    if not isinstance(value, str) or unencodable(value):
        return MSG_UNENCODABLE
    if CONTROL.search(value):
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
