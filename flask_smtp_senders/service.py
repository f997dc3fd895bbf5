"""What an administrator (or the host's code) can do to senders, with its audit trail.

Changes are validated here whatever the caller did, encrypted before they reach the store,
and audited inside the store's transaction, so an audit hook that fails rolls them back.
Test sends are audited after the fact: a message cannot be unsent.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pluggy

from . import transport
from .config import message
from .crypto import PasswordCipher
from .errors import (
    AuditFailed,
    DeliveryError,
    InvalidSenderData,
    PasswordUnreadable,
    SenderNotFound,
    StorageError,
)
from .events import (
    AuditEvent,
    KeysRotated,
    SenderCreated,
    SenderDeleted,
    SenderUpdated,
    TestEmailFailed,
    TestEmailSent,
)
from .fastmail import serialise
from .messages import build_test_message
from .store import Sender, SenderStore
from .validation import (
    SenderSettings,
    ascii_address,
    validate_password,
    validate_recipient,
    validate_settings,
)

if TYPE_CHECKING:
    from .sending import Mailer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TestEmailResult:
    """The outcome of Send Test Email, with the message to show as it is."""

    __test__ = False  # not a pytest test class

    ok: bool
    message: str
    #: Where it stopped (a transport stage, or "password"); None on success.
    stage: str | None = None


class SenderService:
    """Sender operations for one app; reach it as ``SMTPSenders.service``."""

    def __init__(self, config: dict[str, Any], store: SenderStore, cipher: PasswordCipher,
                 plugin_manager: pluggy.PluginManager,
                 options: transport.TransportOptions) -> None:
        self.config = config
        self.store = store
        self.cipher = cipher
        self.plugin_manager = plugin_manager
        self.hooks = plugin_manager.hook
        self.transport_options = options

    @functools.cached_property
    def mailer(self) -> Mailer:
        """The host-facing sending API (``send`` / ``send_many``) with its pool."""
        from .sending import Mailer

        return Mailer(self)

    # -- authorisation and audit ------------------------------------------------------

    def authorize(self, action: str, sender_id: int | None = None) -> bool:
        """Ask the hook; no answer, or an error, means no."""
        try:
            answer = self.hooks.smtp_senders_authorize(action=action, sender_id=sender_id)
        except Exception:
            log.exception("smtp_senders_authorize raised; denying %s", action)
            return False
        return answer is True

    def _actor(self) -> str | None:
        return self.hooks.smtp_senders_actor()

    def _audit_change(self, event: AuditEvent) -> None:
        try:
            self.hooks.smtp_senders_audit(event=event)
        except Exception:
            log.exception("smtp_senders_audit raised for %s; rolling back", event.action)
            raise AuditFailed(f"the audit hook failed for {event.action}") from None

    def _audit_send(self, event: AuditEvent) -> None:
        try:
            self.hooks.smtp_senders_audit(event=event)
        except Exception:
            log.exception("smtp_senders_audit raised for %s", event.action)

    # -- reading --------------------------------------------------------------------

    def list_senders(self) -> list[Sender]:
        return self.store.list()

    def get_sender(self, sender_id: int) -> Sender:
        return self.store.get(sender_id)

    def password_readable(self, sender: Sender) -> bool:
        """False when no configured key decrypts it: the password must be re-entered."""
        return self.cipher.can_decrypt(sender.password)

    # -- changes --------------------------------------------------------------------

    def _validated(self, settings: SenderSettings) -> SenderSettings:
        """Field rules, plus the destination policy for a Server Name that is an address
        (a name is checked each time it is resolved, at send time)."""
        settings = validate_settings(**asdict(settings))
        try:
            ipaddress.ip_address(settings.server_name)
        except ValueError:
            return settings
        allowed = self.transport_options.destination_allowed
        if not allowed(settings.server_name, settings.port, settings.server_name):
            raise InvalidSenderData({"server_name": message(self.config, "destination_refused")})
        return settings

    def create_sender(self, settings: SenderSettings, password: str) -> Sender:
        settings = self._validated(settings)
        encrypted = self.cipher.encrypt(validate_password(password))
        actor = self._actor()
        return self.store.add(settings, encrypted, before_commit=lambda sender: (
            self._audit_change(SenderCreated(actor=actor, sender_id=sender.id))))

    def update_sender(self, sender_id: int, expected_version: int, settings: SenderSettings,
                      password: str) -> Sender:
        """Save new settings; the password must be given again with every edit."""
        settings = self._validated(settings)
        password = validate_password(password)
        current = self.store.get(sender_id)
        changed = [name for name, value in asdict(settings).items()
                   if getattr(current.settings, name) != value]
        try:
            if self.cipher.decrypt(current.password).reveal() != password:
                changed.append("password")
        except PasswordUnreadable:
            changed.append("password")
        actor = self._actor()
        updated = self.store.update(
            sender_id, expected_version, settings, self.cipher.encrypt(password),
            before_commit=lambda sender: self._audit_change(SenderUpdated(
                actor=actor, sender_id=sender.id, changed_fields=tuple(changed))),
        )
        self.mailer.forget(sender_id)
        return updated

    def delete_sender(self, sender_id: int, expected_version: int | None = None) -> None:
        actor = self._actor()
        self.store.delete(sender_id, expected_version, before_commit=lambda sender: (
            self._audit_change(SenderDeleted(actor=actor, sender_id=sender.id))))
        self.mailer.forget(sender_id, deleted=True)

    def set_default_sender(self, sender_id: int) -> Sender:
        """Make ``sender_id`` the sender the host's messages use when none is named."""
        actor = self._actor()
        return self.store.set_default(sender_id, before_commit=lambda sender: (
            self._audit_change(SenderUpdated(actor=actor, sender_id=sender.id,
                                             changed_fields=("default",)))))

    def default_sender(self) -> Sender:
        """The default sender; raises SenderNotFound when there is none."""
        for sender in self.store.list():
            if sender.is_default:
                return sender
        raise SenderNotFound("no default sender: add one or choose one on the Senders page")

    def rotate_keys(self, progress: Callable[[int], None] | None = None) -> tuple[int, int]:
        """Re-encrypt every password under the first key; returns (rotated, unreadable).

        ``progress`` hears the number of senders processed so far (for a progress bar).
        """
        actor = self._actor()

        def audit(done: int, bad: int) -> None:
            self._audit_change(KeysRotated(actor=actor, sender_id=None, rotated=done,
                                           unreadable=bad))

        return self.store.reencrypt(self.cipher.rotate, before_commit=audit, progress=progress)

    # -- Send Test Email ------------------------------------------------------------

    def send_test_email(self, sender_id: int, recipient: str) -> TestEmailResult:
        """Send the fixed test message to one address through the saved settings.

        Raises InvalidSenderData for a bad recipient and SenderNotFound for a missing
        sender; every failure of the send itself is a result, recorded and audited.
        """
        recipient = validate_recipient(recipient)
        sender = self.store.get(sender_id)
        actor = self._actor()
        try:
            self._deliver_test(sender, recipient)
        except PasswordUnreadable:
            result = TestEmailResult(False, message(self.config, "password_reentry"),
                                     "password")
        except DeliveryError as failure:
            result = TestEmailResult(False, failure.user_message, failure.stage)
        else:
            result = TestEmailResult(True, message(self.config, "test_success",
                                                   recipient=recipient))
        try:
            self.store.record_test(sender.id, result.ok, datetime.now(timezone.utc))
        except StorageError:  # the send happened; its result still goes to the user
            log.warning("could not record the test result of sender %s", sender.id)
        if result.ok:
            self._audit_send(TestEmailSent(actor=actor, sender_id=sender.id,
                                           recipient=recipient))
        else:
            self._audit_send(TestEmailFailed(actor=actor, sender_id=sender.id,
                                             recipient=recipient, stage=result.stage or ""))
        return result

    def _deliver_test(self, sender: Sender, recipient: str) -> None:
        secret = self.cipher.decrypt(sender.password)
        settings = sender.settings
        test_message = build_test_message(
            settings, recipient,
            message(self.config, "test_subject"), message(self.config, "test_body"),
        )
        self.hooks.smtp_senders_prepare_message(message=test_message, sender=sender,
                                                purpose="test")
        data = serialise(test_message)
        options = self.transport_options
        deadline = transport.Deadline(options.deadline, options.operation_timeout)
        with transport.connect(sender.server, secret, options, deadline) as connection:
            connection.send(ascii_address(settings.from_address), [ascii_address(recipient)],
                            data, deadline)
