"""Case G2: every reply the client reads is bounded in lines and bytes, not only in time.

A server that never ends a reply (an endless multi-line greeting, one endless line, an
EHLO that goes on and on, a MAIL reply without end, pipelined or not) used to grow the
process until the deadline: smtplib's getreply() keeps every continuation line. Here raw
servers on loopback stream such replies (up to 50 MB each) and the client must fail
quickly, at the right stage, with a DeliveryError, the connection closed, while the
memory it allocates (tracemalloc, which sees every Python allocation of the process)
stays far below what the server offered.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
import tracemalloc
from collections.abc import Iterator

import pytest

from flask_smtp_senders.deadline import Deadline
from flask_smtp_senders.errors import DeliveryError, SMTPTimeout
from flask_smtp_senders.sealed import Secret
from flask_smtp_senders.smtp import transport
from flask_smtp_senders.smtp.client import SMTPClient
from flask_smtp_senders.smtp.replies import (
    MAX_REPLY_BYTES,
    MAX_REPLY_LINE,
    MAX_REPLY_LINES,
    ReplyTooLarge,
)
from flask_smtp_senders.smtp.trace import Trace
from flask_smtp_senders.smtp.transport import Security
from tests.support.scripted_smtp import _listen
from tests.support.smtp_servers import SERVER_NAME, RawTCPServer, server_context

PASSWORD = "G2-Endless-Pa55"
#: What one endless reply may offer before the server gives up on its own.
OFFERED = 50 * 1024 * 1024
#: The most the client may allocate (peak traced memory) while it reads one.
MEMORY_BOUND = 1024 * 1024
#: Seconds the client may take to give up (its deadline is 10 s: the bound, not time).
QUICK = 2.0


class EndlessServer(RawTCPServer):
    """Raw SMTP that answers normally until ``endless_at`` ("greeting", "EHLO", "AUTH" or
    "MAIL"), then streams that reply without end: ``shape`` "lines" (``CODE-xxx...`` CRLF
    lines, forever) or "line" (``CODE xxx...`` and never a CRLF). Implicit TLS with
    ``context``, cleartext without (a STARTTLS port's greeting and first EHLO come before
    TLS). Records ``sent`` (bytes of the endless reply) and ``ended`` (why it stopped)."""

    def __init__(self, endless_at: str, shape: str, *, context: ssl.SSLContext | None = None,
                 port: int | None = None, offered: int = OFFERED) -> None:
        super().__init__()
        if port:  # a fixed port (2525: STARTTLS by the port rule) on a spare address
            self._listener.close()
            self._listener = _listen(port)
        self.host, self.port = self._listener.getsockname()[:2]
        self.endless_at = endless_at
        self.shape = shape
        self.context = context
        self.offered = offered
        self.sent = 0
        self.ended = ""
        self.done = threading.Event()
        code = {"greeting": b"220", "EHLO": b"250", "AUTH": b"235", "MAIL": b"250"}[endless_at]
        if shape == "lines":  # built once: sending it allocates nothing in this process
            self._first = b""
            self._chunk = (code + b"-" + b"x" * 1018 + b"\r\n") * 64
        else:
            self._first = code + b" "
            self._chunk = b"x" * 65536

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(5.0)
            sock = (self.context.wrap_socket(conn, server_side=True)
                    if self.context is not None else conn)
            self._converse(sock)
        except OSError as exc:
            self.ended = self.ended or type(exc).__name__
        finally:
            self.done.set()

    def _converse(self, sock: socket.socket) -> None:
        if self.endless_at == "greeting":
            return self._stream(sock)
        sock.sendall(b"220 endless.test ESMTP\r\n")
        buffer = b""
        while not self._stopping.is_set():
            chunk = sock.recv(4096)
            if not chunk:
                self.ended = "client closed before the endless reply"
                return None
            buffer += chunk
            while b"\r\n" in buffer:
                line, buffer = buffer.split(b"\r\n", 1)
                verb = line.split(b" ", 1)[0].upper().decode("ascii", "replace")
                if verb == self.endless_at:
                    return self._stream(sock)
                sock.sendall({
                    "EHLO": b"250-endless.test\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n",
                    "AUTH": b"235 2.7.0 Authenticated\r\n",
                    "QUIT": b"221 bye\r\n",
                }.get(verb, b"250 ok\r\n"))
        return None

    def _stream(self, sock: socket.socket) -> None:
        """The endless reply: until the client hangs up, stop() or ``offered`` bytes."""
        sock.sendall(self._first)
        while self.sent < self.offered and not self._stopping.is_set():
            try:
                sock.sendall(self._chunk)
            except OSError:  # the client closed the connection: what we want
                self.ended = "client closed"
                return
            self.sent += len(self._chunk)
        self.ended = "offered everything"


def options_for(server: EndlessServer, material) -> transport.TransportOptions:
    host = server.host  # a string: the options hold nothing of the server object
    return transport.TransportOptions(
        ssl_context=material.client_context(),
        operation_timeout=5.0,
        deadline=10.0,
        ehlo_name="client.example.org",
        messages={stage: f"failed at {stage}" for stage in transport.STAGES},
        resolver=lambda name, _port: [host] if name == SERVER_NAME else [],
        destination_allowed=lambda _name, _port, address: address == host,
    )


@contextlib.contextmanager
def endless(material, endless_at: str, shape: str, tls: str,
            offered: int = OFFERED) -> Iterator[EndlessServer]:
    context = server_context(material.good) if tls == "implicit" else None
    server = EndlessServer(endless_at, shape, context=context, offered=offered,
                           port=2525 if tls == "starttls" else None)
    with server:
        yield server


def measured(call) -> tuple[BaseException | None, float, int]:
    """Run ``call``; what it raised, how long it took and its peak traced memory."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        started = time.monotonic()
        raised = None
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            raised = exc
        elapsed = time.monotonic() - started
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return raised, elapsed, peak


def address(server: EndlessServer) -> transport.ServerAddress:
    return transport.ServerAddress(SERVER_NAME, server.port, "alice")


CONNECT_CASES = [  # (endless reply, shape, TLS mode of the port)
    (at, shape, tls)
    for at in ("greeting", "EHLO") for shape in ("lines", "line")
    for tls in ("implicit", "starttls")
]


@pytest.mark.parametrize(("endless_at", "shape", "tls"), CONNECT_CASES)
def test_an_endless_greeting_or_ehlo_fails_at_connect_in_bounded_memory(
        tls_material, endless_at, shape, tls):
    """Case G2: a greeting or EHLO reply without end (lines forever, or one line without
    CRLF), on an implicit-TLS port and on a STARTTLS port (2525, where both come before
    TLS): connect() fails at stage connect within QUICK seconds and MEMORY_BOUND bytes,
    the connection closed, long before the server ran out of reply."""
    with endless(tls_material, endless_at, shape, tls) as server:
        assert transport.security_for_port(server.port) is (
            Security.STARTTLS if tls == "starttls" else Security.SMTPS)
        options = options_for(server, tls_material)
        trace = Trace()

        raised, elapsed, peak = measured(
            lambda: transport.connect(address(server), Secret(PASSWORD), options,
                                      trace=trace))

        assert server.done.wait(5.0)
    assert type(raised) is DeliveryError, raised
    assert raised.stage == "connect" and not isinstance(raised, SMTPTimeout)
    assert elapsed < QUICK
    assert peak < MEMORY_BOUND, f"peak {peak} bytes"
    assert server.ended == "client closed"  # it hung up; the server had more to say
    assert server.sent < OFFERED


@pytest.mark.parametrize(("endless_at", "stage"), [("AUTH", "auth")])
@pytest.mark.parametrize("shape", ["lines", "line"])
def test_an_endless_auth_reply_fails_at_auth(tls_material, endless_at, stage, shape):
    """Case G2: the reply to AUTH never ends: stage auth, bounded time and memory."""
    with endless(tls_material, endless_at, shape, "implicit") as server:
        options = options_for(server, tls_material)
        raised, elapsed, peak = measured(
            lambda: transport.connect(address(server), Secret(PASSWORD), options))
        assert server.done.wait(5.0)
    assert type(raised) is DeliveryError and raised.stage == stage, raised
    assert elapsed < QUICK and peak < MEMORY_BOUND, (elapsed, peak)
    assert server.ended == "client closed"


@pytest.mark.parametrize("pipelined", [False, True], ids=["lock-step", "pipelined"])
@pytest.mark.parametrize("shape", ["lines", "line"])
def test_an_endless_mail_reply_fails_the_message_at_sender(tls_material, shape, pipelined):
    """Case G2: the reply to MAIL FROM never ends, lock-step (send) or pipelined
    (send_pipelined, whose MAIL, RCPT and DATA go in one write): the message fails at
    stage sender, nothing was delivered for sure, the connection is closed (not usable,
    never pooled), in bounded time and memory."""

    class Item:
        from_addr = "noreply@example.com"
        recipients = ("to@example.net",)
        data = b"Subject: hi\r\n\r\nhello\r\n"

    with endless(tls_material, "MAIL", shape, "implicit") as server:
        connection = transport.connect(address(server), Secret(PASSWORD),
                                       options_for(server, tls_material))
        assert connection.pipelining

        def send() -> None:
            if pipelined:
                [(_item, outcome)] = list(connection.send_pipelined(iter([Item()])))
                raise outcome  # type: ignore[misc]
            connection.send(Item.from_addr, Item.recipients, Item.data)

        raised, elapsed, peak = measured(send)
        assert server.done.wait(5.0)
    assert type(raised) is DeliveryError and raised.stage == "sender", raised
    assert raised.delivery_unknown is False
    assert not connection.usable
    assert elapsed < QUICK and peak < MEMORY_BOUND, (elapsed, peak)
    assert server.ended == "client closed"


def test_the_measurement_sees_an_unbounded_reader(tls_material):
    """Control for Case G2: smtplib's own getreply() over the same endless greeting (8 MB,
    then the server hangs up) keeps it all, and the measurement shows it; so a bound that
    stopped working would fail the tests above."""
    import smtplib

    with endless(tls_material, "greeting", "lines", "plain", 8 * 1024 * 1024) as server:
        def read() -> None:
            with smtplib.SMTP(server.host, server.port, timeout=5.0):
                pass

        raised, _elapsed, peak = measured(read)
        assert server.done.wait(5.0)
    assert isinstance(raised, smtplib.SMTPServerDisconnected)  # read to the very end
    assert peak > 4 * 1024 * 1024


# -- the bounds themselves, on a socket pair --------------------------------------------


def reply_of(data: bytes) -> tuple[int, bytes]:
    """SMTPClient.getreply() over a socket pair whose other end writes ``data`` then EOF."""
    ours, theirs = socket.socketpair()
    smtp = SMTPClient(SERVER_NAME, Security.SMTPS, transport.TransportOptions(
        ssl_context=ssl.create_default_context(), operation_timeout=2.0, deadline=5.0,
        ehlo_name="client.example.org",
        messages={stage: stage for stage in transport.STAGES}), Deadline(5.0, 2.0))
    smtp.sock = ours
    writer = threading.Thread(target=lambda: (theirs.sendall(data), theirs.close()))
    writer.start()
    try:
        return smtp.getreply()
    finally:
        writer.join(5.0)
        assert smtp.sock is None or smtp.sock is ours
        ours.close()


def test_a_reply_at_the_bounds_is_read_and_one_beyond_is_refused():
    """Case G2, the exact bounds: MAX_REPLY_LINES lines, MAX_REPLY_BYTES bytes and lines
    of MAX_REPLY_LINE bytes (CRLF included) are read as smtplib would; one line or one
    byte more raises ReplyTooLarge and closes the connection."""
    assert (MAX_REPLY_LINES, MAX_REPLY_BYTES, MAX_REPLY_LINE) == (100, 65536, 8192)
    lines = b"250-ok\r\n" * (MAX_REPLY_LINES - 1) + b"250 done\r\n"
    assert reply_of(lines) == (250, b"\n".join([b"ok"] * 99 + [b"done"]))
    with pytest.raises(ReplyTooLarge):
        reply_of(b"250-ok\r\n" + lines)

    long_line = b"250 " + b"y" * (MAX_REPLY_LINE - 6) + b"\r\n"
    assert len(long_line) == MAX_REPLY_LINE
    assert reply_of(long_line) == (250, b"y" * (MAX_REPLY_LINE - 6))
    with pytest.raises(ReplyTooLarge):
        reply_of(b"250 y" + long_line[4:])

    body = b"250-" + b"z" * (MAX_REPLY_LINE - 6) + b"\r\n"  # 8 such lines: 65536 bytes
    exact = body * 7 + b"250 " + body[4:]
    assert len(exact) == MAX_REPLY_BYTES
    assert reply_of(exact)[0] == 250
    with pytest.raises(ReplyTooLarge):
        reply_of(b"250-z\r\n" + exact)


def test_replies_as_smtplib_reads_them():
    """Our getreply() keeps smtplib's results: the code, the texts joined by LF, -1 for a
    line without a code, and a disconnection at EOF."""
    import smtplib

    assert reply_of(b"220-a b \r\n220 c\r\n") == (220, b"a b\nc")
    assert reply_of(b"hello\r\n") == (-1, b"o")
    assert reply_of(b"250\r\n") == (250, b"")
    with pytest.raises(smtplib.SMTPServerDisconnected):
        reply_of(b"250-partial\r\n")
