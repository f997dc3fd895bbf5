"""``flask smtp-senders list`` and ``show``: settings and state for scripts, and never a
secret (password, token, binding, fingerprint), on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from flask import Flask

from flask_smtp_senders import SenderSettings, get_service
from flask_smtp_senders.errors import StorageError
from flask_smtp_senders.services.senders import SenderService

PASSWORD = "List-Pa55word-1"


@pytest.fixture
def app(make_app) -> Flask:
    app = make_app()
    with app.app_context():
        service = get_service(app)
        service.create_sender(SenderSettings(
            username="alice", server_name="smtp.example.com", port=587, from_name="Acme",
            from_address="noreply@example.com"), PASSWORD)
        service.create_sender(SenderSettings(
            username="ops", server_name="mail.example.org", port=465,
            from_address="alerts@example.org", reply_to_address="help@example.org"), PASSWORD)
    return app


def run(app: Flask, *args: str):
    return app.test_cli_runner().invoke(args=["smtp-senders", *args])


def secrets_of(app: Flask) -> list[str]:
    with app.app_context():
        senders = get_service(app).list_senders()
    found = [PASSWORD]
    for sender in senders:
        found += [sender.password.token, sender.password_binding,
                  sender.settings_fingerprint]
    return [value.decode() if isinstance(value, bytes) else value for value in found if value]


def test_list_prints_one_line_per_sender_with_its_state(app) -> None:
    result = run(app, "list")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "#1 smtp.example.com:587 STARTTLS <noreply@example.com> (default): Never tested",
        "#2 mail.example.org:465 SMTPS <alerts@example.org>: Never tested"]
    assert not [value for value in secrets_of(app) if value in result.output]


def test_list_says_no_passed_test_after_a_failed_one_as_the_page_does(app) -> None:
    """The CLI and the Senders list share one label: "No passed test" once a test failed."""
    from datetime import datetime, timezone

    with app.app_context():
        get_service(app).store.record_test(1, False, datetime.now(timezone.utc))
    lines = run(app, "list").stdout.splitlines()
    assert lines[0].endswith(": No passed test") and lines[1].endswith(": Never tested")
    # the page's label (tests/services/test_test_state.py shows it) is this one
    with app.app_context():
        assert get_service(app).get_sender(1).test_state_label == "No passed test"


def test_list_and_show_as_json_hold_settings_and_state_but_no_secret(app) -> None:
    listed = run(app, "list", "--json")
    shown = run(app, "show", "2", "--json")
    assert listed.exit_code == shown.exit_code == 0
    senders = json.loads(listed.stdout)
    assert [s["server_name"] for s in senders] == ["smtp.example.com", "mail.example.org"]
    assert json.loads(shown.stdout) == senders[1]
    assert senders[1] | {"last_test_at": None} == {
        "id": 2, "version": 1, "username": "ops", "server_name": "mail.example.org",
        "port": 465, "mode": "SMTPS", "from_name": "", "from_address": "alerts@example.org",
        "reply_to_name": "", "reply_to_address": "help@example.org", "default": False,
        "test_state": "never", "last_test_ok": None, "last_test_at": None,
        "last_check_ok": None, "last_check_at": None, "last_check_stage": None,
        "provider": "custom", "tenant_id": "", "client_id": "", "token_url": "", "scope": "",
        "secret_expires": ""}
    for output in (listed.output, shown.output):
        assert not [value for value in secrets_of(app) if value in output]
        assert "password" not in output.lower()


def test_show_prints_every_field_on_its_own_line(app) -> None:
    result = run(app, "show", "1")
    assert result.exit_code == 0
    lines = dict(line.split(None, 1) if " " in line.strip() else (line.strip(), "")
                 for line in result.stdout.splitlines())
    assert lines["server_name"] == "smtp.example.com" and lines["mode"] == "STARTTLS"
    assert lines["default"] == "True" and lines["test_state"] == "never"


def test_an_unknown_sender_exits_2_with_a_one_line_reason(app) -> None:
    result = run(app, "show", "99")
    assert result.exit_code == 2
    assert result.stderr == "Error: there is no sender with id 99.\n" and result.stdout == ""


def test_a_failing_database_exits_2_without_a_traceback(app, monkeypatch) -> None:
    def fail(self):
        raise StorageError("the database is down")

    monkeypatch.setattr(SenderService, "list_senders", fail)
    result = run(app, "list")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.startswith("Error: the sender database failed")


def test_no_sender_says_so_on_stderr(make_app) -> None:
    result = run(make_app(), "list")
    assert result.exit_code == 0 and result.stdout == ""
    assert result.stderr == "No sender yet.\n"
