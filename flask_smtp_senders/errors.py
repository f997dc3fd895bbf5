"""Exception hierarchy: one root, subclasses mixing in the builtin they resemble.

No message here ever carries a password, a Fernet token or a raw server reply: the
user-facing text of a failure comes from the ``SMTP_SENDERS_MSG_*`` catalogue.
"""

from __future__ import annotations


class SMTPSendersError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigurationError(SMTPSendersError, ValueError):
    """A setting is missing or malformed; the message names the setting."""


class InvalidSenderData(SMTPSendersError, ValueError):
    """Sender fields failed validation; ``errors`` maps field name to a message."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(f"{field}: {msg}" for field, msg in self.errors.items()))


class SenderNotFound(SMTPSendersError, LookupError):
    """No sender has that id (deleted, or never existed)."""


class ConcurrentUpdate(SMTPSendersError):
    """Someone saved or deleted the sender since this copy was read."""


class StorageError(SMTPSendersError):
    """The database failed (gone, locked, killed mid-save); the change was rolled back."""


class TableMissing(StorageError):
    """The ``smtp_senders`` table does not exist yet: ``init_app`` creates no table unless
    ``SMTP_SENDERS_CREATE_TABLES`` is on, so ``flask smtp-senders upgrade`` (or the host's
    migrations) must run first. Its text is ``SMTP_SENDERS_MSG_TABLE_MISSING``, which names
    that command; pages, API and CLI show it instead of the generic storage message."""


class PasswordUnreadable(SMTPSendersError):
    """No configured key decrypts the stored password: it must be re-entered."""

    #: Where a send stopped, as a failed send's audit event records it.
    stage = "password"


class CredentialNotBound(PasswordUnreadable):
    """The stored password is not bound to the sender's current Server Name, Port, mode
    and Username (the row was changed behind the application's back, or never bound), so
    it is not used at all: it must be re-entered. A PasswordUnreadable, so every handler
    of that (re-enter the password) applies; ``user_message`` is the catalogue's text."""

    def __init__(self, detail: str, user_message: str | None = None) -> None:
        self.user_message = user_message
        super().__init__(detail)


class AuditFailed(SMTPSendersError):
    """An audit hook raised, so the change it was recording was rolled back."""


class DeliveryError(SMTPSendersError):
    """A send failed at one stage of the SMTP exchange.

    ``stage`` is one of :data:`flask_smtp_senders.smtp.transport.STAGES`; ``user_message`` is a
    fixed, safe text from the message catalogue. Details are logged, never put here.
    """

    def __init__(self, stage: str, user_message: str, *, code: int | None = None,
                 delivery_unknown: bool = False, token_refused: bool = False) -> None:
        self.stage = stage
        self.user_message = user_message
        #: The server's reply code when it answered with a refusal (4xx or 5xx).
        self.code = code
        #: True when the connection failed after the message body was sent and before the
        #: server's answer: it may have been delivered, so it must not be sent again.
        self.delivery_unknown = delivery_unknown
        #: True when AUTH refused an OAuth2 access token (535): a fresh token may pass.
        self.token_refused = token_refused
        super().__init__(f"{stage}: {user_message}")

    @property
    def temporary(self) -> bool:
        """A 4xx refusal: the server asks to try again later."""
        return self.code is not None and 400 <= self.code < 500


class TokenUnavailable(DeliveryError):
    """An OAuth2 sender got no access token from its provider, so nothing was sent
    (stage "token"). ``reason`` says why: the token request's failure (its stage, HTTP
    status, the provider's error code and advice name), never a secret."""

    def __init__(self, user_message: str, reason: Exception) -> None:
        super().__init__("token", user_message)
        self.reason = reason


class SMTPTimeout(DeliveryError, TimeoutError):
    """The server was too slow: an operation or the whole exchange ran out of time."""
