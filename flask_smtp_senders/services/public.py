"""What of a sender may leave the application (the CLI's JSON, the API's answers, the
pages' version field): its settings, its state and its tag, never its password, token,
binding or fingerprints."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from ..storage.base import Sender


def sender_as_dict(sender: Sender) -> dict[str, Any]:
    """A sender as JSON-ready fields: settings and state, no secret."""
    settings = sender.settings
    return {
        "id": sender.id, "version": sender.version, "username": settings.username,
        "server_name": settings.server_name, "port": settings.port,
        "mode": sender.security.value, "from_name": settings.from_name,
        "from_address": settings.from_address, "reply_to_name": settings.reply_to_name,
        "reply_to_address": settings.reply_to_address, "default": sender.is_default,
        "test_state": sender.test_state.value,
        "last_test_ok": sender.last_test_ok, "last_test_at": _when(sender.last_test_at),
        "last_check_ok": sender.last_check_ok, "last_check_at": _when(sender.last_check_at),
        "last_check_stage": sender.last_check_stage,
    }


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


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
