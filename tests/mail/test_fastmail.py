"""fastmail.serialise must give the bytes of ``as_bytes(policy=email.policy.SMTP)``.

How the comparison stays honest although the stdlib draws multipart boundaries at random
(and stores the one it drew on the message):

- every example builds two identical fresh messages from one drawn spec; ``random`` is
  seeded with the same value before each serialisation, so a boundary drawn by either
  path is the same draw (fastmail makes the stdlib's single ``random.randrange`` call);
- fastmail never changes the message, so the stdlib serialising *the same object*
  afterwards (same seed again) must give the same bytes too: that catches a fast path that
  leaves state behind;
- some examples set a boundary first (fixed or drawn by hypothesis), which takes
  randomness out of it entirely.

A spy on ``Message.as_bytes`` tells whether fastmail handled a message itself or handed it
to the stdlib; a spy on ``BaseHeader.fold`` tells which headers the stdlib folded.
"""

from __future__ import annotations

import datetime
import email
import email.policy
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import headerregistry
from email.headerregistry import Address
from email.message import EmailMessage, Message
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, event, given, reject, settings
from hypothesis import strategies as st

from flask_smtp_senders.mail import fastmail

SMTP = email.policy.SMTP

# ------------------------------------------------------------------------------- spies


@dataclass
class Calls:
    as_bytes: int = 0
    folded: list[str] = field(default_factory=list)


@contextmanager
def spied() -> Iterator[Calls]:
    """Count whole-message fallbacks and record which headers the stdlib folded."""
    fastmail.fast_path_enabled()  # its one-time self-check uses the stdlib: not counted
    calls = Calls()
    real_as_bytes = Message.as_bytes
    real_fold = headerregistry.BaseHeader.fold

    def as_bytes(self: Message, *args: Any, **kwargs: Any) -> bytes:
        calls.as_bytes += 1
        return real_as_bytes(self, *args, **kwargs)

    def fold(self: headerregistry.BaseHeader, *, policy: Any) -> str:
        calls.folded.append(self.name)
        return real_fold(self, policy=policy)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Message, "as_bytes", as_bytes)
        patch.setattr(headerregistry.BaseHeader, "fold", fold)
        yield calls


def both_ways(build: Callable[[], Message], seed: int = 1) -> tuple[bytes, bytes, Calls]:
    """(fastmail bytes, stdlib bytes of an identical fresh message, what fastmail did);
    also checks the stdlib on the very object fastmail serialised."""
    fast_message, slow_message = build(), build()
    random.seed(seed)
    with spied() as calls:
        fast = fastmail.serialise(fast_message)
    random.seed(seed)
    slow = slow_message.as_bytes(policy=SMTP)
    random.seed(seed)
    again = fast_message.as_bytes(policy=SMTP)
    assert again == slow, "fastmail changed the message it serialised"
    return fast, slow, calls


# ------------------------------------------------------------------------------- specs

ASCII = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
ANY_CHAR = st.characters(blacklist_categories=("Cs",))  # no lone surrogates
WORDS = st.text(st.sampled_from("abcdefghij XYZ.,;:'\"()<>@[]\\=?-_"), max_size=40)

header_text = st.one_of(
    st.text(ASCII, max_size=60),
    WORDS,
    st.text(ASCII, min_size=60, max_size=200),  # folded by the stdlib
    st.text(ANY_CHAR, max_size=40),  # non-ASCII: RFC 2047 by the stdlib
    st.sampled_from([
        "", " ", "  leading and trailing  ", "=?utf-8?q?caf=C3=A9?=", "=?bogus",
        "Re: [ticket #42] a; b <c@d>", "x" * 72, "x" * 73, "word " * 20, "caf\u00e9",
        "tab\there", "ends with newline\n", "\u00a0nbsp",
    ]),
)
local_part = st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,15}", fullmatch=True)  # "a..b." too
dot_atom = st.from_regex(r"[a-z0-9_+-]{1,8}(\.[a-z0-9_+-]{1,8})?", fullmatch=True)
domain = st.from_regex(r"[a-z0-9][a-z0-9-]{0,12}(\.[a-z]{2,6}){1,2}", fullmatch=True)
display_name = st.one_of(st.just(""), st.text(ASCII, max_size=30), st.text(ANY_CHAR, max_size=15),
                         st.sampled_from(["Acme", "Acme, Inc.", 'Say "hi"', "Jos\u00e9"]))


@dataclass(frozen=True)
class Addresses:
    """Address objects to make when the message is built (they may refuse their parts)."""

    parts: tuple[tuple[str, str, str], ...]

    def make(self) -> list[Address]:
        return [Address(name, addr_spec=f"{local}@{host}") for name, local, host in self.parts]


def header_value(value: Any) -> Any:
    return value.make() if isinstance(value, Addresses) else value


@st.composite
def address_header(draw: st.DrawFn) -> Any:
    """A To/Cc/Reply-To value: Address objects (made by build()), or a string spelled in
    several ways."""
    addresses = draw(st.lists(st.tuples(display_name, local_part, domain), min_size=1,
                              max_size=4))
    if draw(st.booleans()):
        return Addresses(tuple(addresses))
    spelled = []
    for name, local, host in addresses:
        style = draw(st.sampled_from(["bare", "angle", "name", "quoted"]))
        spec = f"{local}@{host}"
        safe = "".join(c for c in name if c not in '"\\')
        spelled.append({"bare": spec, "angle": f"<{spec}>", "name": f"{safe} <{spec}>",
                        "quoted": f'"{safe}" <{spec}>'}[style])
    return draw(st.sampled_from([", ", ",", " , ", ",\t"])).join(spelled)


@st.composite
def body_text(draw: st.DrawFn) -> str:
    """Lines with dots at their start, CR/LF mixes, long lines, unicode."""
    line = st.one_of(
        st.text(ASCII, max_size=60),
        st.text(ANY_CHAR, max_size=40),
        st.sampled_from(["", ".", "..", ".leading dot", "From the start", "a=b", " ", "\t"]),
        st.text(ASCII, min_size=77, max_size=1100),
        st.builds(lambda n: "\u00e9" * n, st.integers(1, 120)),
    )
    lines = draw(st.lists(line, max_size=12))
    endings = draw(st.lists(st.sampled_from(["\n", "\r\n", "\r"]), min_size=len(lines),
                            max_size=len(lines)))
    text = "".join(a + b for a, b in zip(lines, endings, strict=True))
    if draw(st.booleans()) and text:
        text = text.rstrip("\r\n")  # no final newline
    return text


@dataclass(frozen=True)
class Spec:
    subject: str | None
    to: Any
    from_: Any
    date: Any
    message_id: str | None
    extra: tuple[tuple[str, Any], ...]
    body: str
    cte: str | None
    raw_payload: bool
    html: str | None
    html_cte: str | None
    boundary: str | None
    preamble: str | None
    charset: str | None = None
    attachment: str | None = None


@st.composite
def specs(draw: st.DrawFn, common: bool = False) -> Spec:
    """A message spec; ``common`` draws only what the fast path must handle itself."""
    if common:
        plain = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1,
                        max_size=40).filter(lambda text: "=?" not in text)  # RFC 2047-like
        return Spec(
            subject=draw(plain), to=f"{draw(dot_atom)}@{draw(domain)}",
            from_=Address("Acme", addr_spec="noreply@example.com"),
            date=datetime.datetime(2025, 7, 1, 10, 0, tzinfo=datetime.timezone.utc),
            message_id=f"<{draw(dot_atom)}@example.com>", extra=(),
            body=draw(body_text()), cte=None, raw_payload=False,
            html=draw(st.one_of(st.none(), body_text())), html_cte=None,
            boundary=None, preamble=None)
    cte = st.sampled_from([None, None, None, "quoted-printable", "base64", "8bit", "7bit"])
    extra_name = st.sampled_from(["X-Campaign", "Comments", "Keywords", "In-Reply-To",
                                  "References", "Cc", "Reply-To", "x-lower-case"])
    extras = draw(st.lists(st.tuples(extra_name, st.one_of(header_text, address_header())),
                           max_size=3))
    return Spec(
        subject=draw(st.one_of(st.none(), header_text)),
        to=draw(address_header()),
        from_=draw(st.one_of(address_header(),
                             st.just(Address("Acme", addr_spec="noreply@example.com")))),
        date=draw(st.sampled_from([
            None, "Tue, 01 Jul 2025 10:00:00 +0000", "not a date", "",
            datetime.datetime(2025, 7, 1, 10, 0, tzinfo=datetime.timezone.utc)])),
        message_id=draw(st.one_of(
            st.none(), st.builds(lambda a, b: f"<{a}@{b}>", local_part, domain),
            st.sampled_from(["no-brackets@example.com", "<" + "x" * 80 + "@example.com>"]))),
        extra=tuple(extras),
        body=draw(body_text()),
        cte=draw(cte),
        raw_payload=draw(st.integers(0, 4)) == 0,
        html=draw(st.one_of(st.none(), body_text())),
        html_cte=draw(cte),
        boundary=draw(st.one_of(
            st.none(), st.none(), st.just("===============1234567890123456789=="),
            st.from_regex(r"[0-9A-Za-z'()+_,./:=?-]{1,70}", fullmatch=True))),
        preamble=draw(st.sampled_from([None, None, "", "This is a MIME message.\n"])),
        # what the stdlib gets whole: another charset, attachments (inside a multipart
        # whose other parts the fast path would handle)
        charset=draw(st.sampled_from([None] * 6 + ["iso-8859-1", "us-ascii"])),
        attachment=draw(st.sampled_from([None] * 6 + ["pdf", "csv"])),
    )


def build(spec: Spec) -> EmailMessage:
    """The message a spec describes; reject() when the email package refuses it."""
    try:
        message = EmailMessage()
        if spec.subject is not None:
            message["Subject"] = spec.subject
        message["To"] = header_value(spec.to)
        message["From"] = header_value(spec.from_)
        if spec.date is not None:
            message["Date"] = spec.date
        if spec.message_id is not None:
            message["Message-ID"] = spec.message_id
        for name, value in spec.extra:
            message[name] = header_value(value)
        if spec.raw_payload:  # set_payload keeps CR/LF mixes for the generator to fix
            message["Content-Type"] = "text/plain"
            message.set_payload(spec.body.encode("ascii", "replace").decode("ascii"))
        else:
            message.set_content(spec.body, cte=spec.cte,
                                **({"charset": spec.charset} if spec.charset else {}))
        if spec.html is not None:
            message.add_alternative(spec.html, subtype="html", cte=spec.html_cte)
            if spec.boundary is not None:
                message.set_boundary(spec.boundary)
            message.preamble = spec.preamble
        if spec.attachment == "pdf":
            message.add_attachment(b"%PDF-1.4\n\x00\xff", maintype="application",
                                   subtype="pdf", filename="report.pdf")
        elif spec.attachment == "csv":
            message.add_attachment("a,b\n1,2\n", filename="data.csv")
    except Exception:  # the email package refuses it (or trips on it): not our case
        reject()
    return message


# ------------------------------------------------------------------------ the property

# No explain phase: on a failure it re-runs thousands of examples for minutes.
PHASES = tuple(phase for phase in Phase if phase is not Phase.explain)


@settings(max_examples=300, deadline=None, phases=PHASES,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(spec=specs(), seed=st.integers(0, 2**32 - 1))
def test_byte_identical_to_the_stdlib_for_any_message(spec: Spec, seed: int) -> None:
    try:
        fast, slow, calls = both_ways(lambda: build(spec), seed)
    except UnicodeEncodeError:  # the stdlib cannot write it; fastmail must not either
        with pytest.raises(UnicodeEncodeError):
            build(spec).as_bytes(policy=SMTP)
        event("the stdlib refuses it")
        return
    event("whole message to the stdlib" if calls.as_bytes else "fast path")
    assert fast == slow


@settings(max_examples=200, deadline=None, phases=PHASES,
          suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs(common=True), seed=st.integers(0, 2**32 - 1))
def test_the_common_case_takes_the_fast_path(spec: Spec, seed: int) -> None:
    """Plain ASCII headers, text or text + HTML set by set_content: fastmail writes it
    itself, every header included (address headers from their parse tree)."""
    fast, slow, calls = both_ways(lambda: build(spec), seed)
    assert fast == slow
    assert calls.as_bytes == 0
    assert calls.folded == []


RAW_TEXT = st.one_of(
    st.text(ASCII, max_size=90),
    st.text(ANY_CHAR, max_size=30),
    st.lists(st.text(ASCII, min_size=1, max_size=80), min_size=1, max_size=4).map(
        lambda lines: "\r\n ".join(lines)),  # folded continuation lines
    st.sampled_from(["", " ", "a\nb", "a\rb", "tab\there", "x" * 74, "x" * 75,
                     "a\x0bb", "=?utf-8?q?caf=C3=A9?= <a@b.c>"]),
)


@settings(max_examples=300, deadline=None, phases=PHASES,
          suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(["From", "Reply-To", "Date", "Message-ID", "X-Note"]),
       text=RAW_TEXT, seed=st.integers(0, 2**32 - 1))
def test_a_header_stored_as_a_string_is_written_as_the_policy_writes_it(
        name: str, text: str, seed: int) -> None:
    """set_raw strings (how SenderHeaders stores a sender's pre-folded headers): written
    as the policy writes them, refolded (or refused) by the stdlib where it would."""
    def build_it() -> EmailMessage:
        message = notification()
        del message[name]
        message.set_raw(name, text)
        return message

    try:
        fast, slow, _calls = both_ways(build_it, seed)
    except Exception:  # the stdlib cannot write (or refold) it: neither may fastmail
        with pytest.raises(Exception):  # noqa: B017 - whatever the stdlib raised
            fastmail.serialise(build_it())
        event("the stdlib refuses it")
        return
    assert fast == slow


def test_a_short_raw_header_takes_the_fast_path() -> None:
    def build_it() -> EmailMessage:
        message = notification()
        del message["From"]
        message.set_raw("From", "=?utf-8?q?Caf=C3=A9?= <cafe@example.com>")
        return message

    fast, slow, calls = both_ways(build_it)
    assert fast == slow and calls.as_bytes == 0
    assert b"\r\nFrom: =?utf-8?q?Caf=C3=A9?= <cafe@example.com>\r\n" in fast


def test_an_address_keeps_its_spelling() -> None:
    """str() of an address header normalises it; the folded line keeps what was typed."""
    def build_it() -> EmailMessage:
        message = notification()
        message["Cc"] = "<angle@example.com>,  Name <n@example.com>"
        return message

    fast, slow, calls = both_ways(build_it)
    assert fast == slow and calls.folded == []
    assert b"\r\nCc: <angle@example.com>,  Name <n@example.com>\r\n" in fast


# ------------------------------------------------------------------ examples by hand


def notification(subject: str = "Your report is ready", html: bool = True,
                 body: str = "Hello,\n\nyour report is ready.\n" * 12) -> EmailMessage:
    message = EmailMessage()
    message["To"] = "user@example.com"
    message["Subject"] = subject
    message["From"] = Address("Acme", addr_spec="noreply@example.com")
    message["Date"] = "Tue, 01 Jul 2025 10:00:00 +0000"
    message["Message-ID"] = "<1.2@example.com>"
    message.set_content(body)
    if html:
        message.add_alternative("<p>Hello,</p>\n" * 10, subtype="html")
    return message


def test_the_self_check_passes_on_this_python() -> None:
    assert fastmail.fast_path_enabled()


@pytest.mark.parametrize("html", [False, True])
@pytest.mark.parametrize("body", [
    "plain ASCII\n.leading dot\n", "caf\u00e9 8bit\n", "x" * 100 + "\u00e9\n",
    "\u65e5\u672c\u8a9e" * 40 + "\n", "mixed\r\nendings\rhere\n",
])
def test_each_transfer_encoding_set_content_picks(html: bool, body: str) -> None:
    fast, slow, calls = both_ways(lambda: notification(html=html, body=body))
    assert fast == slow and calls.as_bytes == 0


def test_a_non_ascii_subject_is_folded_by_the_stdlib() -> None:
    fast, slow, calls = both_ways(lambda: notification(subject="Caf\u00e9 ouvert"))
    assert fast == slow
    assert "Subject" in calls.folded and calls.as_bytes == 0
    assert b"Subject: =?utf-8?q?Caf=C3=A9?= ouvert\r\n" in fast


def test_a_long_subject_is_folded_by_the_stdlib() -> None:
    fast, slow, calls = both_ways(lambda: notification(subject="word " * 30))
    assert fast == slow
    assert "Subject" in calls.folded
    assert fast.count(b"\r\n ") >= 1  # continuation lines


def test_a_short_ascii_subject_is_written_directly() -> None:
    _, _, calls = both_ways(lambda: notification(subject="Short and plain"))
    assert "Subject" not in calls.folded


def test_an_attachment_goes_to_the_stdlib_whole() -> None:
    def build_it() -> EmailMessage:
        message = notification()
        message.add_attachment(b"%PDF-1.4 ...", maintype="application", subtype="pdf",
                               filename="report.pdf")
        return message

    fast, slow, calls = both_ways(build_it)
    assert fast == slow and calls.as_bytes == 1


def test_a_text_attachment_goes_to_the_stdlib_whole() -> None:
    def build_it() -> EmailMessage:
        message = notification(html=False)
        message.add_attachment("a,b\n1,2\n", filename="data.csv")
        return message

    fast, slow, calls = both_ways(build_it)
    assert fast == slow and calls.as_bytes == 1


def test_a_parsed_message_goes_to_the_stdlib_whole() -> None:
    source = notification().as_bytes(policy=SMTP)
    fast, slow, calls = both_ways(
        lambda: email.message_from_bytes(source, policy=email.policy.default))
    assert fast == slow and calls.as_bytes == 1


def test_another_charset_goes_to_the_stdlib_whole() -> None:
    def build_it() -> EmailMessage:
        message = notification(html=False)
        message.set_content("ol\u00e9\n", charset="iso-8859-1")
        return message

    fast, slow, calls = both_ways(build_it)
    assert fast == slow and calls.as_bytes == 1


def test_what_the_stdlib_cannot_write_fails_the_same_way() -> None:
    message = notification(html=False)
    message.set_payload("caf\u00e9 as text, not bytes\n")  # no charset: not encodable
    with pytest.raises(UnicodeEncodeError):
        message.as_bytes(policy=SMTP)
    with pytest.raises(UnicodeEncodeError):
        fastmail.serialise(message)


def test_the_message_is_left_as_it_was() -> None:
    """Unlike the stdlib, the boundary drawn is not stored; the bytes are still those the
    stdlib writes for that draw, and each serialisation draws afresh."""
    message = notification()
    first = fastmail.serialise(message)
    assert message.get_boundary() is None
    second = fastmail.serialise(message)
    assert first != second
    parsed = [email.message_from_bytes(data, policy=email.policy.default)
              for data in (first, second)]
    assert [p.get_body(("plain",)).get_content().replace("\r\n", "\n") for p in parsed] == [
        "Hello,\n\nyour report is ready.\n" * 12] * 2


def test_a_broken_fast_path_is_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fastmail, "_boundary_line", lambda name, ctype, b: f"{name}: x\r\n")
    assert fastmail._self_check() is False
    monkeypatch.setattr(fastmail, "_checked", False)
    message = notification()
    random.seed(7)
    fast = fastmail.serialise(message)
    random.seed(7)
    assert fast == notification().as_bytes(policy=SMTP)
