"""Writing messages over an open SMTP session: the envelope's commands, DATA's body, and
the replies read back, one message at a time in lock-step or many pipelined (RFC 2920).

:class:`MailTransactions` is the machinery behind
:meth:`flask_smtp_senders.smtp.transport.Connection.send` and
:meth:`~flask_smtp_senders.smtp.transport.Connection.send_pipelined`; Connection inherits it
and supplies the session (:mod:`flask_smtp_senders.smtp.session`), the server and the
scrubber for its DEBUG log (never the password). Kept apart from the transport module so
that its bookkeeping (which reply belongs to which command, what to do after a refusal or
a 421, which message's delivery is unknown) is read on its own. This module knows nothing of Flask.
"""

from __future__ import annotations

import re
import smtplib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from ..domain import ServerAddress, needs_smtputf8
from ..errors import DeliveryError
from .diagnostics import Trace
from .session import Deadline, Scrubber, SMTPClient, classify_failure, log

#: The envelope's stages (a transaction's ``stage``) as diagnostic stages.
TRACE_STAGES = {"sender": "mail", "recipient": "rcpt", "data": "data"}


class _Refusal(smtplib.SMTPResponseException):
    """The server answered a command with something other than success."""


class _Closing(_Refusal):
    """A 421 while pipelining: the server is leaving, so the whole stream stops."""


class _Gone(smtplib.SMTPServerDisconnected):
    """The session ended before this message's turn: it was never sent."""

    def __init__(self) -> None:
        super().__init__("the connection closed before this message was sent")



class Unsendable(ValueError):
    """A message that cannot be written to this server: an envelope that is not SMTP
    commands (none or a bad address, a line break), an address needing SMTPUTF8 the
    server lacks, 8-bit octets it cannot take; ``stage`` says which part, ``reason`` the
    user message (a key of TransportOptions.messages) when it is not the stage's own. The
    address is left out of the message."""

    def __init__(self, stage: str, reason: str | None = None) -> None:
        super().__init__(f"the {stage} cannot be written to this server"
                         + (f" ({reason})" if reason else ""))
        self.stage = stage
        self.reason = reason


# A plain dot-atom address, which smtplib.quoteaddr() would only put in angle brackets
# (it parses every address first: ~10 us, twice per message at least).
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*")


def _command_line(verb: str, address: str, stage: str, params: str = "",
                  utf8: bool = False) -> bytes:
    if not address.isprintable():  # quoteaddr() would drop a CR or LF: another address
        raise Unsendable(stage)
    quoted = f"<{address}>" if _PLAIN_ADDRESS.fullmatch(address) else smtplib.quoteaddr(address)
    line = f"{verb}:{quoted}{params}"
    if "\r" in line or "\n" in line or not line.isprintable() or not (utf8 or line.isascii()):
        raise Unsendable(stage)
    return f"{line}\r\n".encode("utf-8" if utf8 else "ascii")


def envelope_lines(from_addr: str, to_addrs: Sequence[str],
                    params: Sequence[str] = ()) -> list[bytes]:
    """MAIL (with its ESMTP parameters), one RCPT per recipient and DATA, as the bytes
    smtplib's mail(), rcpt() and docmd("DATA") write; UTF-8 addresses only with SMTPUTF8
    among the parameters (RFC 6531). Built before anything is sent, so a bad address
    never leaves a half-written transaction behind."""
    if not to_addrs:
        raise Unsendable("recipient")
    utf8 = "SMTPUTF8" in params
    mail_params = "".join(f" {param}" for param in params)
    return [_command_line("mail FROM", from_addr, "sender", mail_params, utf8),
            *(_command_line("rcpt TO", address, "recipient", "", utf8)
              for address in to_addrs),
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
    """What :meth:`Connection.send_pipelined` needs of an item (sending's jobs fit).

    Two members are optional: ``smtputf8`` (bool: the message needs SMTPUTF8, RFC 6531,
    and ``data`` has UTF-8 headers; default: whether an envelope address is non-ASCII)
    and ``seven_bit()`` (``data`` re-encoded to 7-bit for a server without 8BITMIME,
    RFC 6152; without it such a server gets no 8-bit message).
    """

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
class Transaction(Generic[_I]):
    """One message on its way: how far it got and what the server said so far."""

    item: _I
    to_addrs: Sequence[str]
    lines: list[bytes] = field(default_factory=list)  # MAIL, RCPT..., DATA
    data: bytes = b""  # the body as this server takes it (7-bit when it must be)
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
    waiting: deque[Transaction[_T]] = field(default_factory=deque)
    done: bool = False
    error: Exception | None = None

    def pull(self, begin: Callable[[_T], Transaction[_T]]) -> bool:
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


class MailTransactions:
    """Message transactions on an open session, lock-step or pipelined; the Connection
    that inherits this supplies ``_smtp``, ``server`` and ``_scrubber``."""

    _smtp: SMTPClient
    server: ServerAddress
    _scrubber: Scrubber
    #: The deadline the connect began under, for the first message on this connection.
    _reserved: Deadline | None = None

    @property
    def pipelining(self) -> bool:
        """The server's EHLO (the one after TLS) offered PIPELINING (RFC 2920)."""
        return self._smtp.has_extn("pipelining")

    @property
    def usable(self) -> bool:
        """Still connected and in step with the server (a pool may reuse it)."""
        return self._smtp.sock is not None

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
            self._reserved = None  # a connect's deadline never reaches a later stream
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
                    outcome = self._send_lockstep(txn, txn.data, while_waiting=pull_next)
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

    def _pipelined_envelope(self, txn: Transaction[_T]) -> DeliveryError | None:
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

    def _pipelined_body(self, txn: Transaction[_T], feed: _Feed[_T]) -> Outcome:
        """Write the body together with the next item's envelope, let the caller prepare
        the item after that while the server works, then read the body's reply."""
        group = _dot_stuff(txn.data)
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

    def _send_lockstep(self, txn: Transaction[_I], data: bytes,
                       deadline: Deadline | None = None,
                       while_waiting: Callable[[], None] | None = None,
                       trace: Trace | None = None,
                       ) -> dict[str, tuple[int, str]]:
        """:meth:`send` for a transaction whose envelope is built."""
        smtp = self._smtp
        smtp.deadline = self._fresh_deadline() if deadline is None else deadline
        self._reserved = None

        def command(line: bytes) -> tuple[int, bytes]:
            if trace is not None:
                trace.enter(TRACE_STAGES[txn.stage])
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

    def _abandon(self, txn: Transaction[_I], exc: BaseException) -> DeliveryError:
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

    def _envelope(self, txn: Transaction[_I],
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

    def _begin(self, item: _T) -> Transaction[_T]:
        txn = Transaction(item, item.recipients)
        try:
            smtputf8 = getattr(item, "smtputf8", None)
            if smtputf8 is None:
                smtputf8 = needs_smtputf8([item.from_addr, *item.recipients])
            txn.data, params = self._wire_terms(item.data, smtputf8,
                                                getattr(item, "seven_bit", None))
            txn.lines = envelope_lines(item.from_addr, item.recipients, params)
        except Unsendable as exc:
            txn.stage = exc.stage
            txn.outcome = self._failure(txn, exc)
        return txn

    def _wire_terms(self, data: bytes, smtputf8: bool,
                    seven_bit: Callable[[], bytes] | None) -> tuple[bytes, tuple[str, ...]]:
        """The body and MAIL parameters for this server: SMTPUTF8 when the message needs
        it (RFC 6531: none without the server's word), BODY=8BITMIME for 8-bit octets
        when the server offers it (RFC 6152), else the 7-bit re-encoding, never raw 8-bit
        octets to a server that did not ask for them."""
        smtp = self._smtp
        params: tuple[str, ...] = ()
        if smtputf8:
            if not smtp.has_extn("smtputf8"):
                raise Unsendable("sender", "smtputf8")
            params = ("SMTPUTF8",)
        if data.isascii():
            return data, params
        if smtputf8 or smtp.has_extn("8bitmime"):
            return data, (*params, "BODY=8BITMIME")
        data = seven_bit() if seven_bit is not None else data
        if not data.isascii():  # 8-bit headers: no transfer encoding can carry those
            raise Unsendable("data", "eight_bit")
        return data, params

    def _failure(self, txn: Transaction[_I], exc: BaseException, *,
                 unknown: bool = False) -> DeliveryError:
        """The fixed DeliveryError for a message stopped by ``exc`` (logged: codes at
        WARNING, the scrubbed text at DEBUG)."""
        failure = classify_failure(self._smtp, txn.stage, exc, self.server, self._scrubber)
        reason = getattr(exc, "reason", None)
        if reason is not None and reason in self._smtp.options.messages:
            failure = DeliveryError(failure.stage, self._smtp.options.messages[reason])
        failure.code = exc.smtp_code if isinstance(exc, _Refusal) else None
        failure.delivery_unknown = unknown
        return failure

    def _fresh_deadline(self) -> Deadline:
        """The next message's deadline. The first message on a new connection keeps the
        one its connect began under, so SMTP_SENDERS_TIMEOUT bounds the message's whole
        exchange, the connect it needed included; later ones start their own."""
        reserved, self._reserved = self._reserved, None
        if reserved is not None:
            return reserved
        options = self._smtp.options
        return Deadline(options.deadline, options.operation_timeout)

    def _reset(self) -> None:
        try:
            code, _reply = self._smtp.rset()
        except (smtplib.SMTPException, OSError):
            code = 0
        if code != 250:
            self._smtp.close()
