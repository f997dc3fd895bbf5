"""Audit events handed to the ``smtp_senders_audit`` hook, and the in-process signal
:data:`sender_changed`.

Plain frozen dataclasses of ids, names and outcomes: never a password or a token. Text
values are stored with CR and LF replaced, so a log line made from them cannot be forged.
The signal lives here, below the services, so that whoever changes a sender announces it
without knowing who keeps copies of it (the Mailer's routes and pooled connections).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timezone

from blinker import Namespace


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _neutralise(value: object) -> object:
    if isinstance(value, str):
        return value.replace("\r", "\\r").replace("\n", "\\n")
    if isinstance(value, tuple):
        return tuple(_neutralise(item) for item in value)
    return value


@dataclass(frozen=True)
class AuditEvent:
    """What happened, to which sender, done by whom, with what outcome."""

    action = "event"

    actor: str | None
    sender_id: int | None
    outcome: str = "success"
    occurred_at: datetime = field(default_factory=_now)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _neutralise(getattr(self, f.name)))


@dataclass(frozen=True)
class SenderCreated(AuditEvent):
    action = "sender_created"


@dataclass(frozen=True)
class SenderUpdated(AuditEvent):
    action = "sender_updated"
    #: Names of the fields whose value changed ("password" when it was re-entered).
    changed_fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class SenderDeleted(AuditEvent):
    action = "sender_deleted"


@dataclass(frozen=True)
class TestEmailSent(AuditEvent):
    __test__ = False  # not a pytest test class
    action = "test_email_sent"
    recipient: str = ""


@dataclass(frozen=True)
class TestEmailFailed(AuditEvent):
    __test__ = False  # not a pytest test class
    action = "test_email_failed"
    recipient: str = ""
    #: The stage where the exchange stopped (see ``transport.STAGES``).
    stage: str = ""
    outcome: str = "failure"


@dataclass(frozen=True)
class ConnectionChecked(AuditEvent):
    """The connection check (a dry run up to RCPT TO, nothing delivered) ran."""

    action = "connection_checked"
    #: "success" or "failure".
    outcome: str = "success"
    #: Where the check stopped (see ``transport.STAGES``, or "password"); "" on success.
    stage: str = ""


@dataclass(frozen=True)
class MessageSent(AuditEvent):
    action = "message_sent"
    recipients: tuple[str, ...] = ()
    #: Recipients the server refused while accepting the others.
    refused: tuple[str, ...] = ()


@dataclass(frozen=True)
class MessageFailed(AuditEvent):
    action = "message_failed"
    recipients: tuple[str, ...] = ()
    #: Where it stopped: a ``transport.STAGES`` name, "password", "sender_not_found", or
    #: "message" (the message cannot go as it is: no recipient, several Resent- blocks,
    #: an address the app's address rules refuse).
    stage: str = ""
    outcome: str = "failure"


@dataclass(frozen=True)
class KeysRotated(AuditEvent):
    action = "keys_rotated"
    #: Senders re-encrypted under the first key.
    rotated: int = 0
    #: Senders whose token no configured key could read (left untouched).
    unreadable: int = 0


@dataclass(frozen=True)
class SecretExpiring(AuditEvent):
    """An OAuth2 sender's client secret or key stops working within 30 days, or did:
    marked by ``flask smtp-senders check`` (run it daily) so the audit trail shows it
    before mail stops."""

    action = "secret_expiring"
    #: The sender's Secret Expires (YYYY-MM-DD).
    expires_on: str = ""
    #: Days left (0: today; negative: expired that many days ago).
    days_left: int = 0
    outcome: str = "warning"


# -- the in-process signal ------------------------------------------------------------

_signals = Namespace()

#: Sent after a sender's stored settings changed in this process: ``send(source,
#: sender_id=..., deleted=...)``, where ``source`` is the app's ``SenderService`` (a
#: receiver connects with ``sender=`` that service, so several apps in one process do not
#: hear each other), ``sender_id`` the sender edited or deleted (None: every sender, as
#: after a key rotation) and ``deleted`` whether it is gone.
sender_changed = _signals.signal("smtp-senders.sender-changed")
