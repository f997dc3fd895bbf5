"""flask-smtp-senders: Settings > Senders for Flask admin portals.

Administrators keep their organisation's SMTP servers here (password encrypted at rest),
test them with Send Test Email, and the host app sends its notifications through them.
"""

from __future__ import annotations

from . import events
from .addresses import AddressRules
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
from .sealed import AccessToken
from .services.batch import SendResult
from .services.probe import CheckResult, ProbeResult, TestEmailResult
from .services.senders import SenderService
from .smtp.diagnosis import Diagnosis, Stage
from .smtp.transport import Security, security_for_port
from .storage.base import Sender, SenderStore, TestState
from .storage.sqlalchemy import SQLAlchemyStore
from .validation import SenderSettings, validate_settings


def _installed_version() -> str:
    """The version pip installed (setup.cfg's, which docs/changelog.md's newest release
    heading names): one number, read from the distribution's metadata."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("flask-smtp-senders")
    except PackageNotFoundError:  # a source tree put on sys.path without installing it
        return "0+unknown"


__version__ = _installed_version()

__all__ = [
    "AccessToken",
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
