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
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import TYPE_CHECKING

from flask import current_app

from . import transport
from .crypto import Secret
from .errors import ConcurrentUpdate, DeliveryError, InvalidSenderData, SenderNotFound
from .events import MessageFailed, MessageSent
from .fastmail import serialise
from .messages import SenderHeaders
from .store import Sender
from .validation import ascii_address

if TYPE_CHECKING:
    from .service import SenderService

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SendResult:
    """What happened to one message."""

    message_id: str | None
    #: Recipients the server accepted.
    accepted: tuple[str, ...] = ()
    #: Recipients the server refused while accepting others: address -> (code, reply).
    refused: Mapping[str, tuple[int, str]] = field(default_factory=dict)
    #: Why nothing was sent (None on success): a DeliveryError, SenderNotFound, or the
    #: error that stopped the message being prepared (InvalidSenderData, a hook's).
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class _Route:
    """One version of a sender, with its password decrypted once."""

    sender: Sender
    secret: Secret = field(repr=False)
    headers: SenderHeaders = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", SenderHeaders(self.sender.settings))

    @property
    def key(self) -> tuple[int, int]:
        return self.sender.id, self.sender.version


@dataclass(frozen=True)
class _Envelope:
    #: The sender version whose headers the message carries.
    version: int
    message_id: str | None
    from_addr: str
    recipients: tuple[str, ...]
    data: bytes = field(repr=False)


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

    def __init__(self, service: SenderService) -> None:
        config = service.config
        self._service = service
        self.pool = ConnectionPool(service.transport_options,
                                   float(config["SMTP_SENDERS_POOL_IDLE_TIMEOUT"]))
        self._max_connections = int(config["SMTP_SENDERS_MAX_CONNECTIONS"])
        self._retries = int(config["SMTP_SENDERS_SEND_RETRIES"])
        self._backoff = float(config["SMTP_SENDERS_RETRY_BACKOFF"])
        self._lock = threading.Lock()
        self._routes: dict[int, _Route] = {}
        self._gone: set[int] = set()

    # -- public API ---------------------------------------------------------------

    def send(self, message: EmailMessage, sender: int | None = None) -> SendResult:
        """Send one message through ``sender`` (an id; None: the default sender); raises
        DeliveryError or SenderNotFound when nothing was sent."""
        result = self.send_many([message], sender)[0]
        if result.error is not None:
            raise result.error
        return result

    def send_many(self, messages: Iterable[EmailMessage],
                  sender: int | None = None) -> list[SendResult]:
        """Send a batch over up to SMTP_SENDERS_MAX_CONNECTIONS parallel connections; one
        result per message, in order. Failures are results, not exceptions.

        Each connection prepares (serialises) its next message while the server is busy
        with the current one, so serialisation mostly hides behind the network.
        """
        sender_id = self._sender_id(sender)
        self._refresh(sender_id)
        items = list(messages)
        envelopes: list[_Envelope | None] = [None] * len(items)
        results: list[SendResult | None] = [None] * len(items)
        counter = itertools.count()
        counter_lock = threading.Lock()

        def take() -> int | None:
            with counter_lock:
                index = next(counter)
            return index if index < len(items) else None

        def prepare(index: int | None) -> _Envelope | SendResult | None:
            if index is None:
                return None
            try:
                envelopes[index] = self._prepare(items[index], self._route(sender_id))
            except Exception as exc:  # a bad message or a failing hook: that message fails
                log.warning("message %s could not be prepared: %s", index, type(exc).__name__)
                return SendResult(None, error=exc)
            return envelopes[index]

        def work() -> None:
            index = take()
            ready = prepare(index)
            while index is not None:
                following = take()
                lookahead: list[_Envelope | SendResult | None] = []

                def ahead(following: int | None = following,
                          lookahead: list[_Envelope | SendResult | None] = lookahead) -> None:
                    if not lookahead:
                        lookahead.append(prepare(following))

                if isinstance(ready, _Envelope):
                    results[index] = self._deliver(sender_id, ready, ahead)
                else:
                    results[index] = ready
                ahead()
                index, ready = following, lookahead[0]

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
        actor = self._service.hooks.smtp_senders_actor()
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
            return self._service.default_sender().id
        return int(sender)

    def _refresh(self, sender_id: int) -> _Route:
        """Read the sender once per call (another process may have edited it) and decrypt
        its password only when its version changed."""
        sender = self._service.get_sender(sender_id)
        with self._lock:
            self._gone.discard(sender_id)
            cached = self._routes.get(sender_id)
            if cached is not None and cached.sender.version == sender.version:
                return cached
        route = _Route(sender, self._service.cipher.decrypt(sender.password))
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

    def _prepare(self, message: EmailMessage, route: _Route) -> _Envelope:
        route.headers.apply(message)
        self._service.hooks.smtp_senders_prepare_message(
            message=message, sender=route.sender, purpose="notification")
        recipients = tuple(
            ascii_address(address.addr_spec)
            for name in ("To", "Cc", "Bcc")
            for header in message.get_all(name, [])
            for address in header.addresses
        )
        if not recipients:
            raise InvalidSenderData({"recipients": "The message has no recipient."})
        del message["Bcc"]
        return _Envelope(route.sender.version, message["Message-ID"],
                         route.headers.envelope_from, recipients, serialise(message))

    def _deliver(self, sender_id: int, envelope: _Envelope,
                 while_waiting: Callable[[], None] | None = None) -> SendResult:
        reconnected, retries = False, 0
        while True:
            try:
                route = self._route(sender_id)
            except SenderNotFound as gone:
                return SendResult(envelope.message_id, error=gone)
            if route.sender.version != envelope.version:  # never old headers, new server
                return SendResult(envelope.message_id, error=ConcurrentUpdate(
                    f"sender {sender_id} was edited before this message went out; not sent"))
            try:
                connection, reused = self.pool.acquire(route, fresh=reconnected)
            except DeliveryError as failure:
                return SendResult(envelope.message_id, error=failure)
            try:
                refused = connection.send(envelope.from_addr, envelope.recipients,
                                          envelope.data, while_waiting=while_waiting)
            except DeliveryError as failure:
                self.pool.release(route, connection)
                if failure.delivery_unknown:
                    return SendResult(envelope.message_id, error=failure)
                if not reconnected and (failure.code == 421 or (reused and failure.code is None)):
                    reconnected = True  # closed while idle, or told to go away: once more
                    continue
                if failure.temporary and retries < self._retries:
                    retries += 1
                    time.sleep(self._backoff * 2 ** (retries - 1))
                    continue
                return SendResult(envelope.message_id, error=failure)
            self.pool.release(route, connection)
            accepted = tuple(r for r in envelope.recipients if r not in refused)
            return SendResult(envelope.message_id, accepted, refused)

    def _audit(self, actor: str | None, sender_id: int, envelope: _Envelope | None,
               result: SendResult) -> None:
        if result.ok:
            event: MessageSent | MessageFailed = MessageSent(
                actor=actor, sender_id=sender_id, recipients=result.accepted,
                refused=tuple(result.refused))
        else:
            stage = getattr(result.error, "stage", "sender_not_found")
            event = MessageFailed(actor=actor, sender_id=sender_id,
                                  recipients=envelope.recipients if envelope else (),
                                  stage=stage)
        self._service._audit_send(event)

