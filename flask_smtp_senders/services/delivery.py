"""The host app's own notifications through a saved sender: ``send`` and ``send_many``.

The Mailer prepares each message from a copy, hands the batch to parallel workers over
pooled connections (batch.py: reconnects, retries, never a message twice) and audits
every result. Routes and connections are kept per sender version (pool.py), so no single
message ever mixes old and new settings; the Mailer hears of edits, deletes and key
rotations made in this process through the :data:`~flask_smtp_senders.events.sender_changed`
signal, and of those made elsewhere when it reads the sender at each call.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.message import EmailMessage, Message

from flask import current_app

from ..addresses import AddressRules
from ..errors import DeliveryError, InvalidSenderData, PasswordUnreadable, SenderNotFound
from ..events import AuditEvent, MessageFailed, MessageSent, sender_changed
from ..mail.headers import message_id
from ..mail.outgoing import detached_copy, envelope_recipients, wire_bytes
from ..sealed import Credential
from ..settings import Settings
from ..smtp import transport
from ..storage.base import Sender
from .batch import Envelope, Job, SendResult, Worker
from .pool import ConnectionPool, Route, RouteCache

__all__ = ["Mailer", "MailerDeps", "MailerSettings", "SendResult"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MailerDeps:
    """What a Mailer asks of the rest of the extension, handed to it at construction
    (this module imports nothing that uses it). Each is called at the moment it is needed."""

    #: The sender as stored now; raises SenderNotFound.
    get_sender: Callable[[int], Sender]
    #: The default sender; raises SenderNotFound when there is none.
    default_sender: Callable[[], Sender]
    #: The sender's password for its current destination, or its OAuth2 access token
    #: (cached, fetched when needed); raises PasswordUnreadable (CredentialNotBound), or
    #: DeliveryError (stage "token") when the provider gives no token.
    credential_for: Callable[[Sender], Credential]
    #: Forget the sender's cached access token (a server refused it).
    drop_token: Callable[[Sender], None]
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
    def from_settings(cls, settings: Settings, options: transport.TransportOptions,
                      rules: AddressRules) -> MailerSettings:
        return cls(options,
                   idle_timeout=settings.pool_idle_timeout,
                   max_connections=settings.max_connections,
                   retries=settings.send_retries, backoff=settings.retry_backoff,
                   rules=rules)


class Mailer:
    """``send`` and ``send_many`` for one app; reach it as ``SMTPSenders.service.mailer``.

    ``changes_from`` is the object that sends :data:`~flask_smtp_senders.events.sender_changed`
    for this app's senders (its SenderService): the Mailer listens to that object only,
    and weakly, so it neither hears other apps nor outlives its own.
    """

    def __init__(self, deps: MailerDeps, settings: MailerSettings, *,
                 changes_from: object | None = None) -> None:
        self._deps = deps
        self.pool = ConnectionPool(settings.transport_options, settings.idle_timeout)
        self.routes = RouteCache(self.pool, deps.get_sender, deps.credential_for,
                                 settings.rules, drop_token=deps.drop_token)
        self._max_connections = settings.max_connections
        self._retries = settings.retries
        self._backoff = settings.backoff
        self._rules = settings.rules
        if changes_from is not None:
            sender_changed.connect(self._sender_changed, sender=changes_from, weak=True)

    # -- public API ---------------------------------------------------------------

    def send(self, message: EmailMessage, sender: int | None = None) -> SendResult:
        """Send one message through ``sender`` (an id; None: the default sender); raises
        DeliveryError (its ``stage`` says where; "token" when an OAuth2 sender got no
        access token), InvalidSenderData (the message cannot go as it is: no recipient,
        or an invalid address, named with its header), SenderNotFound or
        PasswordUnreadable (CredentialNotBound) when nothing was sent."""
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
            self.routes.refresh(sender_id)
        except (PasswordUnreadable, InvalidSenderData, DeliveryError) as unusable:
            return self._refuse_all(sender_id, len(items), unusable)  # nothing can go
        envelopes: list[Envelope | None] = [None] * len(items)
        results: list[SendResult | None] = [None] * len(items)
        counter = itertools.count()
        counter_lock = threading.Lock()
        routes = self.routes

        def prepared() -> Job | None:
            """The next message of the batch, prepared; None when there are no more."""
            while True:
                with counter_lock:
                    index = next(counter)
                if index >= len(items):
                    return None
                try:
                    envelopes[index] = self._prepare(items[index], routes.route(sender_id))
                except Exception as exc:  # a bad message or a failing hook: it fails alone
                    log.warning("message %s could not be prepared: %s", index,
                                type(exc).__name__)
                    results[index] = SendResult(None, error=exc)
                    continue
                return Job(index, envelopes[index])

        def work() -> None:
            Worker(routes, self.pool, sender_id, prepared, results,
                   retries=self._retries, backoff=self._backoff).run()

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

    def forget(self, sender_id: int | None, *, deleted: bool = False) -> None:
        """Drop what is kept for a sender edited or deleted in this process (None: for
        every sender, as after a key rotation): its route and pooled connections."""
        self.routes.forget(sender_id, deleted=deleted)

    def close(self) -> None:
        """Close the pooled connections (the Mailer stays usable)."""
        self.pool.close()

    # -- internals ----------------------------------------------------------------

    def _sender_changed(self, _source: object, *, sender_id: int | None = None,
                        deleted: bool = False, **_extra: object) -> None:
        """The ``sender_changed`` receiver (no ``sender_id``: every sender); it runs in
        the thread that saved the change, after the commit, and must not raise."""
        self.forget(sender_id, deleted=deleted)

    def _sender_id(self, sender: int | Sender | None) -> int:
        if isinstance(sender, Sender):
            return sender.id
        if sender is None:
            return self._deps.default_sender().id
        return int(sender)

    def _refuse_all(self, sender_id: int, count: int,
                    error: PasswordUnreadable | InvalidSenderData | DeliveryError
                    ) -> list[SendResult]:
        """One failed, audited result per message, when the password (or a saved address)
        cannot be used, or the provider gives no access token."""
        results = [SendResult(None, error=error) for _ in range(count)]
        actor = self._deps.actor()
        for result in results:
            self._audit(actor, sender_id, None, result)
        return results

    def _prepare(self, message: Message, route: Route) -> Envelope:
        """The message as it goes on the wire, made from a copy: the caller's object is
        never changed (outgoing.py says what the copy gets)."""
        message = detached_copy(message)
        route.headers.apply(message)
        self._deps.prepare_message(message, route.sender, "notification")
        recipients = envelope_recipients(message, self._rules)
        from_addr = route.headers.envelope_from
        data, smtputf8 = wire_bytes(message, (from_addr, *recipients), self._rules)
        return Envelope(route.sender.version, message_id(message), from_addr, recipients,
                        data, smtputf8, None if smtputf8 or data.isascii() else message)

    def _audit(self, actor: str | None, sender_id: int, envelope: Envelope | None,
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
