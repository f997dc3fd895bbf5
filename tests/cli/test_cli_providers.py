"""``flask smtp-senders add / edit --provider ...``: OAuth2 senders from the command line.

The client secret or service account key comes the password's ways (an environment
variable, stdin, a hidden prompt) and never as an argument; a key file is JSON over many
lines, so from stdin all of it is read, and it is never typed at a prompt. The
provider's Server Name and Port are preset. No output holds the secret.
"""

from __future__ import annotations

import json

import pytest
from flask import Flask

from flask_smtp_senders import get_service
from tests.support.cli import run_cli
from tests.support.hosts import AuditingHost
from tests.support.token_server import make_google_key

TENANT = "6f1c2a4e-0b7d-4c3e-9a51-2d8e7f0a1b2c"
CLIENT = "0e9d8c7b-6a59-4817-8a6f-5e4d3c2b1a09"
SECRET = "Qx8~Zr.4_ClientSecretValue-0123456789abcdEF"
MICROSOFT = ["add", "--provider", "microsoft365", "--tenant-id", TENANT, "--client-id",
             CLIENT, "--username", "notify@contoso.example", "--from-address",
             "notify@contoso.example", "--json"]


@pytest.fixture
def app(make_app) -> Flask:
    return make_app(plugins=[AuditingHost(actor="ops-cli")])


run = run_cli


def test_a_microsoft365_sender_gets_the_providers_server_and_keeps_its_secret_hidden(app):
    result = run(app, *MICROSOFT, "--password-env", "CLIENT_SECRET",
                 env={"CLIENT_SECRET": SECRET})
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert (shown["provider"], shown["server_name"], shown["port"], shown["mode"]) == (
        "microsoft365", "smtp.office365.com", 587, "STARTTLS")
    assert (shown["tenant_id"], shown["client_id"]) == (TENANT, CLIENT)
    assert SECRET not in result.output
    with app.app_context():
        (sender,) = get_service(app).list_senders()
        assert get_service(app).secret_for(sender).reveal() == SECRET


def test_a_bad_tenant_is_refused_before_the_secret_is_read(app):
    result = run(app, *[("not/a tenant" if arg == TENANT else arg) for arg in MICROSOFT],
                 "--password-stdin", input=SECRET + "\n")
    assert result.exit_code == 2
    assert "tenant_id" in json.loads(result.stdout)["errors"]
    with app.app_context():
        assert get_service(app).list_senders() == []


def test_a_google_key_is_read_whole_from_stdin(app):
    key = make_google_key()
    result = run(app, "add", "--provider", "google", "--username", "alerts@acme.example",
                 "--from-address", "alerts@acme.example", "--json", "--password-stdin",
                 input=key.text)
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert (shown["server_name"], shown["port"], shown["client_id"]) == (
        "smtp.gmail.com", 465, key.client_id)
    assert "PRIVATE KEY" not in result.output
    with app.app_context():
        (sender,) = get_service(app).list_senders()
        assert get_service(app).secret_for(sender).reveal() == key.text


def test_a_google_key_is_never_typed_at_a_prompt(app, monkeypatch):
    monkeypatch.setattr("flask_smtp_senders.cli.inputs.interactive", lambda: True)
    result = run(app, "add", "--provider", "google", "--username", "alerts@acme.example",
                 "--from-address", "alerts@acme.example")
    assert result.exit_code == 2
    assert "--password-stdin" in result.stderr


def test_a_key_that_does_not_load_is_refused_beside_the_password_field(app):
    result = run(app, "add", "--provider", "google", "--username", "alerts@acme.example",
                 "--from-address", "alerts@acme.example", "--json", "--password-stdin",
                 input='{"type": "service_account"}')
    assert result.exit_code == 2
    assert set(json.loads(result.stdout)["errors"]) == {"password"}


def test_edit_keeps_the_provider_and_sets_the_expiry(app):
    assert run(app, *MICROSOFT, "--password-env", "S", env={"S": SECRET}).exit_code == 0
    result = run(app, "edit", "1", "--secret-expires", "2027-06-30", "--json",
                 "--password-env", "S", env={"S": SECRET})
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert (shown["provider"], shown["tenant_id"], shown["secret_expires"]) == (
        "microsoft365", TENANT, "2027-06-30")


def test_a_custom_server_sender_still_defaults_to_port_465(app):
    result = run(app, "add", "--username", "alice", "--server-name", "smtp.example.com",
                 "--from-address", "noreply@example.com", "--json", "--password-env", "P",
                 env={"P": "pw"})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["port"] == 465


def _expiring_sender(app: Flask, days: int) -> None:
    from datetime import date, timedelta

    on = (date.today() + timedelta(days=days)).isoformat()
    assert run(app, *MICROSOFT, "--secret-expires", on, "--password-env", "S",
               env={"S": SECRET}).exit_code == 0


def test_list_names_the_provider_and_warns_30_days_ahead(app):
    _expiring_sender(app, 10)
    (line,) = run(app, "list").stdout.splitlines()
    assert "[Microsoft 365]" in line
    assert "The client secret expires on" in line and "(in 10 days)" in line


def test_list_says_nothing_of_a_secret_further_away(app):
    _expiring_sender(app, 31)
    (line,) = run(app, "list").stdout.splitlines()
    assert "expires" not in line


def test_check_warns_and_marks_the_audit_trail(make_app, scripted_server):
    """A daily ``check`` is where the audit trail learns of a secret about to expire
    (the check itself fails here: nothing listens where its tokens would come from)."""
    from flask_smtp_senders import events

    host = AuditingHost(actor="cron")
    app = make_app(plugins=[host], SMTP_SENDERS_MICROSOFT_AUTHORITY="https://127.0.0.1:1")
    _expiring_sender(app, -2)
    result = run(app, "check", "--json")
    assert result.exit_code == 1
    (checked,) = json.loads(result.stdout)
    assert checked["stage"] == "token"
    assert checked["secret_expiry"]["days_left"] == -2
    assert "Warning: sender #1: The client secret expired on" in result.stderr
    (marked,) = [e for e in host.events if isinstance(e, events.SecretExpiring)]
    assert (marked.sender_id, marked.days_left, marked.actor) == (1, -2, "cron")
