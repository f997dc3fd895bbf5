"""pluggy hooks: authorisation denies by default, message preparation reaches the wire,
and the audit trail of test emails holds no secret."""

from __future__ import annotations

import logging

import pytest

from flask_smtp_senders import SenderSettings, events, hookimpl
from flask_smtp_senders.hooks import make_plugin_manager
from tests.support.smtp_servers import LOOPBACK, SERVER_NAME

pytestmark = pytest.mark.sqlite_only

PASSWORD = "Hook-Test-Pa55word"


class Recorder:
    """A host plugin: points the test name at a server, records audit events, names the
    actor and stamps every message."""

    def __init__(self, address: str = LOOPBACK) -> None:
        self.address = address
        self.events: list[events.AuditEvent] = []
        self.prepared: list[tuple[str, int]] = []

    @hookimpl
    def smtp_senders_resolve(self, server_name, port):
        return [self.address] if server_name == SERVER_NAME else None

    @hookimpl
    def smtp_senders_audit(self, event):
        self.events.append(event)

    @hookimpl
    def smtp_senders_actor(self):
        return "admin@portal"

    @hookimpl
    def smtp_senders_prepare_message(self, message, sender, purpose):
        self.prepared.append((purpose, sender.id))
        message["X-Portal-Tenant"] = "acme"


def make_sender(service, port, password=PASSWORD):
    return service.create_sender(SenderSettings(
        username="alice", server_name=SERVER_NAME, port=port,
        from_address="noreply@example.com"), password)


def test_no_authorize_hook_means_deny(service):
    for action in ("list", "create", "update", "delete", "test"):
        assert service.authorize(action, 1) is False


def test_authorize_hook_answers_and_the_last_registered_plugin_wins(make_app):
    class Allow:
        @hookimpl
        def smtp_senders_authorize(self, action, sender_id):
            return True

    class DenyDelete:
        @hookimpl
        def smtp_senders_authorize(self, action, sender_id):
            return False if action == "delete" else None

    app = make_app(plugins=[Allow(), DenyDelete()])
    service = app.extensions["smtp_senders"]
    assert service.authorize("list") is True
    assert service.authorize("delete", 3) is False


def test_authorize_hook_that_raises_denies(make_app, caplog):
    class Broken:
        @hookimpl
        def smtp_senders_authorize(self, action, sender_id):
            raise RuntimeError("session store down")

    service = make_app(plugins=[Broken()]).extensions["smtp_senders"]
    assert service.authorize("list") is False
    assert "smtp_senders_authorize raised" in caplog.text


def test_truthy_but_not_true_answer_does_not_authorize(make_app):
    class Sloppy:
        @hookimpl
        def smtp_senders_authorize(self, action, sender_id):
            return "yes"

    assert make_app(plugins=[Sloppy()]).extensions["smtp_senders"].authorize("list") is False


def test_prepare_message_hook_changes_what_the_server_receives(make_app, smtp_server):
    server = smtp_server("implicit")
    recorder = Recorder(server.host)
    app = make_app(plugins=[recorder])
    with app.app_context():
        service = app.extensions["smtp_senders"]
        sender = make_sender(service, server.port, "s3cret")
        assert service.send_test_email(sender.id, "to@example.com").ok
    assert recorder.prepared == [("test", sender.id)]
    assert server.messages[0].message["X-Portal-Tenant"] == "acme"


def test_test_emails_are_audited_without_secrets(make_app, smtp_server):
    server = smtp_server("implicit")
    recorder = Recorder(server.host)
    app = make_app(plugins=[recorder])
    with app.app_context():
        service = app.extensions["smtp_senders"]
        good = make_sender(service, server.port, "s3cret")
        bad = make_sender(service, server.port, PASSWORD)
        service.send_test_email(good.id, "to@example.com")
        service.send_test_email(bad.id, "to@example.com")
        token = service.get_sender(bad.id).password.token.decode()

    sent = [e for e in recorder.events if isinstance(e, events.TestEmailSent)]
    failed = [e for e in recorder.events if isinstance(e, events.TestEmailFailed)]
    assert [(e.sender_id, e.recipient, e.actor, e.outcome) for e in sent] == [
        (good.id, "to@example.com", "admin@portal", "success")]
    assert [(e.sender_id, e.stage, e.outcome) for e in failed] == [(bad.id, "auth", "failure")]
    for event in recorder.events:
        assert PASSWORD not in repr(event) and token not in repr(event)
        assert event.occurred_at.tzinfo is not None


def test_audit_hook_that_raises_on_a_send_is_logged_and_the_result_stands(
        make_app, smtp_server, caplog):
    server = smtp_server("implicit")

    class BrokenAudit(Recorder):
        @hookimpl
        def smtp_senders_audit(self, event):
            if isinstance(event, events.TestEmailSent):
                raise RuntimeError("audit sink unreachable")

    app = make_app(plugins=[BrokenAudit(server.host)])
    with app.app_context():
        service = app.extensions["smtp_senders"]
        sender = make_sender(service, server.port, "s3cret")
        caplog.set_level(logging.ERROR)
        result = service.send_test_email(sender.id, "to@example.com")
    assert result.ok
    assert len(server.messages) == 1
    assert "smtp_senders_audit raised for test_email_sent" in caplog.text


def test_audit_event_text_cannot_forge_log_lines():
    event = events.TestEmailFailed(actor="eve\r\nINFO forged", sender_id=1,
                                   recipient="a@example.com\n", stage="auth")
    assert "\n" not in event.actor and "\r" not in event.actor
    assert event.recipient == "a@example.com\\n"


def test_each_app_gets_its_own_plugin_manager():
    first, second = make_plugin_manager(), make_plugin_manager([Recorder()])
    assert first is not second
    assert len(first.hook.smtp_senders_audit.get_hookimpls()) == 0
    assert len(second.hook.smtp_senders_audit.get_hookimpls()) == 1
