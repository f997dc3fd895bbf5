"""Message transactions over an open SMTP session: one message in lock-step (MAIL, RCPT,
DATA and the body, each awaiting its reply), and the bookkeeping every way of sending
shares (which reply belongs to which command, what to do after a refusal or a 421, which
message's delivery is unknown, which deadline a message runs under).

:class:`MailTransactions` is owned by a
:class:`~flask_smtp_senders.smtp.transport.Connection`, which supplies the session
(:mod:`flask_smtp_senders.smtp.session`), the server and the scrubber for its DEBUG log
(never the password); many messages pipelined (RFC 2920) are
:mod:`flask_smtp_senders.smtp.pipelining`'s. This module knows nothing of Flask.
"""

from __future__ import annotations

import smtplib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from ..deadline import Deadline
from ..domain import ServerAddress, needs_smtputf8
from ..errors import DeliveryError
from .client import SMTPClient
from .envelope import Unsendable, dot_stuff, envelope_lines, wire_terms
from .failures import classify_failure, log
from .scrubbing import Scrubber
from .trace import Trace

#: The envelope's stages (a transaction's ``stage``) as diagnostic stages.
TRACE_STAGES = {"sender": "mail", "recipient": "rcpt", "data": "data"}


class Refusal(smtplib.SMTPResponseException):
    """The server answered a command with something other than success."""


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


def _run_quietly(work: Callable[[], None]) -> None:
    """Run side work between a write and its reply; it must never desync the session."""
    try:
        work()
    except Exception:
        log.exception("work done while waiting for the server failed")


class MailTransactions:
    """Message transactions on one open session: the envelope's replies, a lock-step
    send, and what a failure does to the session."""

    __slots__ = ("smtp", "server", "scrubber", "reserved")

    def __init__(self, smtp: SMTPClient, server: ServerAddress, scrubber: Scrubber,
                 reserved: Deadline | None = None) -> None:
        self.smtp = smtp
        self.server = server
        #: Scrubs the DEBUG log of failures (keyed digests, not the password).
        self.scrubber = scrubber
        #: The deadline the connect began under, for the first message on this session.
        self.reserved = reserved

    @property
    def usable(self) -> bool:
        """Still connected and in step with the server (a pool may reuse it)."""
        return self.smtp.sock is not None

    def begin(self, item: _T) -> Transaction[_T]:
        """A transaction for ``item`` with its envelope and body as this server takes
        them; one that cannot be written has its failure as ``outcome`` already."""
        txn = Transaction(item, item.recipients)
        try:
            smtputf8 = getattr(item, "smtputf8", None)
            if smtputf8 is None:
                smtputf8 = needs_smtputf8([item.from_addr, *item.recipients])
            txn.data, params = wire_terms(self.smtp.esmtp_features, item.data, smtputf8,
                                          getattr(item, "seven_bit", None))
            txn.lines = envelope_lines(item.from_addr, item.recipients, params)
        except Unsendable as exc:
            txn.stage = exc.stage
            txn.outcome = self.failure(txn, exc)
        return txn

    def send_lockstep(self, txn: Transaction[_I], data: bytes,
                      deadline: Deadline | None = None,
                      while_waiting: Callable[[], None] | None = None,
                      trace: Trace | None = None) -> dict[str, tuple[int, str]]:
        """Send a transaction whose envelope is built, each command awaiting its reply;
        the refused recipients, or raises the message's DeliveryError (:meth:`abandon`)."""
        smtp = self.smtp
        smtp.deadline = self.fresh_deadline() if deadline is None else deadline
        self.reserved = None

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
            self.envelope(txn, command)
            txn.body_sent = True
            smtp.send(dot_stuff(data))
            code, reply = smtp.getreply()
            if trace is not None:
                trace.fact("Reply code", str(int(code)))  # the message's, after DATA's 354
            if code != 250:
                raise Refusal(code, reply)
            if trace is not None:
                trace.leave()
            return txn.refused
        except (smtplib.SMTPException, OSError) as exc:
            raise self.abandon(txn, exc) from None

    def abandon(self, txn: Transaction[_I], exc: BaseException) -> DeliveryError:
        """The failure of a lock-step transaction; after a refusal the session is reset and
        stays usable (closed after a 421), after anything else it is closed."""
        if isinstance(exc, Refusal):
            failure = self.failure(txn, exc)
            if exc.smtp_code == 421:
                self.smtp.close()
            else:
                self._reset()
            return failure
        failure = self.failure(txn, exc, unknown=txn.body_sent)
        self.smtp.close()
        return failure

    def envelope(self, txn: Transaction[_I],
                 reply: Callable[[bytes], tuple[int, bytes]]) -> None:
        """MAIL, each RCPT, then DATA: one reply per command, in order.

        ``reply`` writes a command and waits (lock-step) or reads the reply to one already
        written (pipelined). Refused recipients go to ``txn.refused``; raises Refusal at
        the reply that fails the message, with ``txn.stage`` saying where.
        """
        def answer(line: bytes) -> tuple[int, bytes]:
            code, text = reply(line)
            txn.codes.append(code)
            return code, text

        mail, *rcpts, data = txn.lines
        code, text = answer(mail)
        if code != 250:
            raise Refusal(code, text)
        txn.stage = "recipient"
        for address, line in zip(txn.to_addrs, rcpts, strict=True):
            code, text = answer(line)
            if code not in (250, 251):
                txn.refused[address] = (code, text.decode("utf-8", "replace"))
        if len(txn.refused) == len(txn.to_addrs):
            raise Refusal(min(code for code, _ in txn.refused.values()), b"all refused")
        txn.stage = "data"
        code, text = answer(data)
        if code != 354:
            raise Refusal(code, text)

    def failure(self, txn: Transaction[_I], exc: BaseException, *,
                unknown: bool = False) -> DeliveryError:
        """The fixed DeliveryError for a message stopped by ``exc`` (logged: codes at
        WARNING, the scrubbed text at DEBUG)."""
        smtp = self.smtp
        failure = classify_failure(smtp, txn.stage, exc, self.server, self.scrubber)
        reason = getattr(exc, "reason", None)
        if reason is not None and reason in smtp.options.messages:
            failure = DeliveryError(failure.stage, smtp.options.messages[reason])
        failure.code = exc.smtp_code if isinstance(exc, Refusal) else None
        failure.delivery_unknown = unknown
        return failure

    def fresh_deadline(self) -> Deadline:
        """The next message's deadline. The first message on a new connection keeps the
        one its connect began under, so SMTP_SENDERS_TIMEOUT bounds the message's whole
        exchange, the connect it needed included; later ones start their own."""
        reserved, self.reserved = self.reserved, None
        if reserved is not None:
            return reserved
        options = self.smtp.options
        return Deadline(options.deadline, options.operation_timeout)

    def _reset(self) -> None:
        try:
            code, _reply = self.smtp.rset()
        except (smtplib.SMTPException, OSError):
            code = 0
        if code != 250:
            self.smtp.close()
