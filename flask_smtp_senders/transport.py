"""Talking SMTP to the administrator's server, safely.

The port rule is :func:`security_for_port`. Certificates are always verified with the
context we are given; STARTTLS is mandatory on its ports and AUTH is only ever sent over
an encrypted socket. Each network operation has a timeout and the whole exchange a
deadline, so a server that drips one byte at a time cannot hold a worker. Failures are
raised as :class:`DeliveryError` with the stage where they happened and a fixed message;
server replies and exception text go to the log, with the password scrubbed out.

:func:`connect`, :meth:`Connection.send` and :meth:`Connection.dry_run` take an optional
:class:`~flask_smtp_senders.diagnostics.Trace` that records each stage (Send Test Email and
the connection check); without one (the sending API) nothing is recorded and nothing is
allocated for it.

This module knows nothing of Flask.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import hmac
import logging
import re
import select
import smtplib
import socket
import ssl
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from .crypto import Secret
from .destinations import DestinationPolicy
from .diagnostics import NO_TRACE, Trace
from .errors import DeliveryError, SMTPTimeout

log = logging.getLogger(__name__)

STARTTLS_PORTS = frozenset({25, 587, 2525})

#: Stages of an exchange, in order; a DeliveryError names the one where it stopped.
STAGES = ("resolve", "destination", "connect", "tls", "auth", "sender", "recipient", "data",
          "timeout")
#: The envelope's stages (a transaction's ``stage``) as diagnostic stages.
_TRACE_STAGES = {"sender": "mail", "recipient": "rcpt", "data": "data"}


class Security(enum.Enum):
    """How the connection is encrypted."""

    STARTTLS = "STARTTLS"
    SMTPS = "SMTPS"


def security_for_port(port: int) -> Security:
    """The port rule: 25, 587 and 2525 use SMTP with STARTTLS; every other port uses SMTPS."""
    return Security.STARTTLS if port in STARTTLS_PORTS else Security.SMTPS


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def resolve(server_name: str, port: int) -> list[str]:
    """The addresses to try for the server, in the system resolver's order."""
    infos = socket.getaddrinfo(server_name, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        if sockaddr[0] not in seen:
            seen.append(str(sockaddr[0]))
    return seen


@dataclass(frozen=True)
class ServerAddress:
    """Where to connect and who to be there; the password travels separately."""

    server_name: str
    port: int
    username: str


@dataclass(frozen=True)
class TransportOptions:
    """Settings read once from the app config."""

    ssl_context: ssl.SSLContext
    operation_timeout: float
    deadline: float
    ehlo_name: str
    #: stage name -> fixed user message (every entry of STAGES).
    messages: Mapping[str, str]
    #: (server name, port) -> addresses to try; raises OSError when there are none.
    resolver: Callable[[str, int], Sequence[str]] = resolve
    #: (server name, port, address) -> may we connect there? Asked for every address
    #: before any connection; the default refuses loopback and never-SMTP addresses.
    destination_allowed: Callable[[str, int, str], bool] = (
        lambda _name, _port, address: DestinationPolicy().allows(address))

    def fail(self, stage: str) -> DeliveryError:
        error_type = SMTPTimeout if stage == "timeout" else DeliveryError
        return error_type(stage, self.messages[stage])


class Deadline:
    """The time left for one exchange; hands out per-operation timeouts that respect it."""

    def __init__(self, seconds: float, operation_timeout: float) -> None:
        self._end = time.monotonic() + seconds
        self._operation_timeout = operation_timeout
        #: Set once any operation ran out of time.
        self.tripped = False

    def next_timeout(self) -> float:
        remaining = self._end - time.monotonic()
        if remaining <= 0:
            self.tripped = True
            raise TimeoutError("the exchange ran past its deadline")
        return min(self._operation_timeout, remaining)


class _DeadlineReader:
    """Line reader over the socket whose every recv is bounded by the deadline.

    Stands in for the ``makefile()`` object smtplib reads replies from.
    """

    def __init__(self, sock: socket.socket, owner: _SMTP) -> None:
        self._sock = sock
        self._owner = owner  # its current deadline bounds every recv
        self._buffer = bytearray()

    def readline(self, limit: int = -1) -> bytes:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0 and (limit < 0 or end < limit):
                return self._take(end + 1)
            if 0 <= limit <= len(self._buffer):
                return self._take(limit)
            deadline = self._owner.deadline
            self._sock.settimeout(deadline.next_timeout())
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                deadline.tripped = True
                raise
            if not chunk:
                return self._take(len(self._buffer))
            self._buffer += chunk

    def _take(self, size: int) -> bytes:
        line = bytes(self._buffer[:size])
        del self._buffer[:size]
        return line

    def close(self) -> None:
        self._buffer.clear()


class CredentialsRejected(smtplib.SMTPResponseException):
    """535: stops smtplib's login() from retrying the same password with another mechanism
    (it only moves on after SMTPAuthenticationError)."""


class _SMTP(smtplib.SMTP):
    """smtplib.SMTP that connects to a resolved address, verifies the certificate against
    the Server Name, and bounds every read and write by a :class:`Deadline`."""

    def __init__(self, server_name: str, security: Security, options: TransportOptions,
                 deadline: Deadline, trace: Trace = NO_TRACE) -> None:
        super().__init__(local_hostname=options.ehlo_name, timeout=options.operation_timeout)
        self._host = server_name  # what TLS verifies, whatever address we connect to
        self.security = security
        self.options = options
        self.deadline = deadline
        self.stage = "connect"
        #: Where stages and failures are reported (NO_TRACE: nowhere).
        self.trace = trace

    def connect(self, host: str = "localhost", port: int = 0,
                source_address: tuple[str, int] | None = None) -> tuple[int, bytes]:
        """smtplib's connect(), with the server's greeting read in the ehlo stage (on an
        SMTPS port it comes after TLS)."""
        if source_address:
            self.source_address = source_address
        sys.audit("smtplib.connect", self, host, port)
        self.sock = self._get_socket(host, port, self.timeout)
        self.file = None
        with self.trace.stage("ehlo"):
            code, reply = self.getreply()
            self.trace.greeted(code)
        return code, reply

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        self.stage = "connect"
        trace = self.trace
        with trace.stage("connect"):
            sock = socket.create_connection((host, port), timeout=self.deadline.next_timeout())
            trace.connected(host, port)
        if self.security is Security.SMTPS:
            self.stage = "tls"
            with trace.stage("tls"):
                try:
                    sock.settimeout(self.deadline.next_timeout())
                    sock = self.options.ssl_context.wrap_socket(sock,
                                                                server_hostname=self._host)
                except BaseException:
                    sock.close()
                    raise
                trace.tls(sock)
        return sock

    def getreply(self):  # type: ignore[no-untyped-def]
        if self.file is None and self.sock is not None:
            self.file = _DeadlineReader(self.sock, self)  # type: ignore[assignment]
        return super().getreply()

    def send(self, s: bytes | str) -> None:
        if self.sock is not None:
            self.sock.settimeout(self.deadline.next_timeout())
        try:
            super().send(s)
        except smtplib.SMTPServerDisconnected as exc:
            if isinstance(exc.__context__, TimeoutError):
                self.deadline.tripped = True
            raise

    def auth(self, mechanism, authobject, *, initial_response_ok=True):  # type: ignore[no-untyped-def]
        """smtplib's AUTH loop with UTF-8 instead of ASCII (RFC 4616), so any password works."""
        mechanism = mechanism.upper()
        self.trace.fact("Mechanism", mechanism)  # one of smtplib's, never the server's text
        initial = authobject() if initial_response_ok else None
        if initial is not None:
            code, resp = self.docmd("AUTH", f"{mechanism} {_b64(initial)}")
        else:
            code, resp = self.docmd("AUTH", mechanism)
        challenges = 0
        while code == 334:
            challenges += 1
            if challenges > smtplib._MAXCHALLENGE:
                raise smtplib.SMTPException("server AUTH mechanism loops")
            code, resp = self.docmd(_b64(authobject(base64.decodebytes(resp))))
        self.trace.fact("Reply code", str(int(code)))
        if code in (235, 503):
            return code, resp
        if code == 535:  # the credentials are wrong: trying the next mechanism won't help
            raise CredentialsRejected(code, resp)
        raise smtplib.SMTPAuthenticationError(code, resp)

    def auth_cram_md5(self, challenge=None):  # type: ignore[no-untyped-def]
        if challenge is None:
            return None
        digest = hmac.HMAC(self.password.encode("utf-8"), challenge, "md5").hexdigest()
        return f"{self.user} {digest}"

    @property
    def encrypted(self) -> bool:
        return isinstance(self.sock, ssl.SSLSocket)


class _Refusal(smtplib.SMTPResponseException):
    """The server answered a command with something other than success."""


class _Closing(_Refusal):
    """A 421 while pipelining: the server is leaving, so the whole stream stops."""


class _Gone(smtplib.SMTPServerDisconnected):
    """The session ended before this message's turn: it was never sent."""

    def __init__(self) -> None:
        super().__init__("the connection closed before this message was sent")


class _EnvelopeAccepted(Exception):
    """A dry run reached DATA: the server accepted the sender and a recipient."""


class _Unsendable(ValueError):
    """An envelope that cannot be written as SMTP commands (none or a non-ASCII address, a
    line break); ``stage`` says which part. The address is left out of the message."""

    def __init__(self, stage: str) -> None:
        super().__init__(f"a {stage} address cannot be written as an SMTP command")
        self.stage = stage


# A plain dot-atom address, which smtplib.quoteaddr() would only put in angle brackets
# (it parses every address first: ~10 us, twice per message at least).
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*")


def _command_line(verb: str, address: str, stage: str) -> bytes:
    quoted = f"<{address}>" if _PLAIN_ADDRESS.fullmatch(address) else smtplib.quoteaddr(address)
    line = f"{verb}:{quoted}"
    if "\r" in line or "\n" in line or not line.isascii():
        raise _Unsendable(stage)
    return f"{line}\r\n".encode("ascii")


def _envelope_lines(from_addr: str, to_addrs: Sequence[str]) -> list[bytes]:
    """MAIL, one RCPT per recipient and DATA, as the bytes smtplib's mail(), rcpt() and
    docmd("DATA") write. Built before anything is sent, so a bad address never leaves a
    half-written transaction behind."""
    if not to_addrs:
        raise _Unsendable("recipient")
    return [_command_line("mail FROM", from_addr, "sender"),
            *(_command_line("rcpt TO", address, "recipient") for address in to_addrs),
            b"DATA\r\n"]


def _run_quietly(work: Callable[[], None]) -> None:
    """Run side work between a write and its reply; it must never desync the session."""
    try:
        work()
    except Exception:
        log.exception("work done while waiting for the server failed")


def _dot_stuff(data: bytes) -> bytes:
    """DATA's transparency rule (RFC 5321 4.5.2) and its terminator."""
    body = re.sub(rb"(?m)^\.", b"..", data)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body + b".\r\n"


class Outgoing(Protocol):
    """What :meth:`Connection.send_pipelined` needs of an item (sending's envelopes fit)."""

    @property
    def from_addr(self) -> str: ...

    @property
    def recipients(self) -> Sequence[str]: ...

    @property
    def data(self) -> bytes:
        """Serialised with CRLF line endings, not dot-stuffed."""
        ...


_T = TypeVar("_T", bound=Outgoing)
_I = TypeVar("_I")

#: A message's result: the recipients refused while others were accepted, or the failure.
Outcome = dict[str, tuple[int, str]] | DeliveryError


@dataclass
class _Transaction(Generic[_I]):
    """One message on its way: how far it got and what the server said so far."""

    item: _I
    to_addrs: Sequence[str]
    lines: list[bytes] = field(default_factory=list)  # MAIL, RCPT..., DATA
    stage: str = "sender"
    codes: list[int] = field(default_factory=list)  # the replies read so far, in order
    refused: dict[str, tuple[int, str]] = field(default_factory=dict)
    in_flight: bool = False  # its envelope was written
    body_sent: bool = False
    outcome: DeliveryError | None = None  # decided, still to be handed to the caller


@dataclass
class _Feed(Generic[_T]):
    """The caller's items, pulled one at a time into ``waiting`` (pulled, not yet
    answered). An error from the iterator ends the feed; it is raised again once every
    item already pulled has its outcome."""

    items: Iterator[_T]
    waiting: deque[_Transaction[_T]] = field(default_factory=deque)
    done: bool = False
    error: Exception | None = None

    def pull(self, begin: Callable[[_T], _Transaction[_T]]) -> bool:
        if self.done:
            return False
        try:
            item = next(self.items)
        except StopIteration:
            self.done = True
            return False
        except Exception as exc:  # the caller's own failure: not ours to swallow
            self.done, self.error = True, exc
            return False
        self.waiting.append(begin(item))
        return True


class Connection:
    """An open, encrypted and authenticated SMTP session with one server."""

    def __init__(self, smtp: _SMTP, server: ServerAddress, secret: Secret) -> None:
        self._smtp = smtp
        self.server = server
        self._secret = secret

    @property
    def pipelining(self) -> bool:
        """The server's EHLO (the one after TLS) offered PIPELINING (RFC 2920)."""
        return self._smtp.has_extn("pipelining")

    def send(self, from_addr: str, to_addrs: Sequence[str], data: bytes,
             deadline: Deadline | None = None,
             while_waiting: Callable[[], None] | None = None,
             trace: Trace | None = None) -> dict[str, tuple[int, str]]:
        """Send one message serialised with CRLF line endings.

        Returns the recipients the server refused while it accepted others (with the
        reply code and text). ``while_waiting`` runs after DATA is written and before its
        reply is read (the caller prepares its next message in that time). Raises
        DeliveryError when nothing was accepted; after a refusal the session is reset and
        stays usable, after a 421 or a broken connection it is closed (``usable`` turns
        False). Raises ValueError, before writing anything, for an address that cannot
        be written as an SMTP command. ``trace`` records MAIL FROM, RCPT TO and DATA.
        """
        txn = _Transaction(None, to_addrs, _envelope_lines(from_addr, to_addrs))
        if trace is None:
            return self._send_lockstep(txn, data, deadline, while_waiting)
        with self._tracing(trace):
            return self._send_lockstep(txn, data, deadline, while_waiting, trace)

    def dry_run(self, from_addr: str, to_addrs: Sequence[str],
                deadline: Deadline | None = None, trace: Trace | None = None) -> None:
        """MAIL FROM and RCPT TO exactly as :meth:`send` writes them, then RSET and QUIT
        where DATA would be: the server's verdict on the envelope, and nothing delivered.

        Raises DeliveryError as send() does (stage sender or recipient). RSET and QUIT are
        best effort (the trace's reset stage says how they went); the session ends.
        """
        txn = _Transaction(None, to_addrs, _envelope_lines(from_addr, to_addrs))
        data_line = txn.lines[-1]
        tracer = NO_TRACE if trace is None else trace
        smtp = self._smtp
        smtp.deadline = deadline or self._fresh_deadline()

        def command(line: bytes) -> tuple[int, bytes]:
            if line is data_line:  # never written
                raise _EnvelopeAccepted
            tracer.enter(_TRACE_STAGES[txn.stage])
            smtp.send(line)
            code, text = smtp.getreply()
            tracer.fact("Reply code", str(int(code)))
            return code, text

        with self._tracing(tracer):
            try:
                self._envelope(txn, command)
            except _EnvelopeAccepted:
                tracer.leave()
            except (smtplib.SMTPException, OSError) as exc:
                raise self._abandon(txn, exc) from None
            self._reset_and_quit(tracer)

    def _reset_and_quit(self, trace: Trace) -> None:
        """A dry run's end; a server that fails RSET or QUIT has still judged the envelope."""
        smtp = self._smtp
        trace.enter("reset")
        passed = False
        try:
            rset, _text = smtp.rset()
            trace.fact("RSET reply code", str(int(rset)))
            quit_code, _text = smtp.quit()
            trace.fact("QUIT reply code", str(int(quit_code)))
            passed = rset == 250 and quit_code == 221
        except (smtplib.SMTPException, OSError) as exc:
            log.info("RSET or QUIT after a connection check failed for %s:%s: %s",
                     self.server.server_name, self.server.port, type(exc).__name__)
        finally:
            smtp.close()
            trace.leave(ok=passed)

    @contextlib.contextmanager
    def _tracing(self, trace: Trace) -> Iterator[None]:
        """Have failures classified meanwhile (:func:`_classify`) reported to ``trace``."""
        smtp = self._smtp
        previous, smtp.trace = smtp.trace, trace
        try:
            yield
        finally:
            smtp.trace = previous

    def send_pipelined(self, items: Iterator[_T]) -> Iterator[tuple[_T, Outcome]]:
        """Send many messages, overlapping round trips when the server allows (RFC 2920).

        Yields ``(item, outcome)`` in order, once for every item pulled from ``items``:
        the refused recipients (as :meth:`send` returns them) or a DeliveryError (as it
        raises). Items are pulled lazily, at most one beyond the message whose envelope
        is in flight, so the caller can prepare the next message inside ``__next__``
        while the server works. Without PIPELINING it falls back to :meth:`send`. When
        the session breaks (421, timeout, lost connection) it stops pulling; only a
        message whose body went out without its final reply has ``delivery_unknown``,
        the others may be sent again on a new connection.
        """
        feed = _Feed(iter(items))
        try:
            yield from self._pipeline(feed) if self.pipelining else self._one_by_one(feed)
        except (smtplib.SMTPException, OSError) as exc:  # the session is over
            self._smtp.close()
            for txn in feed.waiting:
                unknown = txn.body_sent and not isinstance(exc, _Closing)  # no final reply
                yield txn.item, (txn.outcome if txn.outcome is not None
                                 else self._failure(txn, exc, unknown=unknown))
            feed.waiting.clear()
        finally:
            if feed.waiting:  # the caller stopped mid-stream: we are out of step for good
                self._smtp.close()
        if feed.error is not None:
            raise feed.error

    def _one_by_one(self, feed: _Feed[_T]) -> Iterator[tuple[_T, Outcome]]:
        """Without PIPELINING: :meth:`send` per item, the next one pulled (prepared by the
        caller) while the server answers DATA, until the session is gone."""
        def pull_next() -> None:
            if len(feed.waiting) == 1:
                feed.pull(self._begin)

        while feed.waiting or feed.pull(self._begin):
            txn = feed.waiting[0]
            outcome: Outcome | None = txn.outcome  # set: it could not even be written
            if outcome is None:
                try:
                    outcome = self._send_lockstep(txn, txn.item.data, while_waiting=pull_next)
                except DeliveryError as failure:
                    outcome = failure
            feed.waiting.popleft()
            yield txn.item, outcome
            if not self.usable:  # what was pulled meanwhile was never sent
                for txn in feed.waiting:
                    yield txn.item, txn.outcome or self._failure(txn, _Gone())
                feed.waiting.clear()
                return

    def _pipeline(self, feed: _Feed[_T]) -> Iterator[tuple[_T, Outcome]]:
        """The pipelined stream; a broken session surfaces as the exception it raised."""
        smtp = self._smtp
        while feed.waiting or feed.pull(self._begin):
            txn = feed.waiting[0]
            outcome: Outcome | None = txn.outcome  # set: it could not even be written
            if outcome is None:
                smtp.deadline = self._fresh_deadline()
                if not txn.in_flight:  # the first item, or the one after a refusal
                    txn.in_flight = True
                    smtp.send(b"".join(txn.lines))
                    if len(feed.waiting) == 1:
                        feed.pull(self._begin)  # prepared while the server reads
                outcome = self._pipelined_envelope(txn)
                if outcome is None:
                    outcome = self._pipelined_body(txn, feed)
            feed.waiting.popleft()
            yield txn.item, outcome

    def _pipelined_envelope(self, txn: _Transaction[_T]) -> DeliveryError | None:
        """Read the replies to a written MAIL/RCPT/DATA group: None once DATA got its 354,
        else the message's failure.

        After a refusal the group's other replies are still read; a 354 given anyway is
        ended with a bare dot (the body is never sent), and a transaction that may still
        be open is reset lock-step so that the next MAIL is not nested.
        """
        try:
            self._envelope(txn, self._next_reply)
            return None
        except _Closing:
            raise
        except _Refusal as refusal:
            txn.outcome = self._failure(txn, refusal)
        txn.codes += [self._next_reply()[0] for _line in txn.lines[len(txn.codes):]]
        if txn.codes[-1] == 354:
            self._smtp.send(b".\r\n")
            self._next_reply()
        elif txn.codes[0] == 250:
            self._smtp.send(b"rset\r\n")
            if self._next_reply()[0] != 250:
                raise smtplib.SMTPException("RSET was refused")
        return txn.outcome

    def _pipelined_body(self, txn: _Transaction[_T], feed: _Feed[_T]) -> Outcome:
        """Write the body together with the next item's envelope, let the caller prepare
        the item after that while the server works, then read the body's reply."""
        group = _dot_stuff(txn.item.data)
        following = feed.waiting[1] if len(feed.waiting) > 1 else None
        if following is not None and following.outcome is None:
            following.in_flight = True
            group += b"".join(following.lines)
        txn.body_sent = True
        self._smtp.send(group)
        if following is not None and following.in_flight:
            feed.pull(self._begin)
        code, text = self._next_reply()
        if code != 250:
            return self._failure(txn, _Refusal(code, text))
        return txn.refused

    def _send_lockstep(self, txn: _Transaction[_I], data: bytes,
                       deadline: Deadline | None = None,
                       while_waiting: Callable[[], None] | None = None,
                       trace: Trace | None = None,
                       ) -> dict[str, tuple[int, str]]:
        """:meth:`send` for a transaction whose envelope is built."""
        smtp = self._smtp
        smtp.deadline = deadline or self._fresh_deadline()

        def command(line: bytes) -> tuple[int, bytes]:
            if trace is not None:
                trace.enter(_TRACE_STAGES[txn.stage])
            smtp.send(line)
            if line is txn.lines[-1] and while_waiting is not None:
                # DATA: the server takes a while to answer it, and unlike after the body,
                # client work here does not hold the exchange back (benchmarks/sending.py)
                _run_quietly(while_waiting)
            reply = smtp.getreply()
            if trace is not None:
                trace.fact("Reply code", str(int(reply[0])))
            return reply

        try:
            self._envelope(txn, command)
            txn.body_sent = True
            smtp.send(_dot_stuff(data))
            code, reply = smtp.getreply()
            if trace is not None:
                trace.fact("Reply code", str(int(code)))  # the message's, after DATA's 354
            if code != 250:
                raise _Refusal(code, reply)
            if trace is not None:
                trace.leave()
            return txn.refused
        except (smtplib.SMTPException, OSError) as exc:
            raise self._abandon(txn, exc) from None

    def _abandon(self, txn: _Transaction[_I], exc: BaseException) -> DeliveryError:
        """The failure of a lock-step transaction; after a refusal the session is reset and
        stays usable (closed after a 421), after anything else it is closed."""
        if isinstance(exc, _Refusal):
            failure = self._failure(txn, exc)
            if exc.smtp_code == 421:
                self._smtp.close()
            else:
                self._reset()
            return failure
        failure = self._failure(txn, exc, unknown=txn.body_sent)
        self._smtp.close()
        return failure

    def _envelope(self, txn: _Transaction[_I],
                  reply: Callable[[bytes], tuple[int, bytes]]) -> None:
        """MAIL, each RCPT, then DATA: one reply per command, in order.

        ``reply`` writes a command and waits (lock-step) or reads the reply to one already
        written (pipelined). Refused recipients go to ``txn.refused``; raises _Refusal at
        the reply that fails the message, with ``txn.stage`` saying where.
        """
        def answer(line: bytes) -> tuple[int, bytes]:
            code, text = reply(line)
            txn.codes.append(code)
            return code, text

        mail, *rcpts, data = txn.lines
        code, text = answer(mail)
        if code != 250:
            raise _Refusal(code, text)
        txn.stage = "recipient"
        for address, line in zip(txn.to_addrs, rcpts, strict=True):
            code, text = answer(line)
            if code not in (250, 251):
                txn.refused[address] = (code, text.decode("utf-8", "replace"))
        if len(txn.refused) == len(txn.to_addrs):
            raise _Refusal(min(code for code, _ in txn.refused.values()), b"all refused")
        txn.stage = "data"
        code, text = answer(data)
        if code != 354:
            raise _Refusal(code, text)

    def _next_reply(self, _line: bytes = b"") -> tuple[int, bytes]:
        """Pipelined: the reply to the oldest command still unanswered (it was written
        with its group). A 421 ends the stream."""
        code, text = self._smtp.getreply()
        if code == 421:
            raise _Closing(code, text)
        return code, text

    def _begin(self, item: _T) -> _Transaction[_T]:
        txn = _Transaction(item, item.recipients)
        try:
            txn.lines = _envelope_lines(item.from_addr, item.recipients)
        except _Unsendable as exc:
            txn.stage = exc.stage
            txn.outcome = self._failure(txn, exc)
        return txn

    def _failure(self, txn: _Transaction[_I], exc: BaseException, *,
                 unknown: bool = False) -> DeliveryError:
        """The fixed DeliveryError for a message stopped by ``exc`` (logged, scrubbed)."""
        failure = _classify(self._smtp, txn.stage, exc, self.server, self._secret)
        failure.code = exc.smtp_code if isinstance(exc, _Refusal) else None
        failure.delivery_unknown = unknown
        return failure

    def _fresh_deadline(self) -> Deadline:
        options = self._smtp.options
        return Deadline(options.deadline, options.operation_timeout)

    @property
    def usable(self) -> bool:
        """Still connected and in step with the server (a pool may reuse it)."""
        return self._smtp.sock is not None

    def closed_by_server(self) -> bool:
        """For an idle connection: anything readable is the server's EOF or its 421."""
        sock = self._smtp.sock
        if sock is None:
            return True
        try:
            return bool(select.select([sock], [], [], 0)[0])
        except (OSError, ValueError):
            return True

    def _reset(self) -> None:
        try:
            code, _reply = self._smtp.rset()
        except (smtplib.SMTPException, OSError):
            code = 0
        if code != 250:
            self._smtp.close()

    def close(self) -> None:
        """Say QUIT politely if we can; the socket is closed either way."""
        smtp = self._smtp
        try:
            if smtp.sock is not None and not smtp.deadline.tripped:
                smtp.deadline = Deadline(smtp.options.operation_timeout,
                                         smtp.options.operation_timeout)
                smtp.quit()
        except (smtplib.SMTPException, OSError):
            pass
        finally:
            smtp.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def connect(server: ServerAddress, secret: Secret, options: TransportOptions,
            deadline: Deadline | None = None, trace: Trace | None = None) -> Connection:
    """Resolve, connect, secure (SMTPS or mandatory STARTTLS), EHLO and authenticate.

    ``trace`` records the stages of this call (resolve, connect, tls, ehlo, auth) and why
    it failed; the connection does not keep it.
    """
    deadline = deadline or Deadline(options.deadline, options.operation_timeout)
    security = security_for_port(server.port)
    tracer = NO_TRACE if trace is None else trace
    tracer.begin(server.port, starttls_port=security is Security.STARTTLS)
    smtp = _SMTP(server.server_name, security, options, deadline, tracer)
    smtp.stage = "resolve"
    try:
        with tracer.stage("resolve"):
            addresses = list(options.resolver(server.server_name, server.port))
            if not addresses:
                raise OSError("the resolver returned no address")
            tracer.fact("Addresses found", str(len(addresses)))
    except Exception as exc:  # the system resolver or a host hook
        raise _classify(smtp, "resolve", exc, server, secret) from None
    refused = [address for address in addresses
               if not _destination_allowed(options, server, address)]
    if refused:  # one bad address makes the whole name suspect
        log.warning("refusing to connect to %s:%s: it resolves to %s", server.server_name,
                    server.port, ", ".join(refused))
        tracer.destination_refused(refused[0])
        raise options.fail("destination")
    try:
        _open(smtp, addresses, server.port)
        smtp.stage = "connect"
        _ehlo_and_secure(smtp)
        _authenticate(smtp, server.username, secret)
    except (smtplib.SMTPException, OSError, ValueError) as exc:
        failure = _classify(smtp, smtp.stage, exc, server, secret)
        smtp.close()
        raise failure from None
    smtp.trace = NO_TRACE  # later sends report to the trace they are given, if any
    return Connection(smtp, server, secret)


def _ehlo_and_secure(smtp: _SMTP) -> None:
    """EHLO; on a STARTTLS port, STARTTLS (mandatory: no fallback to clear) and EHLO again."""
    trace = smtp.trace
    starttls = smtp.security is Security.STARTTLS
    with trace.stage("ehlo"):
        smtp.ehlo()
        trace.ehlo(smtp.esmtp_features, before_starttls=starttls)
    if not starttls:
        return
    smtp.stage = "tls"
    with trace.stage("tls"):
        if not smtp.has_extn("starttls"):
            raise smtplib.SMTPNotSupportedError("server does not offer STARTTLS")
        smtp.starttls(context=smtp.options.ssl_context)
        if isinstance(smtp.sock, ssl.SSLSocket):
            trace.tls(smtp.sock)
    with trace.stage("ehlo"):
        smtp.ehlo()
        trace.ehlo(smtp.esmtp_features, before_starttls=False)


def _authenticate(smtp: _SMTP, username: str, secret: Secret) -> None:
    smtp.stage = "auth"
    if not smtp.encrypted:  # belt and braces: credentials never cross in clear
        smtp.stage = "tls"
        raise smtplib.SMTPNotSupportedError("refusing to authenticate in clear")
    with smtp.trace.stage("auth"):
        smtp.login(username, secret.reveal())


def _destination_allowed(options: TransportOptions, server: ServerAddress,
                         address: str) -> bool:
    """Ask the policy; an error while asking means no."""
    try:
        return options.destination_allowed(server.server_name, server.port, address) is True
    except Exception:
        log.exception("the destination check failed for %s", address)
        return False


def _open(smtp: _SMTP, addresses: list[str], port: int) -> None:
    """Connect to the first address that answers, within the deadline."""
    last_error: OSError = OSError("no address to connect to")
    for address in addresses:
        try:
            smtp.connect(address, port)
            return
        except ssl.SSLError:
            raise
        except OSError as exc:
            if smtp.deadline.tripped or smtp.stage == "tls":
                raise
            last_error = exc
            smtp.close()
    raise last_error


def _classify(smtp: _SMTP, stage: str, exc: BaseException, server: ServerAddress,
              secret: Secret) -> DeliveryError:
    """Log what really happened, scrubbed, tell the trace, and return the fixed failure
    for the stage."""
    timed_out = smtp.deadline.tripped or isinstance(exc, TimeoutError)
    smtp.trace.failed(exc, timed_out=timed_out, stage=stage)
    if timed_out:
        stage = "timeout"
    log.warning(
        "SMTP %s failed at stage %s for %s:%s: %s",
        "exchange", stage, server.server_name, server.port,
        scrub(f"{type(exc).__name__}: {exc}", server.username, secret),
    )
    return smtp.options.fail(stage)


def scrub(text: str, username: str, secret: Secret) -> str:
    """Remove the password, and the base64 forms AUTH would carry, from a log text."""
    password = secret.reveal()
    if not password:
        return text
    forms = {
        password,
        base64.b64encode(password.encode()).decode(),
        base64.b64encode(f"\0{username}\0{password}".encode()).decode(),
    }
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "**********")
    return text
