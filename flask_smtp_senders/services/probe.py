"""Send Test Email and the connection check: one flow, two kinds of probe.

Both read the saved sender, take its password through the one guarded read, talk to its
server under a trace, and make every failure of the exchange a result. The result is
recorded on the sender and audited after the fact (what was sent cannot be unsent), and
a store failure while recording loses the record, never the result. The kinds differ
only in what they exchange (a test message, or the envelope alone), their success
message, what they record (the test state, or the last check) and their audit event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Protocol

import pluggy

from ..addresses import AddressRules, wire_address
from ..crypto import PasswordCipher
from ..errors import (
    DeliveryError,
    InvalidSenderData,
    PasswordUnreadable,
    StorageError,
    TokenUnavailable,
)
from ..events import AuditEvent, ConnectionChecked, TestEmailFailed, TestEmailSent
from ..mail.headers import build_test_message
from ..mail.outgoing import seven_bit_bytes, wire_bytes
from ..sealed import Credential, Secret
from ..smtp import transport
from ..smtp.diagnosis import Diagnosis
from ..smtp.trace import Trace
from ..storage.base import Sender, SenderStore
from ..texts import message
from ..validation import validate_recipient
from . import token_stage

log = logging.getLogger(__name__)


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


class ProbeHost(token_stage.CredentialHost, Protocol):
    """What a probe uses of the sender service (a SenderService is one)."""

    store: SenderStore
    cipher: PasswordCipher
    hooks: pluggy.HookRelay
    transport_options: transport.TransportOptions

    @property
    def address_rules(self) -> AddressRules: ...

    def secret_for(self, sender: Sender) -> Secret: ...

    def password_problem(self, sender: Sender) -> str | None: ...

    def audit_send(self, event: AuditEvent) -> None: ...


#: The exchange itself, on an open connection, within the deadline, traced.
Exchange = Callable[[transport.Connection, transport.Deadline, Trace], None]


@dataclass(frozen=True)
class ProbeKind:
    """What tells Send Test Email and the connection check apart. The recipient is None
    only for a check addressed to the From Address: a test email always has one."""

    #: Checks the saved addresses and builds what goes on the wire, before connecting
    #: (raises DeliveryError for what cannot be sent).
    prepare: Callable[[ProbeHost, Sender, str | None], Exchange]
    #: The message of a passed probe, from the texts and the recipient.
    success: Callable[[Mapping[str, str], str | None], str]
    #: Keeps the result on the sender; may raise StorageError.
    record: Callable[[ProbeHost, Sender, ProbeResult], None]
    #: The warning logged (with the sender id) when ``record`` failed.
    unrecorded: str
    #: The audit event: (actor, sender, recipient, result) -> event.
    event: Callable[[str | None, Sender, str | None, ProbeResult], AuditEvent]


def send_test_email(host: ProbeHost, sender_id: int, recipient: str) -> ProbeResult:
    """Send the fixed test message to one address through the saved settings (see
    ``SenderService.send_test_email``)."""
    recipient = validate_recipient(recipient, host.address_rules)
    return run(host, TEST_EMAIL, sender_id, recipient)


def check_connection(host: ProbeHost, sender_id: int,
                     recipient: str | None = None) -> ProbeResult:
    """The dry run, to ``recipient`` or, when it is None or blank, to the From Address
    (see ``SenderService.check_connection``)."""
    if recipient is not None and recipient.strip(" \t"):
        recipient = validate_recipient(recipient, host.address_rules)
    else:
        recipient = None
    return run(host, CONNECTION_CHECK, sender_id, recipient)


def run(host: ProbeHost, kind: ProbeKind, sender_id: int,
        recipient: str | None) -> ProbeResult:
    """Probe the saved sender ``sender_id``, record the result and audit it.

    Raises SenderNotFound for a missing sender; every failure of the exchange is a
    result."""
    sender = host.store.get(sender_id)
    actor = host.hooks.smtp_senders_actor()
    result = _exchange(host, kind, sender, recipient)
    try:
        kind.record(host, sender, result)
    except StorageError:  # the probe ran; its result still goes to the user
        log.warning(kind.unrecorded, sender.id)
    host.audit_send(kind.event(actor, sender, recipient, result))
    return result


def _exchange(host: ProbeHost, kind: ProbeKind, sender: Sender,
              recipient: str | None) -> ProbeResult:
    """The probe's one exchange; a server that refuses the sender's cached access token
    gets one more exchange with a new token (it may have been revoked early)."""
    trace = Trace()
    token = token_stage.TokenTimer(host, sender)
    try:
        credential = token.credential(fresh=False)
        exchange = kind.prepare(host, sender, recipient)
        try:
            _connect_and_exchange(host, sender, credential, exchange, trace)
        except DeliveryError as refused:
            if not refused.token_refused:
                raise
            log.info("sender %s: the server refused its access token; asking for a new "
                     "one, once", sender.id)
            trace = Trace()
            credential = token.credential(fresh=True)
            _connect_and_exchange(host, sender, credential, exchange, trace)
    except PasswordUnreadable:  # unbound or unreadable: the service says which, and how
        reason = host.password_problem(sender) or "password_reentry"
        return ProbeResult(False, message(host.texts, reason), "password",
                           diagnosis=Diagnosis.password_unusable())
    except TokenUnavailable as failure:
        return ProbeResult(False, failure.user_message, "token",
                           diagnosis=token.failure_diagnosis(failure))
    except DeliveryError as failure:
        return ProbeResult(False, failure.user_message, failure.stage,
                           diagnosis=token.report(trace.diagnosis(host.texts)))
    return ProbeResult(True, kind.success(host.texts, recipient),
                       diagnosis=token.report(trace.diagnosis(host.texts)))


def _connect_and_exchange(host: ProbeHost, sender: Sender, credential: Credential,
                          exchange: Exchange, trace: Trace) -> None:
    options = host.transport_options
    deadline = transport.Deadline(options.deadline, options.operation_timeout)
    with transport.connect(sender.server, credential, options, deadline,
                           trace) as connection:
        exchange(connection, deadline, trace)


# -- Send Test Email ----------------------------------------------------------------


def _prepare_test(host: ProbeHost, sender: Sender, recipient: str | None) -> Exchange:
    """The test message, as the hooks leave it, checked as a host's message is."""
    settings = sender.settings
    rules = host.address_rules
    from_address = _saved_wire_address("From Address", settings.from_address, rules)
    if settings.reply_to_address:  # checked as the From Address is, before connecting
        _saved_wire_address("Reply-To Address", settings.reply_to_address, rules)
    to_address = wire_address(recipient or "", rules)
    test_message = build_test_message(
        settings, recipient or "",
        message(host.texts, "test_subject"), message(host.texts, "test_body"),
        rules=rules,
    )
    host.hooks.smtp_senders_prepare_message(message=test_message, sender=sender,
                                            purpose="test")
    try:  # what the hook added is checked as the sending API checks a host's message
        data, utf8 = wire_bytes(test_message, (from_address, to_address), rules)
    except InvalidSenderData as invalid:
        raise DeliveryError("data", message(host.texts, "data_failed")) from invalid

    def send(connection: transport.Connection, deadline: transport.Deadline,
             trace: Trace) -> None:
        connection.send(from_address, [to_address], data, deadline, trace=trace,
                        smtputf8=utf8, seven_bit=lambda: seven_bit_bytes(test_message))

    return send


def _record_test(host: ProbeHost, sender: Sender, result: ProbeResult) -> None:
    """Record the result on the version that was tested (compare-and-set on
    ``sender.version``): an edit saved while the test ran is not marked tested, and
    the result of the old settings is not shown on the new ones. A passed test marks
    the tested version's fingerprint as tested (a row saved before fingerprints
    existed gets one now, from the password the test used)."""
    when = datetime.now(timezone.utc)
    fingerprint = sender.settings_fingerprint
    if result.ok and fingerprint is None:
        try:
            fingerprint = host.cipher.fingerprint(asdict(sender.settings),
                                                  host.secret_for(sender))
        except PasswordUnreadable:  # it was just read; only a key change gets here
            fingerprint = None
    recorded = host.store.record_test(sender.id, result.ok, when, version=sender.version,
                                      fingerprint=fingerprint)
    if recorded is False:
        log.info("sender %s was saved or deleted while it was tested; the result of "
                 "the old settings is not recorded", sender.id)


def _test_event(actor: str | None, sender: Sender, recipient: str | None,
                result: ProbeResult) -> AuditEvent:
    if result.ok:
        return TestEmailSent(actor=actor, sender_id=sender.id, recipient=recipient or "")
    return TestEmailFailed(actor=actor, sender_id=sender.id, recipient=recipient or "",
                           stage=result.stage or "")


TEST_EMAIL = ProbeKind(
    prepare=_prepare_test,
    success=lambda texts, recipient: message(texts, "test_success",
                                              recipient=recipient or ""),
    record=_record_test,
    unrecorded="could not record the test result of sender %s",
    event=_test_event,
)


# -- the connection check -------------------------------------------------------------


def _prepare_check(host: ProbeHost, sender: Sender, recipient: str | None) -> Exchange:
    """The envelope alone: MAIL FROM the From Address, RCPT TO ``recipient`` (or the
    From Address), then RSET and QUIT; no DATA, so nothing is delivered."""
    rules = host.address_rules
    from_address = _saved_wire_address("From Address", sender.settings.from_address, rules)
    to_address = wire_address(recipient, rules) if recipient else from_address

    def dry_run(connection: transport.Connection, deadline: transport.Deadline,
                trace: Trace) -> None:
        connection.dry_run(from_address, [to_address], deadline, trace)

    return dry_run


def _record_check(host: ProbeHost, sender: Sender, result: ProbeResult) -> None:
    """The last check on the sender; it never marks the sender tested."""
    host.store.record_check(sender.id, result.ok, datetime.now(timezone.utc), result.stage)


def _check_event(actor: str | None, sender: Sender, recipient: str | None,
                 result: ProbeResult) -> AuditEvent:
    return ConnectionChecked(actor=actor, sender_id=sender.id,
                             outcome="success" if result.ok else "failure",
                             stage=result.stage or "")


CONNECTION_CHECK = ProbeKind(
    prepare=_prepare_check,
    success=lambda texts, _recipient: message(texts, "check_success"),
    record=_record_check,
    unrecorded="could not record the connection check of sender %s",
    event=_check_event,
)


def _saved_wire_address(label: str, address: str, rules: AddressRules) -> str:
    """The wire form of a saved address; one saved before the app's address rules were
    tightened fails the send before anything is sent, its reason naming the setting."""
    try:
        return wire_address(address, rules)
    except ValueError as exc:
        raise DeliveryError("sender", f"{label}: {exc}") from None
