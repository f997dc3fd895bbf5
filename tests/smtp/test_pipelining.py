"""RFC 2920 PIPELINING in the transport, against real TLS servers on loopback.

Why: pipelining saves a round trip per command, but a slip (a body before its 354, a
reply read for the wrong command, a retry after a body went out) delivers twice or
corrupts a session. These tests show what crossed the wire and in which order, and that
every message gets exactly one honest outcome.
"""

from __future__ import annotations

import collections
import contextlib
import smtplib
import socket
import ssl
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flask_smtp_senders.errors import DeliveryError, SMTPTimeout
from flask_smtp_senders.sealed import Secret
from flask_smtp_senders.smtp import envelope as pipeline
from flask_smtp_senders.smtp import transport
from tests.support.smtp_servers import LOOPBACK, SERVER_NAME, RawTCPServer, server_context

SENDER = "portal@example.org"
BLOCKED = "blocked@example.org"
NOBODY = "nobody@example.org"
REJECT = b"REJECT-ME"


@dataclass(frozen=True)
class Item:
    """What services/batch.py hands over: an envelope and the serialised message."""

    from_addr: str
    recipients: tuple[str, ...]
    data: bytes


def make_item(n: int, *, sender: str = SENDER, recipients: Iterable[str] = (),
              extra: bytes = b"") -> Item:
    """Message ``n``; its body has lines that only survive correct dot-stuffing."""
    data = (f"From: Portal <{SENDER}>\r\nTo: r{n}@example.org\r\nSubject: message {n}\r\n"
            f"Message-ID: <{n}@example.org>\r\n\r\n").encode() + (
        b"Hello,\r\n.leading dot survives\r\n..two dots too\r\n.\r\nnot the end yet\r\n"
        + extra + f"message {n} ends here\r\n".encode())
    return Item(sender, tuple(recipients) or (f"r{n}@example.org",), data)


class Counting:
    """An item iterator that counts what was pulled from it."""

    def __init__(self, items: Iterable[Item]) -> None:
        self._items = iter(items)
        self.pulled = 0

    def __iter__(self) -> Counting:
        return self

    def __next__(self) -> Item:
        item = next(self._items)
        self.pulled += 1
        return item


def options(tls_material, *, operation_timeout: float = 5.0,
            deadline: float = 10.0) -> transport.TransportOptions:
    return transport.TransportOptions(
        ssl_context=tls_material.client_context(),
        operation_timeout=operation_timeout,
        deadline=deadline,
        ehlo_name="client.example.org",
        messages={stage: f"failed at {stage}" for stage in transport.STAGES},
        # The smtp_senders_resolve hook's job: the server name points at loopback.
        resolver=lambda name, _port: [LOOPBACK] if name == SERVER_NAME else [],
        destination_allowed=lambda _name, _port, address: address == LOOPBACK,
    )


@contextlib.contextmanager
def connected(server, tls_material, **timeouts: float) -> Iterator[transport.Connection]:
    address = transport.ServerAddress(SERVER_NAME, server.port, "alice")
    with transport.connect(address, Secret("s3cret"), options(tls_material, **timeouts)) as conn:
        yield conn


def assert_failed(outcome, stage: str, code: int | None, *, unknown: bool = False) -> None:
    assert isinstance(outcome, DeliveryError), outcome
    assert (outcome.stage, outcome.code, outcome.delivery_unknown) == (stage, code, unknown)
    assert outcome.user_message == f"failed at {stage}"  # nothing from the server


# ------------------------------------------------------------- a server that shows order


class ScriptedServer(RawTCPServer):
    """Implicit-TLS SMTP server on raw sockets logging, in order, every line it read
    (``("C", line)``) and every reply it wrote (``("S", reply)``).

    With ``hold`` it proves pipelining: it answers the first MAIL only once DATA has
    arrived, and the first body only once the next MAIL has, waiting at most ``hold`` s.
    A lock-step client cannot send those lines before the reply, so its log shows the
    reply first (after the wait) instead of hanging the test.
    """

    def __init__(self, context: ssl.SSLContext, *, pipelining: bool = True, hold: float = 0.0,
                 refuse_rcpt: Iterable[str] = (), always_354: bool = False,
                 mute_on_mail: bool = False) -> None:
        super().__init__()
        self.context = context
        self.pipelining = pipelining
        self.hold = hold
        self.refuse_rcpt = frozenset(refuse_rcpt)
        self.always_354 = always_354  # answer DATA with 354 even without a recipient
        self.mute_on_mail = mute_on_mail  # go silent at the first MAIL
        self.log: list[tuple[str, bytes]] = []
        self.bodies: list[bytes] = []  # every body received, dot-stuffing undone
        self.delivered: list[tuple[str, tuple[str, ...], bytes]] = []

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(2.0)
        try:
            sock = self.context.wrap_socket(conn, server_side=True)
        except OSError:
            return
        with sock:
            sock.settimeout(0.05)  # lets the session notice stop()
            _ScriptedSession(self, sock).run()

    def index(self, kind: str, start: bytes, nth: int = 1) -> int:
        """Position in the log of the nth line of ``kind`` starting with ``start``."""
        hits = [i for i, (k, line) in enumerate(self.log) if k == kind and line.startswith(start)]
        assert len(hits) >= nth, (kind, start, self.log)
        return hits[nth - 1]


class _ScriptedSession:
    def __init__(self, server: ScriptedServer, sock: ssl.SSLSocket) -> None:
        self.server = server
        self.sock = sock
        self.buffer = bytearray()
        self.lines: collections.deque[bytes] = collections.deque()

    def _fill(self, until: float) -> bool:
        """Read one more line from the socket; False once closed, stopped or past until."""
        while b"\n" not in self.buffer:
            if self.server._stopping.is_set() or time.monotonic() > until:
                return False
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return False
            if not chunk:
                return False
            self.buffer += chunk
        end = self.buffer.index(b"\n") + 1
        line = bytes(self.buffer[:end])
        del self.buffer[:end]
        self.server.log.append(("C", line))
        self.lines.append(line)
        return True

    def readline(self) -> bytes | None:
        if not self.lines and not self._fill(time.monotonic() + 10.0):
            return None
        return self.lines.popleft()

    def hold_until(self, start: bytes) -> None:
        """Read ahead, without answering, until a line starting with ``start`` arrived."""
        until = time.monotonic() + self.server.hold
        while not any(line.upper().startswith(start) for line in self.lines):
            if not self._fill(until):
                return

    def reply(self, text: bytes) -> None:
        self.server.log.append(("S", text))
        self.sock.sendall(text + b"\r\n")

    def read_body(self) -> bytes | None:
        lines = []
        while (line := self.readline()) is not None:
            if line == b".\r\n":
                return b"".join(lines)
            lines.append(line[1:] if line.startswith(b".") else line)
        return None

    def run(self) -> None:
        server = self.server
        self.reply(b"220 scripted.test ESMTP")
        mail_from: str | None = None
        rcpts: list[str] = []
        mails = 0
        while (line := self.readline()) is not None:
            verb = line[:4].upper()
            argument = line.partition(b":")[2].strip().strip(b"<>").decode()
            if verb == b"EHLO":
                extra = b"250-PIPELINING\r\n" if server.pipelining else b""
                self.reply(b"250-scripted.test\r\n" + extra + b"250 AUTH PLAIN")
            elif verb == b"AUTH":
                self.reply(b"235 2.7.0 Authenticated")
            elif verb == b"MAIL":
                mails += 1
                if server.mute_on_mail:  # reads on, never answers
                    while self.readline() is not None:
                        pass
                    return
                if mails == 1 and server.hold:
                    self.hold_until(b"DATA")
                mail_from, rcpts = argument, []
                self.reply(b"250 2.1.0 Sender ok")
            elif verb == b"RCPT":
                if mail_from is None:
                    self.reply(b"503 5.5.1 Need MAIL first")
                elif argument in server.refuse_rcpt:
                    self.reply(b"550 5.1.1 No such user")
                else:
                    rcpts.append(argument)
                    self.reply(b"250 2.1.5 Recipient ok")
            elif verb == b"DATA":
                if not rcpts and not server.always_354:
                    self.reply(b"503 5.5.1 Need RCPT first")
                    continue
                self.reply(b"354 Go ahead")
                body = self.read_body()
                if body is None:
                    return
                server.bodies.append(body)
                if len(server.bodies) == 1 and server.hold:
                    self.hold_until(b"MAIL")
                if rcpts and mail_from is not None:
                    server.delivered.append((mail_from, tuple(rcpts), body))
                    self.reply(b"250 2.0.0 Queued")
                else:
                    self.reply(b"554 5.5.1 No valid recipients")
                mail_from, rcpts = None, []
            elif verb == b"RSET":
                mail_from, rcpts = None, []
                self.reply(b"250 2.0.0 Reset")
            elif verb == b"QUIT":
                self.reply(b"221 2.0.0 Bye")
                return
            else:
                self.reply(b"502 5.5.2 Not implemented")


@pytest.fixture
def scripted(tls_material):
    """Factory: scripted(**options) -> a started ScriptedServer, stopped at teardown."""
    with contextlib.ExitStack() as stack:
        def start(**kwargs) -> ScriptedServer:
            server = ScriptedServer(server_context(tls_material.good), **kwargs)
            return stack.enter_context(server)  # type: ignore[return-value]
        yield start


# ---------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("mode, port", [("implicit", None), ("starttls", 587)])
def test_twenty_messages_over_one_connection_with_refusals_along_the_way(
        smtp_server, tls_material, mode, port):
    server = smtp_server(mode, port=port, pipelining=True, refuse_rcpt=[NOBODY],
                         refuse_mail=[BLOCKED], reject_content=[REJECT])
    items = [make_item(n) for n in range(20)]
    items[4] = make_item(4, recipients=["r4@example.org", NOBODY])  # one of two refused
    items[7] = make_item(7, sender=BLOCKED)  # MAIL refused
    items[10] = make_item(10, recipients=[NOBODY])  # every recipient refused
    items[13] = make_item(13, extra=REJECT + b"\r\n")  # body refused with 554

    with connected(server, tls_material) as conn:
        assert conn.pipelining
        results = list(conn.send_pipelined(iter(items)))
        assert conn.usable

    assert [item for item, _ in results] == items
    outcomes = [outcome for _, outcome in results]
    assert_failed(outcomes[7], "sender", 553)
    assert_failed(outcomes[10], "recipient", 550)
    assert_failed(outcomes[13], "data", 554)
    assert "not allowed" not in str(outcomes[7]) and "rejected" not in str(outcomes[13])
    assert outcomes[4] == {NOBODY: (550, "5.1.1 No such user")}
    assert all(outcomes[n] == {} for n in range(20) if n not in (4, 7, 10, 13))

    delivered = [items[n] for n in range(20) if n not in (7, 10, 13)]
    assert server.connections == 1
    assert [m.data for m in server.messages] == [item.data for item in delivered]
    assert [m.rcpt_tos for m in server.messages] == [
        [r for r in item.recipients if r != NOBODY] for item in delivered]
    assert all(m.tls and m.username == "alice" for m in server.messages)
    assert server.mail_from_seen == [item.from_addr for item in items]  # each MAIL once
    # Only item 10 left a transaction open (MAIL accepted, DATA refused): one RSET.
    assert server.verbs.count("RSET") == 1
    assert server.verbs[-1] == "QUIT"


def test_commands_reach_the_server_before_the_replies_they_could_wait_for(
        scripted, tls_material):
    server = scripted(hold=3.0)
    items = [make_item(n) for n in range(3)]

    started = time.monotonic()
    with connected(server, tls_material) as conn:
        results = list(conn.send_pipelined(iter(items)))
    assert time.monotonic() - started < 2.0  # the server never had to wait out its hold

    assert [outcome for _, outcome in results] == [{}, {}, {}]
    assert [body for *_, body in server.delivered] == [item.data for item in items]
    # Item 1's MAIL, RCPT and DATA all arrived before the server answered its MAIL...
    mail_reply = server.index("S", b"250 2.1.0")
    assert server.index("C", b"mail FROM:") < server.index("C", b"rcpt TO:") \
        < server.index("C", b"DATA") < mail_reply
    # ...its body only after the 354...
    assert server.index("S", b"354") < server.index("C", b"Hello,")
    # ...and item 2's MAIL before the server answered item 1's body.
    assert server.index("C", b"mail FROM:", nth=2) < server.index("S", b"250 2.0.0 Queued")


def test_without_pipelining_it_falls_back_to_lock_step_which_the_order_check_detects(
        scripted, tls_material):
    server = scripted(pipelining=False, hold=0.3)
    items = [make_item(n) for n in range(3)]
    counting = Counting(items)

    with connected(server, tls_material) as conn:
        assert not conn.pipelining
        outcomes = []
        for _item, outcome in conn.send_pipelined(counting):
            outcomes.append(outcome)
            # the next one is pulled (prepared) while the server answers DATA, no sooner
            assert counting.pulled == min(len(outcomes) + 1, len(items))

    assert outcomes == [{}, {}, {}]
    assert [body for *_, body in server.delivered] == [item.data for item in items]
    assert server.index("S", b"250 2.1.0") < server.index("C", b"rcpt TO:")
    assert server.index("S", b"250 2.0.0 Queued") < server.index("C", b"mail FROM:", nth=2)


def test_recording_server_without_pipelining_gets_everything_lock_step(smtp_server,
                                                                       tls_material):
    server = smtp_server("implicit", refuse_rcpt=[NOBODY])
    items = [make_item(n) for n in range(8)]
    items[3] = make_item(3, recipients=[NOBODY])

    with connected(server, tls_material) as conn:
        results = list(conn.send_pipelined(iter(items)))
        assert conn.usable

    assert [item for item, _ in results] == items
    assert_failed(results[3][1], "recipient", 550)
    assert [m.data for m in server.messages] == [i.data for n, i in enumerate(items) if n != 3]
    assert server.verbs.count("DATA") == 7  # lock-step: no DATA once every RCPT failed
    assert server.verbs.count("RSET") == 1


def test_items_are_pulled_lazily_at_most_two_ahead(smtp_server, tls_material):
    server = smtp_server("implicit", pipelining=True)
    counting = Counting(make_item(n) for n in range(20))

    ahead = []
    with connected(server, tls_material) as conn:
        stream = conn.send_pipelined(counting)
        assert counting.pulled == 0  # nothing happens before the first next()
        for answered, (_item, outcome) in enumerate(stream, 1):
            assert outcome == {}
            ahead.append(counting.pulled - answered)

    assert max(ahead) == 2  # never more than two ahead, but really overlapping
    assert ahead[:18] == [2] * 18 and ahead[18:] == [1, 0]
    assert len(server.messages) == 20


def test_connection_lost_after_a_body_makes_only_that_message_unknown(smtp_server,
                                                                      tls_material):
    server = smtp_server("implicit", pipelining=True, drop_on_data=3)
    items = [make_item(n) for n in range(6)]
    counting = Counting(items)

    with connected(server, tls_material) as conn:
        results = list(conn.send_pipelined(counting))
        assert not conn.usable

    assert counting.pulled == 5  # body 3 + envelope 4 in flight, item 5 prepared; no more
    assert [item for item, _ in results] == items[:5]
    assert [outcome for _, outcome in results[:2]] == [{}, {}]
    assert_failed(results[2][1], "data", None, unknown=True)
    assert_failed(results[3][1], "sender", None)  # its envelope was in flight: send again
    assert_failed(results[4][1], "sender", None)  # never written: send again

    # The caller retries exactly what is safe to retry, on a new connection.
    retry = [item for item, outcome in results
             if isinstance(outcome, DeliveryError) and not outcome.delivery_unknown]
    with connected(server, tls_material) as conn:
        assert [o for _, o in conn.send_pipelined(iter(retry + items[5:]))] == [{}, {}, {}]
    datas = [m.data for m in server.messages]
    assert sorted(datas) == sorted(item.data for item in items)  # each exactly once


def test_server_hanging_after_a_body_fails_within_the_deadline(smtp_server, tls_material):
    server = smtp_server("implicit", pipelining=True, hang_after_data=5.0)
    counting = Counting(make_item(n) for n in range(5))

    started = time.monotonic()
    with connected(server, tls_material, operation_timeout=0.5, deadline=1.0) as conn:
        results = list(conn.send_pipelined(counting))
        elapsed = time.monotonic() - started
        assert not conn.usable

    assert elapsed < 1.5, elapsed
    assert counting.pulled == 3
    assert isinstance(results[0][1], SMTPTimeout)
    assert_failed(results[0][1], "timeout", None, unknown=True)
    assert_failed(results[1][1], "timeout", None)
    assert_failed(results[2][1], "timeout", None)


def test_each_message_gets_a_fresh_deadline_so_a_long_stream_is_fine(smtp_server,
                                                                     tls_material):
    """0.3 s per body and a caller pausing 0.4 s per outcome: the stream outlasts the 1 s
    deadline several times, no single message does."""
    server = smtp_server("implicit", pipelining=True, hang_after_data=0.3)
    items = [make_item(n) for n in range(4)]

    started = time.monotonic()
    outcomes = []
    with connected(server, tls_material, operation_timeout=0.8, deadline=1.0) as conn:
        for _item, outcome in conn.send_pipelined(iter(items)):
            outcomes.append(outcome)
            time.sleep(0.4)  # the caller's own work does not count against the server

    assert time.monotonic() - started > 2.0
    assert outcomes == [{}, {}, {}, {}]
    assert [m.data for m in server.messages] == [item.data for item in items]


def test_server_silent_on_mail_fails_at_the_operation_timeout(scripted, tls_material):
    server = scripted(mute_on_mail=True)

    started = time.monotonic()
    with connected(server, tls_material, operation_timeout=0.5, deadline=3.0) as conn:
        results = list(conn.send_pipelined(iter([make_item(0), make_item(1)])))
    elapsed = time.monotonic() - started

    assert 0.4 < elapsed < 1.0, elapsed
    assert_failed(results[0][1], "timeout", None)
    assert_failed(results[1][1], "timeout", None)
    assert server.bodies == []


def test_421_mid_stream_fails_the_rest_as_safe_to_retry(smtp_server, tls_material):
    server = smtp_server("implicit", pipelining=True, drop_after=3)
    items = [make_item(n) for n in range(6)]
    counting = Counting(items)

    with connected(server, tls_material) as conn:
        results = list(conn.send_pipelined(counting))
        assert not conn.usable

    assert counting.pulled == 5
    assert [outcome for _, outcome in results[:3]] == [{}, {}, {}]
    assert_failed(results[3][1], "sender", 421)  # its MAIL got the 421
    assert_failed(results[4][1], "sender", 421)
    assert results[4][1].temporary
    assert [m.data for m in server.messages] == [item.data for item in items[:3]]


def test_354_despite_every_recipient_refused_gets_a_bare_dot_not_the_body(scripted,
                                                                        tls_material):
    server = scripted(refuse_rcpt=[NOBODY], always_354=True)
    items = [make_item(0), make_item(1, recipients=[NOBODY]), make_item(2)]

    with connected(server, tls_material) as conn:
        results = list(conn.send_pipelined(iter(items)))
        assert conn.usable

    assert_failed(results[1][1], "recipient", 550)
    assert [results[0][1], results[2][1]] == [{}, {}]
    assert server.bodies == [items[0].data, b"", items[2].data]
    assert [body for *_, body in server.delivered] == [items[0].data, items[2].data]
    assert not any(line.upper().startswith(b"RSET") for _, line in server.log)  # nothing was open


def test_an_unsendable_address_fails_that_message_alone(smtp_server, tls_material):
    server = smtp_server("implicit", pipelining=True)
    # (A non-ASCII address is no longer unsendable: it goes with SMTPUTF8 when the server
    # offers it, as aiosmtpd does; tests/smtp/test_wire_messages.py covers a server without.)
    items = [make_item(0), make_item(1, recipients=["r1@example.org", "j\x7f@example.org"]),
             make_item(2, sender="portal\r\n@example.org"), Item(SENDER, (), make_item(3).data)]
    items.append(make_item(4))

    with connected(server, tls_material) as conn:
        results = list(conn.send_pipelined(iter(items)))
        assert conn.usable
        for recipients in (["r9@example.org", "bad\r\nRSET@example.org"], []):
            with pytest.raises(ValueError):  # send() refuses it before writing anything
                conn.send(SENDER, recipients, items[0].data)
        assert conn.send(SENDER, ["r9@example.org"], items[0].data) == {}

    assert_failed(results[1][1], "recipient", None)
    assert_failed(results[2][1], "sender", None)
    assert_failed(results[3][1], "recipient", None)
    assert [m.data for m in server.messages] == [items[0].data, items[4].data, items[0].data]
    assert server.mail_from_seen == [SENDER] * 3


def test_an_iterator_error_is_raised_after_the_messages_in_flight_are_answered(
        smtp_server, tls_material):
    server = smtp_server("implicit", pipelining=True)
    items = [make_item(n) for n in range(3)]

    def prepared() -> Iterator[Item]:
        yield from items
        raise RuntimeError("could not prepare message 4")

    outcomes = []
    with connected(server, tls_material) as conn:
        with pytest.raises(RuntimeError, match="message 4"):
            for _item, outcome in conn.send_pipelined(prepared()):
                outcomes.append(outcome)
        assert conn.usable

    assert outcomes == [{}, {}, {}]
    assert [m.data for m in server.messages] == [item.data for item in items]


def test_stopping_mid_stream_closes_the_out_of_step_connection(smtp_server, tls_material):
    server = smtp_server("implicit", pipelining=True)
    with connected(server, tls_material) as conn:
        stream = conn.send_pipelined(iter([make_item(n) for n in range(5)]))
        assert next(stream)[1] == {}
        stream.close()  # item 2's envelope is in flight, its replies unread
        assert not conn.usable


def test_an_empty_stream_sends_nothing_and_keeps_the_connection(smtp_server, tls_material):
    server = smtp_server("implicit", pipelining=True)
    with connected(server, tls_material) as conn:
        assert list(conn.send_pipelined(iter([]))) == []
        assert conn.usable
    assert server.mail_from_seen == []


@settings(max_examples=300, deadline=None)
@given(address=st.one_of(
    st.emails(),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30),
    st.text(max_size=20),
    st.sampled_from(["a..b@x", "<a@x>", "a@x\r\nRSET", "a@[1.2.3.4]", '"q u"@x', "a@-x"])))
def test_envelope_commands_are_the_bytes_smtplib_writes(address: str) -> None:
    """The envelope is built without smtplib's mail()/rcpt(); for any address it is what
    they would write, or refused before anything is sent. Stricter than smtplib: no
    control character at all (RFC 5321 has none in an address, quoted or not), and none
    dropped by quoteaddr() to make another address of it."""
    for verb, stage in (("mail FROM", "sender"), ("rcpt TO", "recipient")):
        expected = f"{verb}:{smtplib.quoteaddr(address)}\r\n"
        if expected.isascii() and expected[:-2].isprintable() and address.isprintable():
            assert pipeline._command_line(verb, address, stage) == expected.encode()
        else:
            with pytest.raises(ValueError):
                pipeline._command_line(verb, address, stage)
