"""Host plugins the tests share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask_smtp_senders import events, hookimpl
from tests.support.smtp_servers import LOOPBACK, SERVER_NAME


class AuditingHost:
    """An administrator allowed everything, the test server name routed to loopback, the
    audit trail kept, and an actor name (None: the hook has no answer)."""

    def __init__(self, actor: str | None = None) -> None:
        self.actor = actor
        self.events: list[events.AuditEvent] = []

    @hookimpl
    def smtp_senders_authorize(self, action, sender_id):
        return True

    @hookimpl
    def smtp_senders_resolve(self, server_name, port):
        return [LOOPBACK] if server_name == SERVER_NAME else None

    @hookimpl
    def smtp_senders_audit(self, event):
        self.events.append(event)

    @hookimpl
    def smtp_senders_actor(self):
        return self.actor


class LoopbackAdmin:
    """An administrator allowed everything, every server name routed to loopback, a bearer
    token trusted on the API (tests.support.cases.bearer_token_sent), and ``prepare``:
    a test's change to the outgoing message, if any."""

    def __init__(self) -> None:
        self.prepare: Callable[[Any], None] | None = None

    @hookimpl
    def smtp_senders_authorize(self, action, sender_id):
        return True

    @hookimpl
    def smtp_senders_api_token_authenticated(self):
        from tests.support.cases import bearer_token_sent

        return bearer_token_sent()

    @hookimpl
    def smtp_senders_resolve(self, server_name, port):
        return [LOOPBACK]

    @hookimpl
    def smtp_senders_prepare_message(self, message, sender, purpose):
        if self.prepare is not None:
            self.prepare(message)
