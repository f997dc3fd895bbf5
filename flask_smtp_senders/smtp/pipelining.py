"""Sending many messages over one session, overlapping round trips when the server offers
PIPELINING (RFC 2920), else one by one in lock-step; items pulled lazily from the caller.

Why apart from :mod:`flask_smtp_senders.smtp.transactions`: which reply belongs to which
written group, when to pull the caller's next item, and what a broken stream leaves
undelivered or unknown is bookkeeping of its own. The hot path of ``send_many``: nothing
here is allocated per message beyond the message's own transaction. This module knows
nothing of Flask.
"""

from __future__ import annotations

import smtplib
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

from ..errors import DeliveryError
from .envelope import dot_stuff
from .transactions import MailTransactions, Outcome, Outgoing, Refusal, Transaction

_T = TypeVar("_T", bound=Outgoing)


class Closing(Refusal):
    """A 421 while pipelining: the server is leaving, so the whole stream stops."""


class Gone(smtplib.SMTPServerDisconnected):
    """The session ended before this message's turn: it was never sent."""

    def __init__(self) -> None:
        super().__init__("the connection closed before this message was sent")


def send_pipelined(mail: MailTransactions,
                   items: Iterable[_T]) -> Iterator[tuple[_T, Outcome]]:
    """Send many messages over ``mail``'s session, overlapping round trips when the
    server allows (RFC 2920).

    Yields ``(item, outcome)`` in order, once for every item pulled from ``items``: the
    refused recipients (as a lock-step send returns them) or a DeliveryError (as it
    raises). Items are pulled lazily, at most one beyond the message whose envelope is in
    flight, so the caller can prepare the next message inside ``__next__`` while the
    server works. Without PIPELINING it sends one by one. When the session breaks (421,
    timeout, lost connection) it stops pulling; only a message whose body went out
    without its final reply has ``delivery_unknown``, the others may be sent again on a
    new connection.
    """
    stream = _Stream(mail, iter(items))
    smtp = mail.smtp
    try:
        yield from stream.pipelined() if smtp.has_extn("pipelining") else stream.one_by_one()
    except (smtplib.SMTPException, OSError) as exc:  # the session is over
        smtp.close()
        for txn in stream.waiting:
            unknown = txn.body_sent and not isinstance(exc, Closing)  # no final reply
            yield txn.item, (txn.outcome if txn.outcome is not None
                             else mail.failure(txn, exc, unknown=unknown))
        stream.waiting.clear()
    finally:
        mail.reserved = None  # a connect's deadline never reaches a later stream
        if stream.waiting:  # the caller stopped mid-stream: we are out of step for good
            smtp.close()
    if stream.error is not None:
        raise stream.error


class _Stream(Generic[_T]):
    """One stream: the caller's items, pulled one at a time into ``waiting`` (pulled, not
    yet answered), and the replies read back. An error from the iterator ends the pulling;
    :func:`send_pipelined` raises it again once every item pulled has its outcome."""

    __slots__ = ("_mail", "_smtp", "_items", "waiting", "done", "error")

    def __init__(self, mail: MailTransactions, items: Iterator[_T]) -> None:
        self._mail = mail
        self._smtp = mail.smtp
        self._items = items
        self.waiting: deque[Transaction[_T]] = deque()
        self.done = False
        self.error: Exception | None = None

    def pull(self) -> bool:
        """Pull the caller's next item into ``waiting``; False once there is none."""
        if self.done:
            return False
        try:
            item = next(self._items)
        except StopIteration:
            self.done = True
            return False
        except Exception as exc:  # the caller's own failure: not ours to swallow
            self.done, self.error = True, exc
            return False
        self.waiting.append(self._mail.begin(item))
        return True

    def one_by_one(self) -> Iterator[tuple[_T, Outcome]]:
        """Without PIPELINING: a lock-step send per item, the next one pulled (prepared by
        the caller) while the server answers DATA, until the session is gone."""
        mail, waiting = self._mail, self.waiting

        def pull_next() -> None:
            if len(waiting) == 1:
                self.pull()

        while waiting or self.pull():
            txn = waiting[0]
            outcome: Outcome | None = txn.outcome  # set: it could not even be written
            if outcome is None:
                try:
                    outcome = mail.send_lockstep(txn, txn.data, while_waiting=pull_next)
                except DeliveryError as failure:
                    outcome = failure
            waiting.popleft()
            yield txn.item, outcome
            if not mail.usable:  # what was pulled meanwhile was never sent
                for txn in waiting:
                    yield txn.item, txn.outcome or mail.failure(txn, Gone())
                waiting.clear()
                return

    def pipelined(self) -> Iterator[tuple[_T, Outcome]]:
        """The pipelined stream; a broken session surfaces as the exception it raised."""
        smtp, mail, waiting = self._smtp, self._mail, self.waiting
        while waiting or self.pull():
            txn = waiting[0]
            outcome: Outcome | None = txn.outcome  # set: it could not even be written
            if outcome is None:
                smtp.deadline = mail.fresh_deadline()
                if not txn.in_flight:  # the first item, or the one after a refusal
                    txn.in_flight = True
                    smtp.send(b"".join(txn.lines))
                    if len(waiting) == 1:
                        self.pull()  # prepared while the server reads
                outcome = self._envelope(txn)
                if outcome is None:
                    outcome = self._body(txn)
            waiting.popleft()
            yield txn.item, outcome

    def _envelope(self, txn: Transaction[_T]) -> DeliveryError | None:
        """Read the replies to a written MAIL/RCPT/DATA group: None once DATA got its 354,
        else the message's failure.

        After a refusal the group's other replies are still read; a 354 given anyway is
        ended with a bare dot (the body is never sent), and a transaction that may still
        be open is reset lock-step so that the next MAIL is not nested.
        """
        try:
            self._mail.envelope(txn, self._next_reply)
            return None
        except Closing:
            raise
        except Refusal as refusal:
            txn.outcome = self._mail.failure(txn, refusal)
        txn.codes += [self._next_reply()[0] for _line in txn.lines[len(txn.codes):]]
        if txn.codes[-1] == 354:
            self._smtp.send(b".\r\n")
            self._next_reply()
        elif txn.codes[0] == 250:
            self._smtp.send(b"rset\r\n")
            if self._next_reply()[0] != 250:
                raise smtplib.SMTPException("RSET was refused")
        return txn.outcome

    def _body(self, txn: Transaction[_T]) -> Outcome:
        """Write the body together with the next item's envelope, let the caller prepare
        the item after that while the server works, then read the body's reply."""
        waiting = self.waiting
        group = dot_stuff(txn.data)
        following = waiting[1] if len(waiting) > 1 else None
        if following is not None and following.outcome is None:
            following.in_flight = True
            group += b"".join(following.lines)
        txn.body_sent = True
        self._smtp.send(group)
        if following is not None and following.in_flight:
            self.pull()
        code, text = self._next_reply()
        if code != 250:
            return self._mail.failure(txn, Refusal(code, text))
        return txn.refused

    def _next_reply(self, _line: bytes = b"") -> tuple[int, bytes]:
        """The reply to the oldest command still unanswered (it was written with its
        group). A 421 ends the stream."""
        code, text = self._smtp.getreply()
        if code == 421:
            raise Closing(code, text)
        return code, text
