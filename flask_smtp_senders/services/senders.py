"""What an administrator (or the host's code) can do to senders, with its audit trail.

Changes are validated here whatever the caller did, encrypted before they reach the store,
and audited inside the store's transaction, so an audit hook that fails rolls them back.
The password is guarded here too: it is only ever read for the destination it is bound
to. Send Test Email and the connection check run in :mod:`.probe` (audited after the
fact: a message cannot be unsent); sending runs in :mod:`.delivery`.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

import pluggy

from ..addresses import AddressRules
from ..crypto import PasswordCipher
from ..destinations import is_metadata_name
from ..errors import (
    AuditFailed,
    InvalidSenderData,
    SenderNotFound,
)
from ..events import (
    AuditEvent,
    KeysRotated,
    SenderCreated,
    SenderDeleted,
    SenderUpdated,
    sender_changed,
)
from ..sealed import Credential, Secret
from ..settings import Settings
from ..smtp import transport
from ..storage.base import Sender, SenderStore, destination_of
from ..texts import message
from ..validation import SenderSettings, validate_settings
from . import credentials, probe
from .delivery import Mailer, MailerDeps, MailerSettings
from .dns_advice import DomainAdvisor
from .probe import ProbeResult
from .providers import checked_secret, with_secret_facts
from .tokens import TokenSource

log = logging.getLogger(__name__)


class SenderService:
    """Sender operations for one app; reach it as ``SMTPSenders.service``."""

    def __init__(self, settings: Settings, store: SenderStore, cipher: PasswordCipher,
                 plugin_manager: pluggy.PluginManager,
                 options: transport.TransportOptions) -> None:
        self.settings = settings
        #: The addresses this app allows (SMTP_SENDERS_SMTPUTF8,
        #: SMTP_SENDERS_ALLOW_INTERNAL_DOMAINS).
        self.address_rules = AddressRules(smtputf8=settings.smtputf8,
                                          internal_domains=settings.allow_internal_domains)
        self.store = store
        self.cipher = cipher
        self.plugin_manager = plugin_manager
        self.hooks = plugin_manager.hook
        self.transport_options = options
        #: What the pages, the API and the Celery task build for this app at first use
        #: (the rate limiters, the registered task), so that an app's whole state is this
        #: one object in ``app.extensions["smtp_senders"]``.
        self.extras: dict[str, Any] = {}
        self.extras_lock = threading.Lock()
        #: SPF and DMARC advice for a From Address (checks its settings now).
        self.domain_advisor = DomainAdvisor(settings, self.address_rules)

    def domain_advice(self, from_address: str) -> list[str]:
        """The From-domain advice sentences shown after a save and with a test or check
        result; empty when the advice is off or the address has no domain to ask about."""
        advice = self.domain_advisor.advise(from_address)
        return list(advice.lines) if advice else []

    @functools.cached_property
    def mailer(self) -> Mailer:
        """The host-facing sending API (``send`` / ``send_many``) with its pool."""
        # Each callable looks its target up on this service when called, as the Mailer
        # did when it held the service itself.
        deps = MailerDeps(
            get_sender=lambda sender_id: self.get_sender(sender_id),
            default_sender=lambda: self.default_sender(),
            credential_for=lambda sender: self.credential_for(sender),
            drop_token=lambda sender: self.tokens.drop(sender),
            actor=lambda: self.hooks.smtp_senders_actor(),
            prepare_message=lambda message, sender, purpose: (
                self.hooks.smtp_senders_prepare_message(
                    message=message, sender=sender, purpose=purpose)),
            audit=lambda event: self.audit_send(event),
        )
        return Mailer(deps, MailerSettings.from_settings(self.settings, self.transport_options,
                                                         self.address_rules),
                      changes_from=self)

    @functools.cached_property
    def tokens(self) -> TokenSource:
        """The OAuth2 senders' access tokens (cached per sender version)."""
        return TokenSource.for_app(self.store, self.cipher, self.transport_options,
                                   self.settings)

    @property
    def texts(self) -> Mapping[str, str]:
        """The user-facing texts (SMTP_SENDERS_MSG_*, SMTP_SENDERS_ADVICE_*)."""
        return self.settings.texts

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

    def audit_send(self, event: AuditEvent) -> None:
        """Audit a send, a test or a check after the fact: a failing audit hook is
        logged, never raised (what was sent cannot be unsent)."""
        try:
            self.hooks.smtp_senders_audit(event=event)
        except Exception:
            log.exception("smtp_senders_audit raised for %s", event.action)

    # -- reading --------------------------------------------------------------------

    def list_senders(self) -> list[Sender]:
        return self.store.list()

    def get_sender(self, sender_id: int) -> Sender:
        return self.store.get(sender_id)

    def password_problem(self, sender: Sender) -> str | None:
        """Why the stored password (or client secret, key) cannot be used now, as a
        message name (:func:`.credentials.problem`); None when it can."""
        return credentials.problem(self.cipher, sender)

    def password_readable(self, sender: Sender) -> bool:
        """True when the stored password can be used as it is."""
        return self.password_problem(sender) is None

    def secret_for(self, sender: Sender) -> Secret:
        """The sender's password (or client secret, key), for its current destination
        only (:func:`.credentials.secret`)."""
        return credentials.secret(self.cipher, self.texts, sender)

    def credential_for(self, sender: Sender, *, fresh: bool = False) -> Credential:
        """What the sender signs in with: its password, or an access token from its
        provider (:func:`.credentials.credential`; ``fresh``: not the cached one)."""
        return credentials.credential(self.cipher, self.texts, self.tokens, sender,
                                      fresh=fresh)

    # -- changes --------------------------------------------------------------------

    def _validated(self, settings: SenderSettings) -> SenderSettings:
        """Field rules, plus the destination policy for a Server Name that is an address or
        a cloud metadata service's name (any other name is checked each time it is
        resolved, at send time)."""
        settings = validate_settings(**asdict(settings), rules=self.address_rules)
        if is_metadata_name(settings.server_name):  # Case G4: never, whatever resolves
            raise InvalidSenderData({"server_name": message(self.texts, "destination_refused")})
        try:
            ipaddress.ip_address(settings.server_name)
        except ValueError:
            return settings
        allowed = self.transport_options.destination_allowed
        if not allowed(settings.server_name, settings.port, settings.server_name):
            raise InvalidSenderData({"server_name": message(self.texts, "destination_refused")})
        return settings

    def create_sender(self, settings: SenderSettings, password: str) -> Sender:
        settings = self._validated(settings)
        password = checked_secret(settings.provider_type, password)
        settings = with_secret_facts(settings, password)
        encrypted = self.cipher.encrypt(password)
        binding = self.cipher.bind(
            destination_of(settings), encrypted)
        actor = self._actor()
        fingerprint = self.cipher.save_fingerprint(asdict(settings), password)
        return self.store.add(settings, encrypted, before_commit=lambda sender: (
            self._audit_change(SenderCreated(actor=actor, sender_id=sender.id))),
            binding=binding, fingerprint=fingerprint)

    def update_sender(self, sender_id: int, expected_version: int, settings: SenderSettings,
                      password: str) -> Sender:
        """Save new settings; the password must be given again with every edit."""
        settings = self._validated(settings)
        password = checked_secret(settings.provider_type, password)
        settings = with_secret_facts(settings, password)
        current = self.store.get(sender_id)
        changed = [name for name, value in asdict(settings).items()
                   if getattr(current.settings, name) != value]
        # For the audit only, and without decrypting the stored password: its keyed
        # fingerprint tells whether the one typed is the same (no fingerprint: changed).
        if not self.cipher.fingerprint_matches(asdict(current.settings), password,
                                               current.settings_fingerprint):
            changed.append("password")
        actor = self._actor()
        encrypted = self.cipher.encrypt(password)
        updated = self.store.update(
            sender_id, expected_version, settings, encrypted,
            before_commit=lambda sender: self._audit_change(SenderUpdated(
                actor=actor, sender_id=sender.id, changed_fields=tuple(changed))),
            binding=self.cipher.bind(
                destination_of(settings),
                encrypted),
            fingerprint=self.cipher.save_fingerprint(asdict(settings), password),
        )
        sender_changed.send(self, sender_id=sender_id, deleted=False)
        return updated

    def delete_sender(self, sender_id: int, expected_version: int | None = None) -> None:
        actor = self._actor()
        self.store.delete(sender_id, expected_version, before_commit=lambda sender: (
            self._audit_change(SenderDeleted(actor=actor, sender_id=sender.id))))
        sender_changed.send(self, sender_id=sender_id, deleted=True)

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

        counts = self.store.reencrypt(self.cipher.rotate, before_commit=audit,
                                      progress=progress, rebind=self.cipher.rebind)
        sender_changed.send(self, sender_id=None, deleted=False)
        return counts

    # -- Send Test Email and the connection check (services/probe.py) -------------------

    def send_test_email(self, sender_id: int, recipient: str) -> ProbeResult:
        """Send the fixed test message to one address through the saved settings.

        Raises InvalidSenderData for a bad recipient and SenderNotFound for a missing
        sender; every failure of the send itself is a result, recorded and audited.
        """
        return probe.send_test_email(self, sender_id, recipient)

    def check_connection(self, sender_id: int, recipient: str | None = None) -> ProbeResult:
        """The dry run: resolve, connect, TLS, EHLO, AUTH, MAIL FROM (the From Address) and
        RCPT TO (``recipient``, or the From Address when it is None or blank), then RSET
        and QUIT. No DATA, so nothing is delivered.

        Raises InvalidSenderData for a bad recipient and SenderNotFound for a missing
        sender; a failure of the check itself is a result. Every result is audited
        (ConnectionChecked) and recorded on the sender (``last_check_at``,
        ``last_check_ok``, ``last_check_stage``, through the store's ``record_check``),
        whoever asked: the page, the API or ``flask smtp-senders check``. It never marks
        the sender tested: passing it says nothing about DATA.
        """
        return probe.check_connection(self, sender_id, recipient)
