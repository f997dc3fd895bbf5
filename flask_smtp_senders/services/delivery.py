"""The host app's own notifications through a saved sender: pooled, reconnecting, parallel.

Connections are pooled per sender and keyed by its version, so an edit or a delete closes
the old ones and the next message uses the new settings; no single message ever mixes
old and new. A connection the server closed while idle, or a 421, gets one transparent
reconnect; 4xx refusals are retried a bounded number of times with backoff; 5xx are final;
a message whose fate is unknown (the connection broke after its body was sent) is never
sent again, so no retry delivers twice.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.message import EmailMessage, Message
from typing import Any

from flask import current_app

from ..crypto import Secret
from ..errors import (
    ConcurrentUpdate,
    DeliveryError,
    InvalidSenderData,
    PasswordUnreadable,
    SenderNotFound,
)
from ..events import AuditEvent, MessageFailed, MessageSent
from ..mail.headers import SenderHeaders, message_id
from ..mail.outgoing import detached_copy, envelope_recipients, seven_bit_bytes, wire_bytes
from ..smtp import transport
from ..storage.sqlalchemy import Sender
from ..validation import AddressRules

log = logging.getLogger(__name__)


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
class MailerDeps:
    """What a Mailer asks of the rest of the extension, handed to it at construction
    (this module imports nothing that uses it). Each is called at the moment it is needed."""

    #: The sender as stored now; raises SenderNotFound.
    get_sender: Callable[[int], Sender]
    #: The default sender; raises SenderNotFound when there is none.
    default_sender: Callable[[], Sender]
    #: The sender's password for its current destination; raises PasswordUnreadable
    #: (CredentialNotBound).
    secret_for: Callable[[Sender], Secret]
    #: Who is sending, for the audit (the smtp_senders_actor hook).
    actor: Callable[[], str | None]
    #: The smtp_senders_prepare_message hook: (message, sender, purpose).
    prepare_message: Callable[[Message, Sender, str], object]
    #: Records a send's audit event; must not raise (a message cannot be unsent).
    audit: Callable[[AuditEvent], None]


@dataclass(frozen=True)
class MailerSettings:
    """The configuration a Mailer reads, once, when it is made."""

    transport_options: transport.TransportOptions
    #: SMTP_SENDERS_POOL_IDLE_TIMEOUT
    idle_timeout: float
    #: SMTP_SENDERS_MAX_CONNECTIONS
    max_connections: int
    #: SMTP_SENDERS_SEND_RETRIES
    retries: int
    #: SMTP_SENDERS_RETRY_BACKOFF
    backoff: float
    #: SMTP_SENDERS_SMTPUTF8, SMTP_SENDERS_ALLOW_INTERNAL_DOMAINS
    rules: AddressRules

    @classmethod
    def from_config(cls, config: Mapping[str, Any],
                    options: transport.TransportOptions) -> MailerSettings:
        return cls(options,
                   idle_timeout=float(config["SMTP_SENDERS_POOL_IDLE_TIMEOUT"]),
                   max_connections=int(config["SMTP_SENDERS_MAX_CONNECTIONS"]),
                   retries=int(config["SMTP_SENDERS_SEND_RETRIES"]),
                   backoff=float(config["SMTP_SENDERS_RETRY_BACKOFF"]),
                   rules=AddressRules.from_config(config))


@dataclass(frozen=True)
class _Route:
    """One version of a sender, with its password decrypted once."""

    sender: Sender
    secret: Secret = field(repr=False)
    headers: SenderHeaders = field(init=False, repr=False, compare=False)

    rules: AddressRules = field(default=AddressRules(), repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", SenderHeaders(self.sender.settings, self.rules))

    @property
    def key(self) -> tuple[int, int]:
        return self.sender.id, self.sender.version

    def serves(self, sender: Sender) -> bool:
        """Whether this route is still ``sender`` as stored: the same version, and the same
        settings, token and binding (a row edited in SQL keeps its version)."""
        mine = self.sender
        return (mine.version == sender.version and mine.settings == sender.settings
                and mine.password == sender.password
                and mine.password_binding == sender.password_binding)


@dataclass(frozen=True)
class _Envelope:
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


class ConnectionPool:
    """Open connections per sender version, reused across calls and threads."""

    def __init__(self, options: transport.TransportOptions, idle_timeout: float) -> None:
        self._options = options
        self._idle_timeout = idle_timeout
        self._lock = threading.Lock()
        self._idle: dict[tuple[int, int], list[tuple[transport.Connection, float]]] = {}
        self._current: dict[int, int] = {}  # sender id -> the version still wanted

    def acquire(self, route: _Route, *,
                fresh: bool = False) -> tuple[transport.Connection, bool]:
        """An idle connection if one is fresh enough (reused=True), else a new one;
        ``fresh`` skips the idle ones (after a reused one turned out dead)."""
        stale: list[transport.Connection] = []
        found = None
        with self._lock:
            self._current[route.sender.id] = route.sender.version
            stack = self._idle.get(route.key, [])
            now = time.monotonic()
            while stack and found is None and not fresh:
                connection, since = stack.pop()
                if connection.usable and now - since < self._idle_timeout:
                    found = connection
                else:
                    stale.append(connection)
        if found is not None and found.closed_by_server():  # hung up while idle
            stale.append(found)
            found = None
        for connection in stale:
            connection.close()
        if found is not None:
            return found, True
        return transport.connect(route.sender.server, route.secret, self._options), False

    def release(self, route: _Route, connection: transport.Connection) -> None:
        """Keep a healthy connection of the current version; close anything else."""
        with self._lock:
            if connection.usable and self._current.get(route.sender.id) == route.sender.version:
                self._idle.setdefault(route.key, []).append((connection, time.monotonic()))
                return
        connection.close()

    def forget(self, sender_id: int) -> None:
        """The sender changed or went away: close its idle connections now, and the busy
        ones when they come back."""
        with self._lock:
            self._current.pop(sender_id, None)
            keys = [key for key in self._idle if key[0] == sender_id]
            closing = [conn for key in keys for conn, _ in self._idle.pop(key)]
        for connection in closing:
            connection.close()

    def close(self) -> None:
        with self._lock:
            closing = [conn for stack in self._idle.values() for conn, _ in stack]
            self._idle.clear()
        for connection in closing:
            connection.close()

    def idle_count(self) -> int:
        with self._lock:
            return sum(len(stack) for stack in self._idle.values())


class Mailer:
    """``send`` and ``send_many`` for one app; reach it as ``SMTPSenders.service.mailer``."""

    def __init__(self, deps: MailerDeps, settings: MailerSettings) -> None:
        self._deps = deps
        self.pool = ConnectionPool(settings.transport_options, settings.idle_timeout)
        self._max_connections = settings.max_connections
        self._retries = settings.retries
        self._backoff = settings.backoff
        self._rules = settings.rules
        self._lock = threading.Lock()
        self._routes: dict[int, _Route] = {}
        self._gone: set[int] = set()

    # -- public API ---------------------------------------------------------------

    def send(self, message: EmailMessage, sender: int | None = None) -> SendResult:
        """Send one message through ``sender`` (an id; None: the default sender); raises
        DeliveryError, SenderNotFound or PasswordUnreadable (CredentialNotBound) when
        nothing was sent."""
        result = self.send_many([message], sender)[0]
        if result.error is not None:
            raise result.error
        return result

    def send_many(self, messages: Iterable[EmailMessage],
                  sender: int | None = None) -> list[SendResult]:
        """Send a batch over up to SMTP_SENDERS_MAX_CONNECTIONS parallel connections; one
        result per message, in order. Failures are results, not exceptions.

        Each connection pipelines (RFC 2920) when the server offers it, and prepares
        (serialises) its next message while the server is busy with the current one.
        SMTP_SENDERS_TIMEOUT bounds each message, from its turn to the server's final
        reply, the connect it needs (none open, or one dropped) included; a message that
        runs out of time fails with stage "timeout" and is not sent again. The messages
        themselves are never changed: each is sent from a copy (see outgoing.py).
        """
        sender_id = self._sender_id(sender)
        items = list(messages)
        try:
            self._refresh(sender_id)
        except (PasswordUnreadable, InvalidSenderData) as unusable:  # nothing can go
            return self._refuse_all(sender_id, len(items), unusable)
        envelopes: list[_Envelope | None] = [None] * len(items)
        results: list[SendResult | None] = [None] * len(items)
        counter = itertools.count()
        counter_lock = threading.Lock()

        def prepared() -> _Job | None:
            """The next message of the batch, prepared; None when there are no more."""
            while True:
                with counter_lock:
                    index = next(counter)
                if index >= len(items):
                    return None
                try:
                    envelopes[index] = self._prepare(items[index], self._route(sender_id))
                except Exception as exc:  # a bad message or a failing hook: it fails alone
                    log.warning("message %s could not be prepared: %s", index,
                                type(exc).__name__)
                    results[index] = SendResult(None, error=exc)
                    continue
                return _Job(index, envelopes[index])

        def work() -> None:
            _Worker(self, sender_id, prepared, results).run()

        workers = max(1, min(self._max_connections, len(items)))
        if workers == 1:
            work()
        else:
            app = current_app._get_current_object()  # type: ignore[attr-defined]

            def run() -> None:
                with app.app_context():
                    work()

            with ThreadPoolExecutor(workers, thread_name_prefix="smtp-senders") as pool:
                for future in [pool.submit(run) for _ in range(workers)]:
                    future.result()
        actor = self._deps.actor()
        done = [result for result in results if result is not None]
        for envelope, result in zip(envelopes, done, strict=True):
            self._audit(actor, sender_id, envelope, result)
        return done

    def forget(self, sender_id: int, *, deleted: bool = False) -> None:
        """Called when a sender was edited or deleted in this process."""
        with self._lock:
            self._routes.pop(sender_id, None)
            if deleted:
                self._gone.add(sender_id)
        self.pool.forget(sender_id)

    def close(self) -> None:
        self.pool.close()

    # -- internals ----------------------------------------------------------------

    def _sender_id(self, sender: int | Sender | None) -> int:
        if isinstance(sender, Sender):
            return sender.id
        if sender is None:
            return self._deps.default_sender().id
        return int(sender)

    def _refuse_all(self, sender_id: int, count: int,
                    error: PasswordUnreadable | InvalidSenderData) -> list[SendResult]:
        """One failed, audited result per message, when the password (or a saved address)
        cannot be used."""
        results = [SendResult(None, error=error) for _ in range(count)]
        actor = self._deps.actor()
        for result in results:
            self._audit(actor, sender_id, None, result)
        return results

    def _refresh(self, sender_id: int) -> _Route:
        """Read the sender once per call (another process may have edited it) and decrypt
        its password only when it changed; a password not bound to the sender's current
        destination is refused (CredentialNotBound) and the old route dropped."""
        sender = self._deps.get_sender(sender_id)
        with self._lock:
            self._gone.discard(sender_id)
            cached = self._routes.get(sender_id)
            if cached is not None and cached.serves(sender):
                return cached
        try:
            secret = self._deps.secret_for(sender)
        except PasswordUnreadable:
            with self._lock:
                self._routes.pop(sender_id, None)
            self.pool.forget(sender_id)
            raise
        try:
            route = _Route(sender, secret, self._rules)
        except ValueError as exc:  # a saved address the app's address rules now refuse
            raise InvalidSenderData({"from_address": str(exc)}) from None
        if cached is not None:
            self.pool.forget(sender_id)
        with self._lock:
            self._routes[sender_id] = route
        return route

    def _route(self, sender_id: int) -> _Route:
        with self._lock:
            if sender_id in self._gone:
                raise SenderNotFound(f"sender {sender_id} was deleted")
            route = self._routes.get(sender_id)
        if route is not None:
            return route
        try:
            return self._refresh(sender_id)
        except SenderNotFound:
            with self._lock:
                self._gone.add(sender_id)
            raise

    def _prepare(self, message: Message, route: _Route) -> _Envelope:
        """The message as it goes on the wire, made from a copy: the caller's object is
        never changed (outgoing.py says what the copy gets)."""
        message = detached_copy(message)
        route.headers.apply(message)
        self._deps.prepare_message(message, route.sender, "notification")
        recipients = envelope_recipients(message, self._rules)
        from_addr = route.headers.envelope_from
        data, smtputf8 = wire_bytes(message, (from_addr, *recipients), self._rules)
        return _Envelope(route.sender.version, message_id(message), from_addr, recipients,
                         data, smtputf8, None if smtputf8 or data.isascii() else message)

    def _audit(self, actor: str | None, sender_id: int, envelope: _Envelope | None,
               result: SendResult) -> None:
        if result.ok:
            event: MessageSent | MessageFailed = MessageSent(
                actor=actor, sender_id=sender_id, recipients=result.accepted,
                refused=tuple(result.refused))
        else:
            error = result.error
            stage = getattr(error, "stage", None) or (
                "sender_not_found" if isinstance(error, SenderNotFound) else "message")
            event = MessageFailed(actor=actor, sender_id=sender_id,
                                  recipients=envelope.recipients if envelope else (),
                                  stage=stage)
        self._deps.audit(event)



@dataclass
class _Job:
    """A prepared message and what befell it so far (the transport reads the envelope
    fields through the properties)."""

    index: int
    envelope: _Envelope
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


class _Worker:
    """One connection's share of a batch: streams jobs through pooled connections (the
    transport pipelines when it can), gives a job whose connection broke under it one
    transparent reconnect, retries temporary refusals a bounded number of times with
    backoff, and never sends again a job whose fate is unknown."""

    def __init__(self, mailer: Mailer, sender_id: int, prepared: Callable[[], _Job | None],
                 results: list[SendResult | None]) -> None:
        self._mailer = mailer
        self._sender_id = sender_id
        self._prepared = prepared
        self._results = results
        self._pending: deque[_Job] = deque()  # to send before taking new ones
        self._later: list[_Job] = []  # refused for now: after a backoff
        self._exhausted = False

    def run(self) -> None:
        while True:
            self._stream()
            if not self._later:
                return
            retries = max(job.retries for job in self._later)
            time.sleep(self._mailer._backoff * 2 ** (retries - 1))
            self._pending.extend(self._later)
            self._later.clear()

    def _next(self) -> _Job | None:
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
                route = self._mailer._route(self._sender_id)
            except (SenderNotFound, PasswordUnreadable, InvalidSenderData) as unusable:
                self._finish(job, error=unusable)
                continue
            if job.envelope.version != route.sender.version:  # never old headers, new server
                self._finish(job, error=ConcurrentUpdate(
                    f"sender {self._sender_id} was edited before this message went out; "
                    "not sent"))
                continue
            try:
                connection, _reused = self._mailer.pool.acquire(route, fresh=fresh)
            except DeliveryError as failure:
                self._finish(job, error=failure)
                continue
            self._pending.appendleft(job)
            broken = False
            for sent, outcome in connection.send_pipelined(self._jobs(route)):
                broken |= self._settle(sent, outcome) and not connection.usable
            self._mailer.pool.release(route, connection)
            fresh = broken  # a reused connection died under us: skip the other idle ones

    def _jobs(self, route: _Route) -> Iterator[_Job]:
        """Jobs for this connection; stops (keeping the job) at one prepared for another
        version of the sender, which needs a connection of its own."""
        while (job := self._next()) is not None:
            if job.envelope.version != route.sender.version:
                self._pending.appendleft(job)
                return
            yield job

    def _settle(self, job: _Job, outcome: dict[str, tuple[int, str]] | DeliveryError) -> bool:
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
        if outcome.temporary and job.retries < self._mailer._retries:
            job.retries += 1
            self._later.append(job)
            return False
        self._finish(job, error=outcome)
        return False

    def _finish(self, job: _Job, *, error: Exception) -> None:
        self._results[job.index] = SendResult(job.envelope.message_id, error=error)
