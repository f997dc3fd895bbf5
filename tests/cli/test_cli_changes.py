"""``flask smtp-senders add / edit / delete / set-default / test``: changing senders from
the command line, on SQLite and PostgreSQL, through Flask's CLI runner.

The password comes from an environment variable, the first line of stdin or a hidden
prompt (never an argument); without any of them and without a terminal the command fails
at once (exit 2) rather than hang. ``test`` sends a real test email to a loopback server.
No output ever holds a password, its token, its binding or a fingerprint.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from click.testing import Result
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_smtp_senders import (
    SenderSettings,
    SMTPSenders,
    events,
    get_service,
    hookimpl,
)
from flask_smtp_senders.cli import changes as cli_changes
from flask_smtp_senders.errors import StorageError
from flask_smtp_senders.services.senders import SenderService
from flask_smtp_senders.settings import DEFAULTS
from flask_smtp_senders.storage.base import Sender, TestState
from tests.support.cli import run_cli
from tests.support.hosts import AuditingHost
from tests.support.smtp_servers import SERVER_NAME, RecordingServer

PASSWORD = "Cli-Change-Pa55word-1"
NEW_PASSWORD = "Cli-Change-Pa55word-2"
AUTH_FAILED = DEFAULTS["SMTP_SENDERS_MSG_AUTH_FAILED"]
ADD = ["add", "--username", "alice", "--server-name", "smtp.example.com", "--port", "587",
       "--from-name", "Acme", "--from-address", "noreply@example.com"]


@pytest.fixture
def host() -> AuditingHost:
    return AuditingHost(actor="ops-cli")


@pytest.fixture
def app(make_app, host) -> Flask:
    return make_app(plugins=[host])


@pytest.fixture
def terminal(monkeypatch) -> None:
    """Pretend stdin is a terminal: someone is there to answer prompts."""
    monkeypatch.setattr("flask_smtp_senders.cli.inputs.interactive", lambda: True)


run = run_cli


def create(app: Flask, password: str = PASSWORD, **values: Any) -> Sender:
    fields = {"username": "alice", "server_name": "smtp.example.com", "port": 587,
              "from_name": "Acme", "from_address": "noreply@example.com", **values}
    with app.app_context():
        return get_service(app).create_sender(SenderSettings(**fields), password)


def senders(app: Flask) -> list[Sender]:
    with app.app_context():
        return get_service(app).list_senders()


def stored(app: Flask, sender_id: int) -> Sender:
    with app.app_context():
        return get_service(app).get_sender(sender_id)


def password_of(app: Flask, sender_id: int) -> str:
    with app.app_context():
        service = get_service(app)
        return service.cipher.decrypt(service.get_sender(sender_id).password).reveal()


def secrets_of(app: Flask) -> list[str]:
    found: list[Any] = [PASSWORD, NEW_PASSWORD]
    for sender in senders(app):
        found += [sender.password.token, sender.password_binding,
                  sender.settings_fingerprint, sender.tested_fingerprint]
    return [value.decode() if isinstance(value, bytes) else value for value in found if value]


def assert_no_secret(app: Flask, *results: Result, known: list[str] | None = None) -> None:
    """No password, token, binding or fingerprint on stdout or stderr."""
    secrets = [*secrets_of(app), *(known or [])]
    for result in results:
        for stream in (result.stdout, result.stderr):
            assert [value for value in secrets if value in stream] == []


# -- add ------------------------------------------------------------------------------


def test_add_reads_the_first_line_of_stdin_as_the_password(app, host):
    result = run(app, *ADD, "--password-stdin", input=f"{PASSWORD}\nnot this line\n")
    assert result.exit_code == 0, result.output
    assert result.stdout == ("Added sender #1 smtp.example.com:587 STARTTLS "
                             "<noreply@example.com> (default).\n")
    assert "flask smtp-senders test 1 --to ADDRESS" in result.stderr
    [sender] = senders(app)
    assert sender.settings == SenderSettings(
        username="alice", server_name="smtp.example.com", port=587, from_name="Acme",
        from_address="noreply@example.com")
    assert password_of(app, sender.id) == PASSWORD
    assert [(type(e), e.actor, e.sender_id) for e in host.events] == [
        (events.SenderCreated, "ops-cli", 1)]
    assert_no_secret(app, result)


def test_add_reads_the_password_from_an_environment_variable_and_prints_json(app):
    result = run(app, *ADD, "--password-env", "SMTP_PW", "--json",
                 env={"SMTP_PW": PASSWORD})
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown == json.loads(run(app, "show", "1", "--json").stdout)
    assert (shown["id"], shown["port"], shown["mode"], shown["default"]) == (
        1, 587, "STARTTLS", True)
    assert password_of(app, 1) == PASSWORD
    assert "password" not in result.stdout.lower()
    assert_no_secret(app, result)


def test_add_with_an_unset_environment_variable_exits_2_and_saves_nothing(app):
    result = run(app, *ADD, "--password-env", "SMTP_PW_MISSING", env={"SMTP_PW_MISSING": None})
    assert result.exit_code == 2
    assert result.stderr == ("Error: nothing was changed: the environment variable "
                             "SMTP_PW_MISSING (--password-env) is not set.\n")
    assert senders(app) == []


def test_add_prompts_twice_for_a_hidden_password_at_a_terminal(app, terminal):
    result = run(app, *ADD, "--port", "465", input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert "SMTP password" in result.stderr and "Repeat for confirmation" in result.stderr
    assert result.stdout.startswith("Added sender #1 smtp.example.com:465 SMTPS")
    assert password_of(app, 1) == PASSWORD
    assert_no_secret(app, result)  # hidden: the typed password is not echoed


def test_a_prompt_left_without_matching_passwords_exits_2(app, terminal):
    result = run(app, *ADD, input=f"{PASSWORD}\n{NEW_PASSWORD}\n")
    assert result.exit_code == 2
    assert "do not match" in result.stderr
    assert result.stderr.endswith("Error: nothing was changed: no password was entered.\n")
    assert senders(app) == []
    assert_no_secret(app, result)


def test_without_a_terminal_or_a_password_source_add_exits_2_at_once(app):
    result = run(app, *ADD, input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: nothing was changed: no password: stdin is not "
                                    "a terminal, so pass --password-stdin")
    assert "SMTP password" not in result.output  # no prompt was shown
    assert senders(app) == []


@pytest.mark.parametrize("options, expected", [
    (["--password-stdin", "--password-env", "SMTP_PW"], "give the password one way"),
    (["--password-stdin"], "--password-stdin reads a pipe, and stdin is a terminal"),
])
def test_password_sources_that_cannot_be_used_exit_2(app, terminal, options, expected):
    result = run(app, *ADD, *options, input=f"{PASSWORD}\n", env={"SMTP_PW": PASSWORD})
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: nothing was changed: {expected}")
    assert senders(app) == []


def test_there_is_no_password_option():
    """A password given as an argument would be in the shell history and in ps."""
    for name in ("add", "edit"):
        command = cli_changes.cli.commands[name]
        options = [opt for param in command.params for opt in param.opts]
        assert "--password" not in options
        assert {"--password-env", "--password-stdin"} <= set(options)


def test_invalid_settings_exit_2_list_every_field_and_save_nothing(app):
    result = run(app, "add", "--server-name", "http://smtp.example.com", "--port", "99999",
                 "--from-address", "not an address", "--password-stdin",
                 input=f"{PASSWORD}\n")
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0] == "Error: nothing was changed: 4 fields are not valid:"
    assert [line.split(":")[0] for line in lines[1:]] == [
        "  username", "  server_name", "  port", "  from_address"]
    assert "  username: This field is required." in lines
    assert "  port: Enter a port number from 1 to 65535." in lines
    assert result.stdout == ""
    assert senders(app) == []


def test_invalid_settings_with_json_print_the_errors_map(app):
    result = run(app, *ADD, "--reply-to-address", "nope", "--json", "--password-stdin",
                 input=f"{PASSWORD}\n")
    assert result.exit_code == 2
    errors = json.loads(result.stdout)["errors"]
    assert list(errors) == ["reply_to_address"]
    assert errors["reply_to_address"].startswith("Enter a valid email address.")
    assert result.stderr.startswith("Error: nothing was changed: 1 field is not valid:\n"
                                    "  reply_to_address: Enter a valid email address.")
    assert senders(app) == []


def test_an_empty_password_is_a_field_error(app):
    result = run(app, *ADD, "--password-stdin", "--json", input="\n")
    assert result.exit_code == 2
    assert json.loads(result.stdout) == {"errors": {"password": "This field is required."}}
    assert "  password: This field is required." in result.stderr
    assert senders(app) == []


def test_a_refused_destination_is_a_field_error(make_app):
    app = make_app(SMTP_SENDERS_ALLOW_LOOPBACK=False)
    result = run(app, *ADD, "--server-name", "127.0.0.1", "--password-stdin",
                 input=f"{PASSWORD}\n")
    assert result.exit_code == 2
    assert "  server_name: " in result.stderr
    assert senders(app) == []


# -- edit -----------------------------------------------------------------------------


def test_edit_keeps_unspecified_settings_and_changes_the_given_ones(app, host):
    create(app, reply_to_name="Support")
    result = run(app, "edit", "1", "--port", "465", "--from-name", "",
                 "--reply-to-address", "help@example.com", "--password-stdin",
                 input=f"{NEW_PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert result.stdout == ("Saved sender #1 (version 2): changed port, from_name, "
                             "reply_to_address.\n")
    after = stored(app, 1)
    assert after.settings == SenderSettings(
        username="alice", server_name="smtp.example.com", port=465, from_name="",
        from_address="noreply@example.com", reply_to_name="Support",
        reply_to_address="help@example.com")
    assert after.version == 2
    assert password_of(app, 1) == NEW_PASSWORD
    updated = [e for e in host.events if isinstance(e, events.SenderUpdated)]
    assert [(e.actor, e.sender_id, set(e.changed_fields)) for e in updated] == [
        ("ops-cli", 1, {"port", "from_name", "reply_to_address", "password"})]
    assert_no_secret(app, result)


def test_edit_with_json_prints_the_saved_sender(app):
    create(app)
    result = run(app, "edit", "1", "--username", "bob", "--json", "--password-env", "PW",
                 env={"PW": PASSWORD})
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert (shown["username"], shown["version"], shown["from_name"]) == ("bob", 2, "Acme")
    assert_no_secret(app, result)


def test_edit_needs_the_password_again(app):
    create(app)
    before = stored(app, 1)
    missing = run(app, "edit", "1", "--port", "465")
    assert missing.exit_code == 2
    assert missing.stderr.startswith("Error: nothing was changed: no password")
    empty = run(app, "edit", "1", "--port", "465", "--password-stdin", input="")
    assert empty.exit_code == 2
    assert "  password: This field is required." in empty.stderr
    assert stored(app, 1) == before


def test_edit_with_a_stale_version_exits_2_and_changes_nothing(app):
    create(app)
    assert run(app, "edit", "1", "--from-name", "First", "--password-stdin",
               input=f"{PASSWORD}\n").exit_code == 0
    before = stored(app, 1)
    result = run(app, "edit", "1", "--from-name", "Second", "--version", "1",
                 "--password-stdin", input=f"{PASSWORD}\n")
    assert result.exit_code == 2
    assert result.stderr == ("Error: nothing was changed: sender #1 changed since it was "
                             "read; show it again (flask smtp-senders show 1) and retry.\n")
    assert stored(app, 1) == before and before.settings.from_name == "First"
    current = run(app, "edit", "1", "--from-name", "Second", "--version", "2",
                  "--password-stdin", input=f"{PASSWORD}\n")
    assert current.exit_code == 0, current.output
    assert stored(app, 1).settings.from_name == "Second"


def test_edit_of_an_unknown_sender_exits_2_before_asking_for_a_password(app, terminal):
    result = run(app, "edit", "99", "--port", "465", input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 2
    assert result.stderr == "Error: nothing was changed: there is no sender with id 99.\n"


def test_edit_validates_the_merged_settings(app):
    create(app)
    result = run(app, "edit", "1", "--port", "0", "--json", "--password-stdin",
                 input=f"{PASSWORD}\n")
    assert result.exit_code == 2
    assert json.loads(result.stdout) == {
        "errors": {"port": "Enter a port number from 1 to 65535."}}
    assert stored(app, 1).settings.port == 587


# -- delete ---------------------------------------------------------------------------


def test_delete_with_yes_deletes_and_passes_the_default_on(app, host):
    create(app)
    create(app, from_address="other@example.com")
    result = run(app, "delete", "1", "--yes")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Deleted sender #1.\n"
    assert [(s.id, s.is_default) for s in senders(app)] == [(2, True)]
    assert [(e.actor, e.sender_id) for e in host.events
            if isinstance(e, events.SenderDeleted)] == [("ops-cli", 1)]
    as_json = run(app, "delete", "2", "--yes", "--json")
    assert as_json.exit_code == 0
    assert json.loads(as_json.stdout) == {"id": 2, "deleted": True}
    assert senders(app) == []


def test_delete_without_yes_and_without_a_terminal_exits_2_and_keeps_it(app):
    create(app)
    result = run(app, "delete", "1", input="y\n")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: nothing was changed: stdin is not a terminal")
    assert "--yes" in result.stderr
    assert [s.id for s in senders(app)] == [1]


def test_delete_asks_for_confirmation_at_a_terminal(app, terminal):
    create(app)
    declined = run(app, "delete", "1", input="n\n")
    assert declined.exit_code == 2
    assert "Delete sender #1 smtp.example.com:587 STARTTLS <noreply@example.com>" \
           in declined.stderr
    assert "Error: nothing was changed: the deletion was not confirmed." in declined.stderr
    assert [s.id for s in senders(app)] == [1]
    confirmed = run(app, "delete", "1", input="y\n")
    assert confirmed.exit_code == 0, confirmed.output
    assert senders(app) == []


def test_delete_with_a_stale_version_or_an_unknown_id_exits_2(app):
    create(app)
    assert run(app, "edit", "1", "--password-stdin", input=f"{PASSWORD}\n").exit_code == 0
    stale = run(app, "delete", "1", "--yes", "--version", "1")
    assert stale.exit_code == 2
    assert "sender #1 changed since it was read; show it again" in stale.stderr
    unknown = run(app, "delete", "7", "--yes")
    assert unknown.exit_code == 2
    assert unknown.stderr == "Error: nothing was changed: there is no sender with id 7.\n"
    assert [s.id for s in senders(app)] == [1]
    assert run(app, "delete", "1", "--yes", "--version", "2").exit_code == 0


# -- set-default ----------------------------------------------------------------------


def test_set_default_switches_the_default(app, host):
    create(app)
    create(app, from_address="other@example.com")
    result = run(app, "set-default", "2")
    assert result.exit_code == 0, result.output
    assert result.stdout == ("Sender #2 smtp.example.com:587 STARTTLS <other@example.com> "
                             "is now the default.\n")
    assert [(s.id, s.is_default) for s in senders(app)] == [(1, False), (2, True)]
    back = run(app, "set-default", "1", "--json")
    assert back.exit_code == 0
    assert (json.loads(back.stdout)["id"], json.loads(back.stdout)["default"]) == (1, True)
    assert [(s.id, s.is_default) for s in senders(app)] == [(1, True), (2, False)]
    assert [e.changed_fields for e in host.events
            if isinstance(e, events.SenderUpdated)] == [("default",), ("default",)]
    assert_no_secret(app, result, back)


def test_set_default_of_an_unknown_sender_exits_2(app):
    create(app)
    result = run(app, "set-default", "5")
    assert result.exit_code == 2
    assert result.stderr == "Error: nothing was changed: there is no sender with id 5.\n"
    assert stored(app, 1).is_default


# -- failures: audit, database, unexpected ---------------------------------------------


class FailingAudit:
    """A host whose audit trail is down."""

    @hookimpl
    def smtp_senders_audit(self, event: Any) -> None:
        raise RuntimeError("the audit log is unreachable")


class ActorNeedsARequest:
    """A host actor hook that only works inside a web request."""

    @hookimpl
    def smtp_senders_actor(self) -> str:
        raise RuntimeError("Working outside of request context.")


def test_a_failing_audit_hook_rolls_the_change_back_with_exit_2(make_app):
    app = make_app(plugins=[FailingAudit()])
    result = run(app, *ADD, "--password-stdin", input=f"{PASSWORD}\n")
    assert result.exit_code == 2
    assert result.stderr == ("Error: nothing was changed: the audit hook failed (see the "
                             "log), so the change was rolled back.\n")
    assert "Traceback" not in result.output
    assert senders(app) == []


def test_a_failing_database_exits_2(app, monkeypatch):
    create(app)

    def fail(self, sender_id):
        raise StorageError("the database is down")

    monkeypatch.setattr(SenderService, "set_default_sender", fail)
    result = run(app, "set-default", "1")
    assert result.exit_code == 2
    assert result.stderr == ("Error: nothing was changed: the sender database failed (see "
                             "the log); try again.\n")


def test_an_unexpected_error_exits_3_and_is_logged(make_app, caplog):
    app = make_app(plugins=[ActorNeedsARequest()])
    result = run(app, *ADD, "--password-stdin", input=f"{PASSWORD}\n")
    assert result.exit_code == 3
    assert result.stderr.startswith("Error: add failed unexpectedly (RuntimeError); see "
                                    "the log.")
    assert "add failed" in caplog.text and "Working outside of request context" in caplog.text
    assert senders(app) == []


# -- test -----------------------------------------------------------------------------


@pytest.fixture
def server(smtp_server) -> RecordingServer:
    return smtp_server("implicit", users={"alice": PASSWORD})


def loopback_sender(app: Flask, server: RecordingServer, password: str = PASSWORD) -> Sender:
    return create(app, password, server_name=SERVER_NAME, port=server.port)


def test_test_sends_the_test_email_and_exits_0(app, server, host):
    sender = loopback_sender(app, server)
    result = run(app, "test", str(sender.id), "--to", "ops@example.org")
    assert result.exit_code == 0, result.output
    assert result.stdout == "A test message was successfully sent to ops@example.org.\n"
    [received] = server.messages
    assert received.rcpt_tos == ["ops@example.org"]
    assert received.mail_from == "noreply@example.com"
    assert received.message["Subject"] == DEFAULTS["SMTP_SENDERS_MSG_TEST_SUBJECT"]
    assert stored(app, sender.id).test_state is TestState.TESTED
    assert [(e.actor, e.recipient) for e in host.events
            if isinstance(e, events.TestEmailSent)] == [("ops-cli", "ops@example.org")]
    assert_no_secret(app, result)


def test_test_as_json_holds_the_result_and_its_diagnosis(app, server):
    sender = loopback_sender(app, server)
    result = run(app, "test", str(sender.id), "--to", "ops@example.org", "--json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert list(answer) == ["id", "ok", "stage", "message", "diagnosis"]
    assert (answer["id"], answer["ok"], answer["stage"]) == (sender.id, True, None)
    stages = [stage["name"] for stage in answer["diagnosis"]["stages"]]
    assert {"connect", "tls", "auth", "data"} <= set(stages)
    assert len(server.messages) == 1
    assert_no_secret(app, result)


def test_a_refused_password_exits_1_with_the_message(app, server):
    sender = loopback_sender(app, server, password=NEW_PASSWORD)  # not the server's
    result = run(app, "test", str(sender.id), "--to", "ops@example.org")
    assert result.exit_code == 1
    assert result.stdout == f"{AUTH_FAILED}\n"
    assert result.stderr.startswith("The test email failed at auth.")
    assert server.messages == [] and server.auth_attempts[0].succeeded is False
    as_json = run(app, "test", str(sender.id), "--to", "ops@example.org", "--json")
    assert as_json.exit_code == 1
    answer = json.loads(as_json.stdout)
    assert (answer["ok"], answer["stage"], answer["message"]) == (False, "auth", AUTH_FAILED)
    assert answer["diagnosis"]["stopped_at"] == "auth" and answer["diagnosis"]["advice"]
    assert stored(app, sender.id).test_state is TestState.NEVER
    assert_no_secret(app, result, as_json)


def test_a_bad_address_or_an_unknown_sender_sends_nothing_and_exits_2(app, server, host):
    sender = loopback_sender(app, server)
    bad = run(app, "test", str(sender.id), "--to", "not an address")
    assert bad.exit_code == 2
    assert bad.stderr.startswith("Error: nothing was sent: --to: Enter a valid email address.")
    as_json = run(app, "test", str(sender.id), "--to", "a@b@c", "--json")
    assert as_json.exit_code == 2
    assert list(json.loads(as_json.stdout)["errors"]) == ["recipient"]
    unknown = run(app, "test", "42", "--to", "ops@example.org")
    assert unknown.exit_code == 2
    assert unknown.stderr == "Error: nothing was sent: there is no sender with id 42.\n"
    missing = run(app, "test", str(sender.id))
    assert missing.exit_code == 2 and "Missing option '--to'" in missing.stderr
    assert server.connections == 0
    assert not [e for e in host.events if isinstance(e, events.TestEmailSent)]


def test_a_failing_database_sends_nothing_and_exits_2(app, server, monkeypatch):
    sender = loopback_sender(app, server)

    def fail(self, sender_id):
        raise StorageError("the database is down")

    monkeypatch.setattr(type(get_service(app).store), "get", fail)
    result = run(app, "test", str(sender.id), "--to", "ops@example.org")
    assert result.exit_code == 2
    assert result.stderr == ("Error: nothing was sent: the sender database failed (see the "
                             "log); try again.\n")
    assert server.connections == 0


# -- a real process: real stdin, real exit codes ----------------------------------------

HOST_APP = """
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from flask_smtp_senders import SMTPSenders

app = Flask(__name__)
app.config.update(SECRET_KEY="k", SQLALCHEMY_DATABASE_URI={url!r},
                  SMTP_SENDERS_ENCRYPTION_KEYS=[{key!r}], SMTP_SENDERS_DOMAIN_ADVICE=False,
                  SMTP_SENDERS_CREATE_TABLES=True)
SMTPSenders(app, db=SQLAlchemy(app))
"""


@pytest.fixture
def host_app(tmp_path, fernet_key) -> tuple[list[str], Flask]:
    """A host app module for a real ``flask`` process (SQLite), and the same app here."""
    url = f"sqlite:///{tmp_path / 'process.db'}"
    (tmp_path / "cli_host.py").write_text(HOST_APP.format(url=url, key=fernet_key))
    command = [sys.executable, "-m", "flask", "--app", "cli_host", "smtp-senders"]
    app = Flask("cli_host_here")
    app.config.update(SECRET_KEY="k", SQLALCHEMY_DATABASE_URI=url,
                      SMTP_SENDERS_ENCRYPTION_KEYS=[fernet_key],
                      SMTP_SENDERS_DOMAIN_ADVICE=False, SMTP_SENDERS_CREATE_TABLES=True)
    db = SQLAlchemy(app)
    SMTPSenders(app, db=db)
    yield command, app
    with app.app_context():
        db.engine.dispose()


def test_a_real_process_without_a_password_source_exits_2_instead_of_waiting(
        host_app, tmp_path):
    """stdin is an open pipe nobody writes to: reading it, or prompting, would hang."""
    command, app = host_app
    with subprocess.Popen([*command, *ADD], cwd=tmp_path, stdin=subprocess.PIPE,  # noqa: S603
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as process:
        try:
            process.wait(timeout=30)
        finally:
            process.kill()
        assert process.returncode == 2
        assert "no password: stdin is not a terminal" in process.stderr.read()
    assert senders(app) == []


def test_a_real_process_reads_the_first_line_of_piped_stdin(host_app, tmp_path):
    """The line's end is stripped, a Windows one too; the rest of stdin is not read."""
    command, app = host_app
    done = subprocess.run([*command, *ADD, "--password-stdin"], cwd=tmp_path,  # noqa: S603
                          input=f"{PASSWORD}\r\nsecond line\n", capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Added sender #1 ")
    assert password_of(app, 1) == PASSWORD
    assert_no_secret(app, *[_as_result(done)])


def _as_result(done: subprocess.CompletedProcess[str]) -> Any:
    """A finished process, seen as the sweep sees a runner's result."""
    return type("Finished", (), {"stdout": done.stdout, "stderr": done.stderr})()


# -- no secret anywhere, and registration ------------------------------------------------


def test_no_command_ever_prints_a_secret(app, server, terminal):
    """Every command, in both formats, succeeding and failing: the sweep finds nothing."""
    sender = loopback_sender(app, server)
    results = [
        run(app, *ADD, "--password-env", "PW", env={"PW": NEW_PASSWORD}),
        run(app, *ADD, "--json", input=f"{PASSWORD}\n{PASSWORD}\n"),
        run(app, "edit", str(sender.id), "--from-name", "X", input=f"{PASSWORD}\n{PASSWORD}\n"),
        run(app, "edit", str(sender.id), "--json", "--version", "1", "--password-env", "PW",
            env={"PW": PASSWORD}),
        run(app, "edit", str(sender.id), "--port", "x", "--json", "--password-env", "PW",
            env={"PW": PASSWORD}),
        run(app, "test", str(sender.id), "--to", "ops@example.org"),
        run(app, "test", str(sender.id), "--to", "ops@example.org", "--json"),
        run(app, "set-default", str(sender.id), "--json"),
        run(app, "show", str(sender.id), "--json"),
    ]
    assert [r.exit_code for r in results] == [0, 0, 0, 2, 2, 0, 0, 0, 0]
    victims = senders(app)
    secrets = secrets_of(app)
    assert len(secrets) >= 2 + 3 * len(victims)  # tokens, bindings, fingerprints swept
    results.append(run(app, "delete", "2", "--yes", "--json"))
    assert results[-1].exit_code == 0
    assert_no_secret(app, *results, known=secrets)


def test_the_commands_are_registered_whenever_the_group_is_imported():
    """Importing flask_smtp_senders.cli alone (as the app and the docs test do) brings
    the change commands, without a circular import."""
    code = ("from flask_smtp_senders.cli import cli; "
            "print(' '.join(sorted(cli.commands)))")
    listed = subprocess.run([sys.executable, "-c", code], capture_output=True,  # noqa: S603
                            text=True, check=True).stdout.split()
    assert {"add", "edit", "delete", "set-default", "test"} <= set(listed)
