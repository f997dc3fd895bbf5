"""flask-smtp-senders: Settings > Senders for Flask admin portals.

Administrators keep their organisation's SMTP servers here (password encrypted at rest),
test them with Send Test Email, and the host app sends its notifications through them.
"""

from __future__ import annotations

from . import events
from .errors import (
    AuditFailed,
    ConcurrentUpdate,
    ConfigurationError,
    CredentialNotBound,
    DeliveryError,
    InvalidSenderData,
    PasswordUnreadable,
    SenderNotFound,
    SMTPSendersError,
    SMTPTimeout,
    StorageError,
    TableMissing,
)
from .extension import SMTPSenders, get_service
from .hooks import hookimpl
from .services.delivery import SendResult
from .services.senders import CheckResult, ProbeResult, SenderService, TestEmailResult
from .smtp.diagnostics import Diagnosis, Stage
from .smtp.transport import Security, security_for_port
from .storage.sqlalchemy import Sender, SenderStore, SQLAlchemyStore, TestState
from .validation import AddressRules, SenderSettings, validate_settings

__all__ = [
    "AddressRules",
    "AuditFailed",
    "CheckResult",
    "ProbeResult",
    "ConcurrentUpdate",
    "ConfigurationError",
    "CredentialNotBound",
    "DeliveryError",
    "Diagnosis",
    "InvalidSenderData",
    "PasswordUnreadable",
    "SMTPSenders",
    "SMTPSendersError",
    "SMTPTimeout",
    "SQLAlchemyStore",
    "Security",
    "Sender",
    "SenderNotFound",
    "SendResult",
    "SenderService",
    "SenderSettings",
    "SenderStore",
    "Stage",
    "StorageError",
    "TableMissing",
    "TestEmailResult",
    "TestState",
    "events",
    "get_service",
    "hookimpl",
    "security_for_port",
    "validate_settings",
]
