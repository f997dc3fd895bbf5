"""What of a sender may leave the application (the CLI's JSON, the API's answers):
its settings and state, never its password, token, binding or fingerprints."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .store import Sender


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
