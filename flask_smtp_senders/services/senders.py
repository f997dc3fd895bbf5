"""What an administrator (or the host's code) can do to senders, with its audit trail.

Changes are validated here whatever the caller did, encrypted before they reach the store,
and audited inside the store's transaction, so an audit hook that fails rolls them back.
Test sends are audited after the fact: a message cannot be unsent.
"""

from __future__ import annotations

import functools
import inspect
import ipaddress
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import pluggy

from ..crypto import PasswordCipher, Secret
from ..destinations import is_metadata_name
from ..errors import (
    AuditFailed,
    CredentialNotBound,
    DeliveryError,
    InvalidSenderData,
    PasswordUnreadable,
    SenderNotFound,
    StorageError,
)
from ..events import (
    AuditEvent,
    ConnectionChecked,
    KeysRotated,
    SenderCreated,
    SenderDeleted,
    SenderUpdated,
    TestEmailFailed,
    TestEmailSent,
)
from ..mail.headers import build_test_message
from ..mail.outgoing import seven_bit_bytes, wire_bytes
from ..settings import message
from ..smtp import transport
from ..smtp.diagnostics import Diagnosis, Trace
from ..storage.sqlalchemy import Sender, SenderStore, destination
from ..validation import (
    AddressRules,
    SenderSettings,
    validate_password,
    validate_recipient,
    validate_settings,
    wire_address,
)
from .delivery import Mailer, MailerDeps, MailerSettings
from .dns_advice import DomainAdvisor

log = logging.getLogger(__name__)


def _accepts(method: Callable[..., Any], keyword: str) -> bool:
    """Whether a store method takes ``keyword`` (by name or through ``**kwargs``): the
    fingerprint and version arguments are optional for stores written before them."""
    try:
        parameters = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False
    return keyword in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def _optional(method: Callable[..., Any], **values: Any) -> dict[str, Any]:
    """The keyword arguments among ``values`` that ``method`` accepts."""
    return {name: value for name, value in values.items() if _accepts(method, name)}


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of Send Test Email or of the connection check (the dry run): one type
    for both, as the pages, the API and the CLI show them alike."""

    __test__ = False  # not a pytest test class

    ok: bool
    #: The message to show, as it is.
    message: str
    #: Where it stopped (a transport stage, or "password"); None on success.
    stage: str | None = None
    #: What each stage did and one piece of advice; set for failures too.
    diagnosis: Diagnosis = field(kw_only=True)


#: The names each outcome had before they became one type (kept: public API).
TestEmailResult = ProbeResult
CheckResult = ProbeResult


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
        #: SPF and DMARC advice for a From Address (checks its settings now).
        self.domain_advisor = DomainAdvisor(config)

    @property
    def address_rules(self) -> AddressRules:
        """The addresses this app allows (SMTP_SENDERS_SMTPUTF8,
        SMTP_SENDERS_ALLOW_INTERNAL_DOMAINS), read from the config at each use."""
        return AddressRules.from_config(self.config)

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
            secret_for=lambda sender: self.secret_for(sender),
            actor=lambda: self.hooks.smtp_senders_actor(),
            prepare_message=lambda message, sender, purpose: (
                self.hooks.smtp_senders_prepare_message(
                    message=message, sender=sender, purpose=purpose)),
            audit=lambda event: self.audit_send(event),
        )
        return Mailer(deps, MailerSettings.from_config(self.config, self.transport_options))

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
        """Why the stored password cannot be used now, as a message name, decided without
        decrypting it: None, "password_reentry" (no configured key signed the token: wrong
        keys or corruption) or "password_unbound" (it is not bound to the sender's current
        settings). Either way it must be re-entered."""
        if not self.cipher.authentic(sender.password):
            return "password_reentry"
        if not self.cipher.verify(sender.destination, sender.password,
                                  sender.password_binding):
            return "password_unbound"
        return None

    def password_readable(self, sender: Sender) -> bool:
        """True when the stored password can be used as it is."""
        return self.password_problem(sender) is None

    def secret_for(self, sender: Sender) -> Secret:
        """The sender's password, for its current destination only.

        The binding stored with it must match the Server Name, Port, mode and Username
        about to be used, or the password is refused before it is even decrypted: a row
        changed behind our back (SQL, a faulty store) cannot send it anywhere else.
        Raises CredentialNotBound (a PasswordUnreadable), or PasswordUnreadable when no
        configured key signed the token at all (wrong keys, corruption: that is the
        message that helps then; either way nothing is decrypted or sent).
        """
        problem = self.password_problem(sender)
        if problem == "password_reentry":
            raise PasswordUnreadable("no configured key decrypts this sender's password")
        if problem == "password_unbound":
            log.warning("sender %s: the stored password is not bound to its current server "
                        "settings; it is not used until it is re-entered", sender.id)
            raise CredentialNotBound(
                f"sender {sender.id}: the stored password is not bound to these settings",
                message(self.config, "password_unbound"))
        return self.cipher.decrypt(sender.password)

    # -- changes --------------------------------------------------------------------

    def _validated(self, settings: SenderSettings) -> SenderSettings:
        """Field rules, plus the destination policy for a Server Name that is an address or
        a cloud metadata service's name (any other name is checked each time it is
        resolved, at send time)."""
        settings = validate_settings(**asdict(settings), rules=self.address_rules)
        if is_metadata_name(settings.server_name):  # Case G4: never, whatever resolves
            raise InvalidSenderData({"server_name": message(self.config, "destination_refused")})
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
        binding = self.cipher.bind(
            destination(settings.server_name, settings.port, settings.username), encrypted)
        actor = self._actor()
        fingerprint = self.cipher.save_fingerprint(asdict(settings), password)
        return self.store.add(settings, encrypted, before_commit=lambda sender: (
            self._audit_change(SenderCreated(actor=actor, sender_id=sender.id))),
            binding=binding, **_optional(self.store.add, fingerprint=fingerprint))

    def update_sender(self, sender_id: int, expected_version: int, settings: SenderSettings,
                      password: str) -> Sender:
        """Save new settings; the password must be given again with every edit."""
        settings = self._validated(settings)
        password = validate_password(password)
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
                destination(settings.server_name, settings.port, settings.username),
                encrypted),
            **_optional(self.store.update,
                        fingerprint=self.cipher.save_fingerprint(asdict(settings), password)),
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

        return self.store.reencrypt(self.cipher.rotate, before_commit=audit, progress=progress,
                                    rebind=self.cipher.rebind)

    # -- Send Test Email ------------------------------------------------------------

    def send_test_email(self, sender_id: int, recipient: str) -> ProbeResult:
        """Send the fixed test message to one address through the saved settings.

        Raises InvalidSenderData for a bad recipient and SenderNotFound for a missing
        sender; every failure of the send itself is a result, recorded and audited.
        """
        recipient = validate_recipient(recipient, self.address_rules)
        sender = self.store.get(sender_id)
        actor = self._actor()
        trace = Trace()
        try:
            self._deliver_test(sender, recipient, trace)
        except CredentialNotBound:
            result = ProbeResult(False, message(self.config, "password_unbound"),
                                     "password", diagnosis=Diagnosis.password_unusable())
        except PasswordUnreadable:
            result = ProbeResult(False, message(self.config, "password_reentry"),
                                     "password", diagnosis=Diagnosis.password_unusable())
        except DeliveryError as failure:
            result = ProbeResult(False, failure.user_message, failure.stage,
                                     diagnosis=trace.diagnosis(self.config))
        else:
            result = ProbeResult(True, message(self.config, "test_success",
                                                   recipient=recipient),
                                     diagnosis=trace.diagnosis(self.config))
        try:
            self._record_test(sender, result.ok)
        except StorageError:  # the send happened; its result still goes to the user
            log.warning("could not record the test result of sender %s", sender.id)
        if result.ok:
            self.audit_send(TestEmailSent(actor=actor, sender_id=sender.id,
                                           recipient=recipient))
        else:
            self.audit_send(TestEmailFailed(actor=actor, sender_id=sender.id,
                                             recipient=recipient, stage=result.stage or ""))
        return result

    def _record_test(self, sender: Sender, ok: bool) -> None:
        """Record the result on the version that was tested (compare-and-set on
        ``sender.version``): an edit saved while the test ran is not marked tested, and
        the result of the old settings is not shown on the new ones. A passed test marks
        the tested version's fingerprint as tested (a row saved before fingerprints
        existed gets one now, from the password the test used)."""
        record = self.store.record_test
        when = datetime.now(timezone.utc)
        if not _accepts(record, "version"):  # a store without compare-and-set
            record(sender.id, ok, when)
            return
        fingerprint = sender.settings_fingerprint
        if ok and fingerprint is None:
            try:
                fingerprint = self.cipher.fingerprint(asdict(sender.settings),
                                                      self.secret_for(sender))
            except PasswordUnreadable:  # it was just read; only a key change gets here
                fingerprint = None
        recorded = record(sender.id, ok, when, version=sender.version,
                          **_optional(record, fingerprint=fingerprint))
        if recorded is False:
            log.info("sender %s was saved or deleted while it was tested; the result of "
                     "the old settings is not recorded", sender.id)

    def _deliver_test(self, sender: Sender, recipient: str, trace: Trace | None = None) -> None:
        secret = self.secret_for(sender)
        settings = sender.settings
        rules = self.address_rules
        from_address = _saved_wire_address("From Address", settings.from_address, rules)
        if settings.reply_to_address:  # checked as the From Address is, before connecting
            _saved_wire_address("Reply-To Address", settings.reply_to_address, rules)
        to_address = wire_address(recipient, rules)
        test_message = build_test_message(
            settings, recipient,
            message(self.config, "test_subject"), message(self.config, "test_body"),
            rules=rules,
        )
        self.hooks.smtp_senders_prepare_message(message=test_message, sender=sender,
                                                purpose="test")
        try:  # what the hook added is checked as the sending API checks a host's message
            data, utf8 = wire_bytes(test_message, (from_address, to_address), rules)
        except InvalidSenderData as invalid:
            raise DeliveryError("data", message(self.config, "data_failed")) from invalid
        options = self.transport_options
        deadline = transport.Deadline(options.deadline, options.operation_timeout)
        with transport.connect(sender.server, secret, options, deadline,
                               trace) as connection:
            connection.send(from_address, [to_address], data, deadline, trace=trace,
                            smtputf8=utf8, seven_bit=lambda: seven_bit_bytes(test_message))

    # -- connection check -----------------------------------------------------------

    def check_connection(self, sender_id: int, recipient: str | None = None) -> ProbeResult:
        """The dry run: resolve, connect, TLS, EHLO, AUTH, MAIL FROM (the From Address) and
        RCPT TO (``recipient``, or the From Address when it is None or blank), then RSET
        and QUIT. No DATA, so nothing is delivered.

        Raises InvalidSenderData for a bad recipient and SenderNotFound for a missing
        sender; a failure of the check itself is a result. Every result is audited
        (ConnectionChecked) and recorded on the sender (``last_check_at``,
        ``last_check_ok``, ``last_check_stage``, through the store's ``record_check``
        when it has one), whoever asked: the page, the API or ``flask smtp-senders
        check``. It never marks the sender tested: passing it says nothing about DATA.
        """
        if recipient is not None and recipient.strip(" \t"):
            recipient = validate_recipient(recipient, self.address_rules)
        else:
            recipient = None
        sender = self.store.get(sender_id)
        actor = self._actor()
        result = self._check(sender, recipient)
        self._record_check(sender, result)
        self.audit_send(ConnectionChecked(actor=actor, sender_id=sender.id,
                                           outcome="success" if result.ok else "failure",
                                           stage=result.stage or ""))
        return result

    def _record_check(self, sender: Sender, result: ProbeResult) -> None:
        """The check's outcome on the sender; a store failure loses the record, never
        the result (the check ran)."""
        record = getattr(self.store, "record_check", None)
        if record is None:
            return
        try:
            record(sender.id, result.ok, datetime.now(timezone.utc), result.stage)
        except StorageError:
            log.warning("could not record the connection check of sender %s", sender.id)

    def _check(self, sender: Sender, recipient: str | None) -> ProbeResult:
        trace = Trace()
        try:
            self._probe(sender, recipient, trace)
        except PasswordUnreadable as unusable:
            reason = ("password_unbound" if isinstance(unusable, CredentialNotBound)
                      else "password_reentry")
            return ProbeResult(False, message(self.config, reason), "password",
                               diagnosis=Diagnosis.password_unusable())
        except DeliveryError as failure:
            return ProbeResult(False, failure.user_message, failure.stage,
                               diagnosis=trace.diagnosis(self.config))
        return ProbeResult(True, message(self.config, "check_success"),
                           diagnosis=trace.diagnosis(self.config))

    def _probe(self, sender: Sender, recipient: str | None, trace: Trace) -> None:
        secret = self._check_secret(sender)
        rules = self.address_rules
        from_address = _saved_wire_address("From Address", sender.settings.from_address, rules)
        to_address = wire_address(recipient, rules) if recipient else from_address
        options = self.transport_options
        deadline = transport.Deadline(options.deadline, options.operation_timeout)
        with transport.connect(sender.server, secret, options, deadline,
                               trace) as connection:
            connection.dry_run(from_address, [to_address], deadline, trace)

    def _check_secret(self, sender: Sender) -> Secret:
        """The password for the connection check: its only read of the stored one, the
        same guarded read Send Test Email uses."""
        return self.secret_for(sender)


def _saved_wire_address(label: str, address: str, rules: AddressRules) -> str:
    """The wire form of a saved address; one saved before the app's address rules were
    tightened fails the send before anything is sent, its reason naming the setting."""
    try:
        return wire_address(address, rules)
    except ValueError as exc:
        raise DeliveryError("sender", f"{label}: {exc}") from None
