"""What of a sender may leave the application (the CLI's JSON, the API's answers, the
pages' version field): its settings, its state and its tag, never its password, client
secret, key, token, binding or fingerprints; and when its secret stops working."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

from ..domain import Provider
from ..storage.base import Sender
from ..validation import SenderSettings

#: How long ahead an expiring client secret or key is warned about.
SECRET_WARNING_DAYS = 30


def sender_as_dict(sender: Sender) -> dict[str, Any]:
    """A sender as JSON-ready fields: settings and state, no secret."""
    settings = sender.settings
    return {
        "id": sender.id, "version": sender.version,
        "provider": settings.provider_type.value,
        "username": settings.username,
        "server_name": settings.server_name, "port": settings.port,
        "mode": sender.security.value, "from_name": settings.from_name,
        "from_address": settings.from_address, "reply_to_name": settings.reply_to_name,
        "reply_to_address": settings.reply_to_address,
        "tenant_id": settings.tenant_id, "client_id": settings.client_id,
        "token_url": settings.token_url, "scope": settings.scope,
        "secret_expires": settings.secret_expires, "default": sender.is_default,
        "test_state": sender.test_state.value,
        "last_test_ok": sender.last_test_ok, "last_test_at": _when(sender.last_test_at),
        "last_check_ok": sender.last_check_ok, "last_check_at": _when(sender.last_check_at),
        "last_check_stage": sender.last_check_stage,
    }


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


@dataclass(frozen=True)
class SecretExpiry:
    """A sender's client secret or key that stops working soon (or did): what it is,
    when, and how many days are left (negative once past)."""

    what: str
    on: str
    days_left: int

    @property
    def expired(self) -> bool:
        return self.days_left < 0

    @property
    def text(self) -> str:
        if self.expired:
            return f"{self.what} expired on {self.on}: create a new one and save it here."
        if self.days_left == 0:
            return f"{self.what} expires today ({self.on})."
        days = "1 day" if self.days_left == 1 else f"{self.days_left} days"
        return f"{self.what} expires on {self.on} (in {days})."


def secret_expiry(settings: SenderSettings, today: date | None = None
                  ) -> SecretExpiry | None:
    """The warning a sender's Secret Expires calls for, SECRET_WARNING_DAYS ahead (None
    when it has none, or the date is further away or not a date)."""
    if not settings.secret_expires:
        return None
    try:
        on = date.fromisoformat(settings.secret_expires)
    except ValueError:  # a row changed behind our back: its problems say so
        return None
    today = today or datetime.now(timezone.utc).date()
    days_left = (on - today).days
    if days_left > SECRET_WARNING_DAYS:
        return None
    what = ("The service account key" if settings.provider_type is Provider.GOOGLE
            else "The client secret")
    return SecretExpiry(what, settings.secret_expires, days_left)


#: ``version_read`` for a tag of another sender that had the same id: no version matches.
OTHER_SENDER = -1


def sender_tag(sender: Sender) -> str:
    """The version a change is made against, with a mark of the sender's creation
    ("3.5e0c91f2"): the API's ETag and the pages' hidden version field. The mark tells
    apart a sender deleted and a later one given its id (SQLite reuses ids), so a page or
    script that read the first can never change or delete the second."""
    return f"{sender.version}.{_birth_mark(sender)}"


def version_read(tag: str | None, sender: Sender) -> int | None:
    """The version ``tag`` was read at, when it is a tag of this very sender;
    OTHER_SENDER when it is a tag of another one; None when it is no tag (tampered)."""
    version, _, mark = (tag or "").partition(".")
    if not (version.isascii() and version.isdigit() and len(version) <= 9 and mark):
        return None
    return int(version) if mark == _birth_mark(sender) else OTHER_SENDER


def _birth_mark(sender: Sender) -> str:
    return hashlib.blake2s(f"{sender.id} {sender.created_at.isoformat()}".encode(),
                           digest_size=4).hexdigest()
