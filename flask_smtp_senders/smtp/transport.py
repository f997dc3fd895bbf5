"""Talking SMTP to the administrator's server, safely: the package's entry point to it.

:func:`connect` opens a :class:`Connection` (an encrypted, authenticated session) and the
Connection sends over it and closes it: one object owns open, send and close. The work is
split by job, and every name the rest of the package uses is re-exported here:

- :mod:`flask_smtp_senders.smtp.session`: reaching an authenticated session (certificates
  always verified, STARTTLS mandatory on its ports, AUTH only over an encrypted socket),
  with :mod:`~flask_smtp_senders.smtp.client` (the smtplib client),
  :mod:`~flask_smtp_senders.smtp.auth` (the AUTH mechanisms),
  :mod:`~flask_smtp_senders.smtp.replies` (every reply bounded in lines and bytes),
  :mod:`~flask_smtp_senders.deadline` and :mod:`~flask_smtp_senders.smtp.options`.
- :mod:`flask_smtp_senders.smtp.failures`: a failure becomes a :class:`DeliveryError` with
  the stage where it happened and a fixed message; the ``flask_smtp_senders.transport``
  log gets the stage, the exception's type and reply codes at WARNING, and server replies
  and exception text at DEBUG only, with the password scrubbed out
  (:mod:`~flask_smtp_senders.smtp.scrubbing`).
- :mod:`flask_smtp_senders.smtp.transactions` (lock-step, and what every transaction
  shares), :mod:`~flask_smtp_senders.smtp.pipelining` (many messages, RFC 2920) and
  :mod:`~flask_smtp_senders.smtp.envelope` (the bytes written): the messages sent over
  the session.
- here: :func:`connect`, and :class:`Connection`'s single send, dry run and closing.

:func:`connect`, :meth:`Connection.send` and :meth:`Connection.dry_run` take an optional
:class:`~flask_smtp_senders.smtp.trace.Trace` that records each stage (Send Test Email and
the connection check); without one (the sending API) nothing is recorded and nothing is
allocated for it.

This module knows nothing of Flask.
"""

from __future__ import annotations

import contextlib
import select
import smtplib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

from ..deadline import Deadline
from ..domain import (
    STAGES,
    STARTTLS_PORTS,
    Security,
    ServerAddress,
    needs_smtputf8,
    security_for_port,
)
from ..sealed import Credential
from .auth import CredentialsRejected
from .client import SMTPClient
from .envelope import Unsendable, envelope_lines, wire_terms
from .failures import log
from .options import TransportOptions, resolve
from .pipelining import send_pipelined
from .replies import ReplyTooLarge
from .scrubbing import Scrubber, scrub
from .session import open_session
from .trace import NO_TRACE, Trace
from .transactions import TRACE_STAGES, MailTransactions, Outcome, Outgoing, Transaction

__all__ = [
    "STAGES",
    "STARTTLS_PORTS",
    "Connection",
    "CredentialsRejected",
    "Deadline",
    "Outcome",
    "Outgoing",
    "ReplyTooLarge",
    "Security",
    "ServerAddress",
    "TransportOptions",
    "connect",
    "resolve",
    "scrub",
    "security_for_port",
]

_T = TypeVar("_T", bound=Outgoing)


class _EnvelopeAccepted(Exception):
    """A dry run reached DATA: the server accepted the sender and a recipient."""


class Connection:
    """An open, encrypted and authenticated SMTP session with one server: it sends (one
    message, a dry run, or many pipelined) and closes.

    It owns the session and a
    :class:`~flask_smtp_senders.smtp.transactions.MailTransactions` over it, which does
    the transactions' bookkeeping. It keeps no credential: the session signed in before
    it was made, and for scrubbing its DEBUG log it keeps a
    :class:`~flask_smtp_senders.smtp.scrubbing.Scrubber` (keyed digests) made from
    ``secret`` (a password or an access token), not the credential itself. ``reserved``:
    the deadline the connect began under, which the first message's exchange keeps."""

    def __init__(self, smtp: SMTPClient, server: ServerAddress,
                 secret: Credential | Scrubber, *,
                 reserved: Deadline | None = None) -> None:
        self._smtp = smtp
        self.server = server
        scrubber = (secret if isinstance(secret, Scrubber)
                    else Scrubber(server.username, secret, host=server.server_name,
                                  port=server.port))
        self._mail = MailTransactions(smtp, server, scrubber, reserved)

    @property
    def pipelining(self) -> bool:
        """The server's EHLO (the one after TLS) offered PIPELINING (RFC 2920)."""
        return self._smtp.has_extn("pipelining")

    @property
    def usable(self) -> bool:
        """Still connected and in step with the server (a pool may reuse it)."""
        return self._smtp.sock is not None

    def send_pipelined(self, items: Iterable[_T]) -> Iterator[tuple[_T, Outcome]]:
        """Send many messages, overlapping round trips when the server allows (RFC 2920):
        :func:`flask_smtp_senders.smtp.pipelining.send_pipelined`, which says how.

        Yields ``(item, outcome)`` in order for every item pulled from ``items``: the
        refused recipients (as :meth:`send` returns them) or a DeliveryError (as it
        raises). Without PIPELINING it sends as :meth:`send` does.
        """
        return send_pipelined(self._mail, items)

    def send(self, from_addr: str, to_addrs: Sequence[str], data: bytes,
             deadline: Deadline | None = None,
             while_waiting: Callable[[], None] | None = None,
             trace: Trace | None = None, *, smtputf8: bool | None = None,
             seven_bit: Callable[[], bytes] | None = None) -> dict[str, tuple[int, str]]:
        """Send one message serialised with CRLF line endings.

        ``smtputf8`` (default: whether an address is non-ASCII) asks for SMTPUTF8 (RFC
        6531), which the server must offer; 8-bit ``data`` goes with BODY=8BITMIME when
        the server offers it, else as ``seven_bit()`` returns it (RFC 6152), and fails at
        stage data when there is no 7-bit form.

        Returns the recipients the server refused while it accepted others (with the
        reply code and text). ``while_waiting`` runs after DATA is written and before its
        reply is read (the caller prepares its next message in that time). Raises
        DeliveryError when nothing was accepted; after a refusal the session is reset and
        stays usable, after a 421 or a broken connection it is closed (``usable`` turns
        False). Raises ValueError, before writing anything, for an address that cannot
        be written as an SMTP command. ``trace`` records MAIL FROM, RCPT TO and DATA.
        """
        if smtputf8 is None:
            smtputf8 = needs_smtputf8([from_addr, *to_addrs])
        mail = self._mail
        txn: Transaction[None] = Transaction(None, to_addrs)
        with self._tracing(trace or NO_TRACE):
            try:
                data, params = wire_terms(self._smtp.esmtp_features, data, smtputf8,
                                          seven_bit)
                txn.lines = envelope_lines(from_addr, to_addrs, params)
            except Unsendable as exc:
                if exc.reason is None:  # not SMTP at all: the caller's mistake
                    raise
                txn.stage = exc.stage
                raise mail.failure(txn, exc) from None
        if trace is None:
            return mail.send_lockstep(txn, data, deadline, while_waiting)
        with self._tracing(trace):
            return mail.send_lockstep(txn, data, deadline, while_waiting, trace)

    def dry_run(self, from_addr: str, to_addrs: Sequence[str],
                deadline: Deadline | None = None, trace: Trace | None = None) -> None:
        """MAIL FROM and RCPT TO exactly as :meth:`send` writes them, then RSET and QUIT
        where DATA would be: the server's verdict on the envelope, and nothing delivered.

        Raises DeliveryError as send() does (stage sender or recipient). RSET and QUIT are
        best effort (the trace's reset stage says how they went); the session ends.
        """
        params = ("SMTPUTF8",) if needs_smtputf8([from_addr, *to_addrs]) else ()
        mail = self._mail
        txn: Transaction[None] = Transaction(None, to_addrs)
        try:
            if params and not self._smtp.has_extn("smtputf8"):
                raise Unsendable("sender", "smtputf8")
            txn.lines = envelope_lines(from_addr, to_addrs, params)
        except Unsendable as exc:
            if exc.reason is None:
                raise
            txn.stage = exc.stage
            with self._tracing(trace or NO_TRACE):
                raise mail.failure(txn, exc) from None
        data_line = txn.lines[-1]
        tracer = NO_TRACE if trace is None else trace
        smtp = self._smtp
        smtp.deadline = mail.fresh_deadline() if deadline is None else deadline
        mail.reserved = None

        def command(line: bytes) -> tuple[int, bytes]:
            if line is data_line:  # never written
                raise _EnvelopeAccepted
            tracer.enter(TRACE_STAGES[txn.stage])
            smtp.send(line)
            code, text = smtp.getreply()
            tracer.fact("Reply code", str(int(code)))
            return code, text

        with self._tracing(tracer):
            try:
                mail.envelope(txn, command)
            except _EnvelopeAccepted:
                tracer.leave()
            except (smtplib.SMTPException, OSError) as exc:
                raise mail.abandon(txn, exc) from None
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
        """Have failures classified meanwhile
        (:func:`~flask_smtp_senders.smtp.failures.classify_failure`) reported to ``trace``."""
        smtp = self._smtp
        previous, smtp.trace = smtp.trace, trace
        try:
            yield
        finally:
            smtp.trace = previous

    def closed_by_server(self) -> bool:
        """For an idle connection: anything readable is the server's EOF or its 421."""
        sock = self._smtp.sock
        if sock is None:
            return True
        try:
            return bool(select.select([sock], [], [], 0)[0])
        except (OSError, ValueError):
            return True

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


def connect(server: ServerAddress, secret: Credential, options: TransportOptions,
            deadline: Deadline | None = None, trace: Trace | None = None) -> Connection:
    """Resolve, connect, secure (SMTPS or mandatory STARTTLS), EHLO and authenticate with
    ``secret``: a :class:`~flask_smtp_senders.sealed.Secret` (a password: CRAM-MD5, PLAIN
    or LOGIN) or an :class:`~flask_smtp_senders.sealed.AccessToken` (XOAUTH2, else
    OAUTHBEARER), never one through the other's mechanisms.

    ``trace`` records the stages of this call (resolve, connect, tls, ehlo, auth) and why
    it failed; the connection does not keep it.
    """
    deadline = deadline or Deadline(options.deadline, options.operation_timeout)
    smtp = open_session(server, secret, options, deadline,
                        NO_TRACE if trace is None else trace)
    smtp.trace = NO_TRACE  # later sends report to the trace they are given, if any
    # the first message's exchange includes this connect
    return Connection(smtp, server, secret, reserved=deadline)
