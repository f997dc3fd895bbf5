"""A batch's messages on the wire, and what happened to each (:class:`SendResult`).

Each worker streams prepared messages through pooled connections (the transport pipelines
when it can). A connection the server closed while idle, or a 421, gets one transparent
reconnect; 4xx refusals are retried a bounded number of times with backoff; 5xx are final;
a message whose fate is unknown (the connection broke after its body was sent) is never
sent again, so no retry delivers twice.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from email.message import Message

from ..errors import (
    ConcurrentUpdate,
    DeliveryError,
    InvalidSenderData,
    PasswordUnreadable,
    SenderNotFound,
)
from ..mail.outgoing import seven_bit_bytes
from .pool import ConnectionPool, Route, RouteCache


@dataclass(frozen=True)
class SendResult:
    """What happened to one message."""

    message_id: str | None
    #: Recipients the server accepted.
    accepted: tuple[str, ...] = ()
    #: Recipients the server refused while accepting others: address -> (code, reply).
    refused: Mapping[str, tuple[int, str]] = field(default_factory=dict)
    #: Why nothing was sent (None on success): a DeliveryError, SenderNotFound, a
    #: PasswordUnreadable (CredentialNotBound when the password is not bound to the
    #: sender's current settings; both with ``stage`` "password"), or the error that
    #: stopped the message being prepared (InvalidSenderData, a hook's).
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Envelope:
    """A message as it goes on the wire, prepared once for one version of its sender."""

    #: The sender version whose headers the message carries.
    version: int
    message_id: str | None
    from_addr: str
    recipients: tuple[str, ...]
    data: bytes = field(repr=False)
    #: A non-ASCII address somewhere: sent only with SMTPUTF8, ``data`` in UTF-8 headers.
    smtputf8: bool = False
    #: The prepared copy, kept while ``data`` has 8-bit octets and may have to be
    #: re-encoded to 7-bit for a server without 8BITMIME.
    message: Message | None = field(default=None, repr=False, compare=False)


@dataclass
class Job:
    """A prepared message and what befell it so far (the transport reads the envelope
    fields through the properties)."""

    index: int
    envelope: Envelope
    reconnected: bool = False
    retries: int = 0

    @property
    def from_addr(self) -> str:
        return self.envelope.from_addr

    @property
    def recipients(self) -> tuple[str, ...]:
        return self.envelope.recipients

    @property
    def data(self) -> bytes:
        return self.envelope.data

    @property
    def smtputf8(self) -> bool:
        return self.envelope.smtputf8

    def seven_bit(self) -> bytes:
        message = self.envelope.message
        return self.data if message is None else seven_bit_bytes(message)


class Worker:
    """One connection's share of a batch: streams jobs through pooled connections, gives a
    job whose connection broke under it one transparent reconnect, retries temporary
    refusals a bounded number of times with backoff, and never sends again a job whose
    fate is unknown. Writes each job's result at its index in ``results``."""

    def __init__(self, routes: RouteCache, pool: ConnectionPool, sender_id: int,
                 prepared: Callable[[], Job | None], results: list[SendResult | None], *,
                 retries: int, backoff: float) -> None:
        self._routes = routes
        self._pool = pool
        self._sender_id = sender_id
        self._prepared = prepared
        self._results = results
        self._retries = retries
        self._backoff = backoff
        self._pending: deque[Job] = deque()  # to send before taking new ones
        self._later: list[Job] = []  # refused for now: after a backoff
        self._exhausted = False
        self._token_renewed = False  # a refused access token is renewed once per worker

    def run(self) -> None:
        """Send every job this worker gets, retry rounds included."""
        while True:
            self._stream()
            if not self._later:
                return
            retries = max(job.retries for job in self._later)
            time.sleep(self._backoff * 2 ** (retries - 1))
            self._pending.extend(self._later)
            self._later.clear()

    def _next(self) -> Job | None:
        if self._pending:
            return self._pending.popleft()
        job = None if self._exhausted else self._prepared()
        self._exhausted = job is None
        return job

    def _stream(self) -> None:
        """Send until no job is left, connection after connection."""
        fresh = False
        while (job := self._next()) is not None:
            try:
                route = self._routes.route(self._sender_id)
            except (SenderNotFound, PasswordUnreadable, InvalidSenderData,
                    DeliveryError) as unusable:  # DeliveryError: no access token
                self._finish(job, error=unusable)
                continue
            if job.envelope.version != route.sender.version:  # never old headers, new server
                self._finish(job, error=ConcurrentUpdate(
                    f"sender {self._sender_id} was edited before this message went out; "
                    "not sent"))
                continue
            try:
                connection, _reused = self._pool.acquire(route, fresh=fresh)
            except DeliveryError as failure:
                if failure.token_refused and not self._token_renewed:
                    # The cached token was revoked or expired early: one new token, once.
                    self._token_renewed = True
                    self._pending.appendleft(job)
                    try:
                        self._routes.renew_token(self._sender_id)
                    except (SenderNotFound, PasswordUnreadable, InvalidSenderData,
                            DeliveryError):
                        pass  # the next round finds the route unusable and says why
                    continue
                self._finish(job, error=failure)
                continue
            self._pending.appendleft(job)
            broken = False
            for sent, outcome in connection.send_pipelined(self._jobs(route)):
                broken |= self._settle(sent, outcome) and not connection.usable
            self._pool.release(route, connection)
            fresh = broken  # a reused connection died under us: skip the other idle ones

    def _jobs(self, route: Route) -> Iterator[Job]:
        """Jobs for this connection; stops (keeping the job) at one prepared for another
        version of the sender, which needs a connection of its own."""
        while (job := self._next()) is not None:
            if job.envelope.version != route.sender.version:
                self._pending.appendleft(job)
                return
            yield job

    def _settle(self, job: Job, outcome: dict[str, tuple[int, str]] | DeliveryError) -> bool:
        """Record a job's outcome or queue it again; True when it is sent again because
        its connection broke."""
        if not isinstance(outcome, DeliveryError):
            accepted = tuple(r for r in job.recipients if r not in outcome)
            self._results[job.index] = SendResult(job.envelope.message_id, accepted, outcome)
            return False
        if outcome.delivery_unknown:
            self._finish(job, error=outcome)
            return False
        broke = outcome.code == 421 or (outcome.code is None and outcome.stage != "timeout")
        if broke and not job.reconnected:  # closed while idle, or told to go away: once more
            job.reconnected = True
            self._pending.append(job)
            return True
        if outcome.temporary and job.retries < self._retries:
            job.retries += 1
            self._later.append(job)
            return False
        self._finish(job, error=outcome)
        return False

    def _finish(self, job: Job, *, error: Exception) -> None:
        self._results[job.index] = SendResult(job.envelope.message_id, error=error)
