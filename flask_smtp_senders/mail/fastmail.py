"""A fast serialiser for the messages this extension sends most.

``serialise(message)`` returns exactly the bytes of
``message.as_bytes(policy=email.policy.SMTP)`` (that is ``BytesGenerator`` with the SMTP
policy), several times faster for the common case, and hands anything else to the stdlib.

Why: serialising a fresh 1.2 KB multipart ``EmailMessage`` costs the stdlib about half a
millisecond (see shared/perf-notes.md), mostly in header folding (a general RFC 5322
re-folder run over a parse tree, even for a header that fits on one line) and in drawing
a multipart boundary (a fresh regular expression compiled per message, then a re-parse of
Content-Type to store the boundary).

What takes the fast path:

- a ``text/*`` message, or a ``multipart/*`` tree of ``text/*`` leaves (the text-only and
  text + HTML messages that ``set_content`` / ``add_alternative`` build), whose bodies
  ``set_content`` encoded as 7bit, quoted-printable, base64 or 8bit UTF-8;
- headers are those folding.py writes itself (a header that fits on one line, as the
  policy would write it) or hands to the stdlib's own ``header.fold(policy=SMTP)``, which
  is exactly what ``BytesGenerator`` calls.

Everything else -- attachments, ``message/*`` parts, other content types, parsed messages,
a Content-Type it does not recognise, a body that is not what ``set_content`` produces --
goes to ``message.as_bytes(policy=email.policy.SMTP)`` whole.

One difference on purpose: when a multipart has no boundary yet, the stdlib draws one
(``random.randrange(sys.maxsize)``, the same draw done here, so the bytes match for the
same random state) and *stores* it on the message; this module only writes it. Storing it
would mean re-parsing Content-Type (about a fifth of the stdlib's time), and the sending
path serialises a message once. Serialising the same message twice therefore gives two
boundaries, as two fresh messages would.

Only public ``email`` APIs are used, plus ``Message.raw_items()``, the method the stdlib
documents as the generator's view of the headers (and folding.py's one read of a private
attribute). The first call checks a few probe messages against the stdlib and turns the
fast path off (with a warning) if any differs, so a Python release that changes the
folding rules costs speed, never correctness.
"""

from __future__ import annotations

import logging
import random
import re
import sys
import threading
from dataclasses import dataclass
from email import headerregistry
from email.message import Message

from .folding import FIELD_NAME, MAX_LINE, NL, POLICY, Unhandled, fold

__all__ = ["serialise", "fast_path_enabled"]

log = logging.getLogger(__name__)

_NLCRE = re.compile(r"\r\n|\r|\n")
_BOUNDARY_WIDTH = len(repr(sys.maxsize - 1))  # as email.generator's _fmt
_MAX_DEPTH = 8

# multipart Content-Type in the canonical spelling set_boundary() writes; the boundary is
# plain RFC 2046 bchars (no space, quote or backslash) and short enough for one line.
_MULTIPART = re.compile(
    r'(multipart/[a-z][a-z0-9.+-]{0,30})(?:; boundary="([0-9A-Za-z\'()+_,./:=?-]{1,60})")?')
_TEXT = re.compile(r'text/[a-z][a-z0-9.+-]{0,30}(?:; charset="(us-ascii|utf-8)")?')


def serialise(message: Message) -> bytes:
    """``message.as_bytes(policy=email.policy.SMTP)``, faster for the common case."""
    if fast_path_enabled():
        try:
            plan = _plan(message, 0)
        except Unhandled:
            pass
        except Exception:  # an odd message the checks let through: the stdlib decides
            log.debug("fastmail: falling back to the stdlib", exc_info=True)
        else:
            return _render(plan)
    return message.as_bytes(policy=POLICY)


# -- the fast path ------------------------------------------------------------------------


@dataclass(slots=True)
class _Multipart:
    """A multipart whose parts all passed: rendered once the whole tree is known to be
    handled, so no boundary is drawn for a message that ends up with the stdlib."""

    lines: list[str | None]  # folded headers; None where Content-Type gets a new boundary
    name: str
    content_type: str
    boundary: str | None
    parts: list[_Multipart | bytes]
    preamble: str | None
    epilogue: str | None


def _plan(msg: Message, depth: int) -> _Multipart | bytes:
    """Check one part and everything below it; a text part is written right away."""
    headers = list(msg.raw_items())
    content_types = [(name, value) for name, value in headers
                     if name.lower() == "content-type"]
    if len(content_types) != 1:  # none: a default type; several: the first one counts
        raise Unhandled("not exactly one Content-Type")
    raw_name, content_type = content_types[0]
    if not isinstance(content_type, headerregistry.BaseHeader) or content_type.defects:
        raise Unhandled("Content-Type")
    # The canonical spellings set_content and set_boundary write: get_content_maintype()
    # (the generator's dispatch) and get_param() read them the obvious way.
    type_text = str(content_type)
    text = _TEXT.fullmatch(type_text)
    if text is not None:
        for name, value in headers:
            if name.lower() == "content-disposition" and str(value).lower() != "inline":
                raise Unhandled("attachment")
        body = _text_body(msg, text.group(1))
        head = "".join([fold(name, value) for name, value in headers]) + NL
        return head.encode("ascii", "surrogateescape") + body
    multipart = _MULTIPART.fullmatch(type_text)
    if multipart is None or depth >= _MAX_DEPTH:
        raise Unhandled("not text or multipart, or nested too deep")
    subparts = msg.get_payload()
    if not isinstance(subparts, list):
        raise Unhandled("multipart without a list of parts")
    preamble, epilogue = msg.preamble, msg.epilogue
    for extra in (preamble, epilogue):
        if extra is not None and not (isinstance(extra, str) and extra.isascii()):
            raise Unhandled("preamble or epilogue")
    if not FIELD_NAME.fullmatch(raw_name) or not FIELD_NAME.fullmatch(content_type.name):
        raise Unhandled("header name")
    parts = [_plan(part, depth + 1) for part in subparts]
    boundary = multipart.group(2)
    if boundary is None:  # drawn at rendering; set_boundary() would store it under raw_name
        content_type_line = None
    elif len(content_type.name) + len(type_text) + 2 > MAX_LINE:
        content_type_line = _boundary_line(content_type.name, multipart.group(1), boundary)
    else:
        content_type_line = fold(raw_name, content_type)
    lines: list[str | None] = [
        content_type_line if value is content_type else fold(name, value)
        for name, value in headers]
    lines.append(NL)
    return _Multipart(lines, raw_name, multipart.group(1), boundary, parts, preamble,
                      epilogue)


def _render(node: _Multipart | bytes) -> bytes:
    """Generator._handle_multipart: parts first (inner boundaries are drawn first, as in
    the stdlib), then the boundary, then the headers that carry it."""
    if isinstance(node, bytes):
        return node
    texts = [_render(part) for part in node.parts]
    boundary = node.boundary
    if boundary is None:
        boundary = _make_boundary(b"\r\n".join(texts))
        line = _boundary_line(node.name, node.content_type, boundary)
        head = "".join([line if item is None else item for item in node.lines])
    else:
        head = "".join(node.lines)  # type: ignore[arg-type]
    dash = f"--{boundary}".encode("ascii")
    out = [head.encode("ascii", "surrogateescape")]
    if node.preamble is not None:
        out.append(_crlf(node.preamble).encode("ascii") + b"\r\n")
    out.append(dash + b"\r\n")
    if texts:
        out.append(texts[0])
    for text in texts[1:]:
        out.append(b"\r\n" + dash + b"\r\n")
        out.append(text)
    out.append(b"\r\n" + dash + b"--\r\n")
    if node.epilogue is not None:
        out.append(_crlf(node.epilogue).encode("ascii"))
    return b"".join(out)


def _text_body(msg: Message, charset: str | None) -> bytes:
    """Generator._handle_text / BytesGenerator._handle_text for what set_content makes."""
    if msg.is_multipart():
        raise Unhandled("text part with subparts")
    payload = msg.get_payload()
    if payload is None:
        return b""
    if not isinstance(payload, str):
        raise Unhandled("payload is not a str")
    if payload.isascii():
        # get_payload() decodes surrogate-escaped bytes with the charset (default ASCII);
        # US-ASCII and UTF-8 never turn a byte above 0x7f into ASCII, so this payload has
        # none of the raw bytes the stdlib would write back as they are.
        return _crlf(payload).encode("ascii")
    # 8bit: get_payload(decode=True) returns the raw bytes, and they decode to what
    # get_payload() returned only when they are real UTF-8 behind an 8bit CTE; a payload
    # of non-ASCII text instead (which the stdlib refuses to write) never agrees.
    cte = msg.get("Content-Transfer-Encoding")
    if cte is None or str(cte).lower() != "8bit" or charset != "utf-8":
        raise Unhandled("non-ASCII payload")
    raw = msg.get_payload(decode=True)
    if not isinstance(raw, bytes):
        raise Unhandled("undecodable payload")
    try:
        same = raw.decode("utf-8") == payload
    except UnicodeDecodeError:
        same = False
    if not same:
        raise Unhandled("payload is not 8bit UTF-8 bytes")
    if b"\r" not in raw:
        return raw.replace(b"\n", b"\r\n")
    return re.sub(rb"\r\n|\r|\n", b"\r\n", raw)


def _crlf(text: str) -> str:
    """Generator._write_lines: every line ending becomes CRLF (a last line without one
    stays without)."""
    if "\r" not in text:
        return text.replace("\n", NL)
    return _NLCRE.sub(NL, text)


def _boundary_line(name: str, content_type: str, boundary: str) -> str:
    """How SMTP folds ``multipart/x; boundary="b"`` (the value set_boundary() writes):
    on one line when it fits, else the parameter alone on a continuation line."""
    one_line = f'{name}: {content_type}; boundary="{boundary}"'
    if len(one_line) <= MAX_LINE:
        return one_line + NL
    return f'{name}: {content_type};{NL} boundary="{boundary}"{NL}'


def _make_boundary(text: bytes) -> str:
    """email.generator.Generator._make_boundary: the same random draw and format, and a
    suffix while ``--boundary`` stands alone on a line of the text. The regular expression
    is only compiled when the bytes occur at all (which a random token makes rare)."""
    token = random.randrange(sys.maxsize)  # noqa: S311 - the stdlib's draw, not a secret
    boundary = f"{'=' * 15}{token:0{_BOUNDARY_WIDTH}d}=="
    candidate, counter = boundary, 0
    while (b"--" + candidate.encode("ascii")) in text and re.search(
            b"^--" + re.escape(candidate.encode("ascii")) + b"(--)?$", text, re.MULTILINE):
        candidate = f"{boundary}.{counter}"
        counter += 1
    return candidate


# -- the self-check -----------------------------------------------------------------------

_checked: bool | None = None
_check_lock = threading.Lock()


def fast_path_enabled() -> bool:
    """True once probe messages serialised both ways gave the same bytes on this Python."""
    global _checked
    if _checked is None:
        with _check_lock:
            if _checked is None:
                _checked = _self_check()
    return _checked


def _probes() -> list[Message]:
    from email.headerregistry import Address
    from email.message import EmailMessage

    made = []
    for html in (False, True):
        message = EmailMessage()
        message["From"] = Address("Acme Notifications", addr_spec="noreply@example.com")
        message["To"] = "user@example.com, Other <other@example.com>"
        message["Cc"] = "<angle@example.com>,plain@example.com"  # spelled as typed
        message["Subject"] = "Your report is ready"
        message["Date"] = "Tue, 01 Jul 2025 10:00:00 +0000"
        message["Message-ID"] = "<probe.1@example.com>"
        message["X-Long"] = "word " * 30  # folded by the stdlib
        message.set_content("Hello,\n.dot\r\nline\rmore\n" + "x" * 100 + "\n")
        if html:
            message.add_alternative("<p>caf\u00e9</p>\n", subtype="html")
            message.set_boundary("===============0123456789012345678==")
        made.append(message)
    return made


def _self_check() -> bool:
    try:
        for fast, slow in zip(_probes(), _probes(), strict=True):
            if _render(_plan(fast, 0)) != slow.as_bytes(policy=POLICY):
                raise AssertionError("a probe message differs")
        for content_type in ("multipart/alternative", "multipart/mixed"):
            for boundary in ("b", "===============0123456789012345678=="):
                value = f'{content_type}; boundary="{boundary}"'
                expected = POLICY.header_factory("Content-Type", value).fold(policy=POLICY)
                if _boundary_line("Content-Type", content_type, boundary) != expected:
                    raise AssertionError("the boundary line differs")
    except Exception:
        log.warning("fastmail: this Python serialises differently; using the stdlib only",
                    exc_info=True)
        return False
    return True
