"""``flask smtp-senders check``: the connection check of every sender from the command
line (issue 7, item 6), and its result recorded on the sender, listed and audited.

Real loopback servers (one reachable, one port where nothing listens, one refusing the
password), through Flask's CLI runner, on SQLite and PostgreSQL. The check is a dry run:
no server ever receives DATA.
"""

from __future__ import annotations

import json
import re

import pytest
from click.testing import Result
from flask import Flask

from flask_smtp_senders import SenderSettings, events, get_service
from flask_smtp_senders.errors import StorageError
from flask_smtp_senders.services.senders import SenderService
from flask_smtp_senders.settings import DEFAULTS
from flask_smtp_senders.storage.base import Sender, TestState
from tests.support.hosts import AuditingHost
from tests.support.pages import PREFIX, csrf
from tests.support.smtp_servers import SERVER_NAME, RecordingServer

PASSWORD = "Check-Pa55word-1"
PASSED = DEFAULTS["SMTP_SENDERS_MSG_CHECK_SUCCESS"]
CONNECT_FAILED = DEFAULTS["SMTP_SENDERS_MSG_CONNECT_FAILED"]
AUTH_FAILED = DEFAULTS["SMTP_SENDERS_MSG_AUTH_FAILED"]
TIME = rb"\d{4}-\d\d-\d\d \d\d:\d\d UTC"


class Host(AuditingHost):
    """An actor name for the command line unless told otherwise, and its checks."""

    def __init__(self, actor: str | None = "ops-cli") -> None:
        super().__init__(actor)

    def checks(self) -> list[tuple[str | None, int | None, str, str]]:
        return [(e.actor, e.sender_id, e.outcome, e.stage) for e in self.events
                if isinstance(e, events.ConnectionChecked)]


@pytest.fixture
def host() -> Host:
    return Host()


@pytest.fixture
def app(make_app, host) -> Flask:
    return make_app(plugins=[host])


@pytest.fixture
def server(smtp_server) -> RecordingServer:
    return smtp_server("implicit", users={"alice": PASSWORD})


def add(app: Flask, port: int, password: str = PASSWORD,
        from_address: str = "noreply@example.com") -> Sender:
    with app.app_context():
        return get_service(app).create_sender(SenderSettings(
            username="alice", server_name=SERVER_NAME, port=port,
            from_address=from_address), password)


@pytest.fixture
def two(app, server, closed_port) -> tuple[Sender, Sender]:
    """One sender whose server answers, one whose port nothing listens on."""
    return add(app, server.port), add(app, closed_port, from_address="down@example.com")


def invoke(app: Flask, *args: str) -> Result:
    result = app.test_cli_runner().invoke(args=["smtp-senders", "check", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def stored(app: Flask, sender_id: int) -> Sender:
    with app.app_context():
        return get_service(app).get_sender(sender_id)


def assert_dry_run(server: RecordingServer, checks: int) -> None:
    """The server was asked up to RCPT TO, then RSET: nothing was delivered."""
    assert server.messages == []
    assert "DATA" not in server.verbs
    assert server.verbs.count("RCPT") == checks and server.verbs.count("RSET") == checks


# -- output and exit codes --------------------------------------------------------------


def test_one_line_per_sender_and_exit_1_when_one_fails(app, two, server, closed_port):
    good, bad = two
    result = invoke(app)
    assert result.exit_code == 1
    refused = DEFAULTS["SMTP_SENDERS_ADVICE_CONNECTION_REFUSED"].format(port=closed_port)
    assert result.stdout.splitlines() == [
        f"#{good.id} {SERVER_NAME}:{server.port} <noreply@example.com>: ok: {PASSED}",
        f"#{bad.id} {SERVER_NAME}:{closed_port} <down@example.com>: failed at connect: "
        f"{CONNECT_FAILED}",
        f"  Suggested fix: {refused}",  # the diagnosis's advice, as the page shows it
    ]
    assert "1 of 2 senders failed the connection check." in result.stderr
    assert_dry_run(server, 1)


def test_exit_0_when_every_check_passes(app, server):
    sender = add(app, server.port)
    result = invoke(app)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"#{sender.id} {SERVER_NAME}:{server.port} " \
                            f"<noreply@example.com>: ok: {PASSED}\n"
    assert result.stderr == ""


def test_no_sender_exits_0_and_says_so(app):
    result = invoke(app)
    assert (result.exit_code, result.stdout) == (0, "")
    assert "No sender to check." in result.stderr


def test_json_lists_every_result_with_its_diagnosis(app, two, server, closed_port):
    good, bad = two
    refused = add(app, server.port, password="not-the-password",
                  from_address="refused@example.com")
    result = invoke(app, "--json")
    assert result.exit_code == 1
    answer = json.loads(result.stdout)
    assert [(r["id"], r["ok"], r["stage"], r["message"]) for r in answer] == [
        (good.id, True, None, PASSED),
        (bad.id, False, "connect", CONNECT_FAILED),
        (refused.id, False, "auth", AUTH_FAILED),
    ]
    assert [r["diagnosis"]["stopped_at"] for r in answer] == [None, "connect", "auth"]
    assert [(r["server_name"], r["port"]) for r in answer] == [
        (SERVER_NAME, server.port), (SERVER_NAME, closed_port), (SERVER_NAME, server.port)]
    stages = [stage["name"] for stage in answer[0]["diagnosis"]["stages"]]
    assert {"connect", "tls", "auth"} <= set(stages) and "data" not in stages
    assert not answer[1]["diagnosis"]["stages"][-1]["ok"]
    assert answer[2]["diagnosis"]["advice"]
    assert "Checking senders" not in result.stdout  # the bar is on stderr
    assert_dry_run(server, 1)


def test_sender_option_checks_that_one_only(app, two, server):
    good, bad = two
    result = invoke(app, "--sender", str(good.id))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"#{good.id} {SERVER_NAME}:{server.port} <noreply@example.com>: ok: {PASSED}"]
    assert "Checking senders" not in result.stderr  # no bar for one sender
    assert stored(app, bad.id).last_check_at is None
    failing = invoke(app, "--sender", str(bad.id), "--json")
    assert failing.exit_code == 1
    assert [r["id"] for r in json.loads(failing.stdout)] == [bad.id]


def test_unknown_sender_exits_2_and_checks_nothing(app, two, server, host):
    result = invoke(app, "--sender", "999")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Error: nothing was checked: there is no sender with id 999." in result.stderr
    assert server.connections == 0 and host.checks() == []


def test_to_sets_the_rcpt_address_and_a_bad_one_exits_2(app, two, server, host):
    good, _ = two
    bad = invoke(app, "--to", "not an address")
    assert bad.exit_code == 2 and "Error: nothing was checked: --to:" in bad.stderr
    assert server.connections == 0 and host.checks() == []
    result = invoke(app, "--sender", str(good.id), "--to", "postmaster@acme.example")
    assert result.exit_code == 0, result.output
    assert [c.argument for c in server.commands if c.verb == "RCPT"] == [
        "postmaster@acme.example"]
    assert_dry_run(server, 1)


def test_progress_bar_goes_to_stderr_for_many_senders(app, two):
    result = invoke(app)
    assert "Checking senders" in result.stderr
    assert "Checking senders" not in result.stdout


# -- recorded, listed, audited ----------------------------------------------------------


def test_results_are_recorded_and_shown_on_the_senders_list(app, two, closed_port):
    good, bad = two
    page = app.test_client().get(f"{PREFIX}/").data
    assert page.count(b"Not checked") == 2
    assert invoke(app).exit_code == 1
    passed, failed = stored(app, good.id), stored(app, bad.id)
    assert (passed.last_check_ok, passed.last_check_stage) == (True, None)
    assert (failed.last_check_ok, failed.last_check_stage) == (False, "connect")
    assert passed.last_check_at and passed.last_check_at.tzinfo is not None
    assert passed.version == good.version  # a check is not a save
    page = app.test_client().get(f"{PREFIX}/").data
    assert re.search(rb"Check passed</span> <time[^>]*>" + TIME, page)
    assert re.search(rb"Check failed: connect</span> <time[^>]*>" + TIME, page)
    assert b"Not checked" not in page


def test_a_passed_check_never_marks_a_sender_tested(app, two):
    good, _ = two
    assert invoke(app, "--sender", str(good.id)).exit_code == 0
    after = stored(app, good.id)
    assert after.test_state is TestState.NEVER
    assert (after.last_test_ok, after.tested_fingerprint) == (None, None)


def test_each_check_is_audited_once_with_the_cli_actor(app, two, host):
    good, bad = two
    invoke(app)
    assert host.checks() == [("ops-cli", good.id, "success", ""),
                             ("ops-cli", bad.id, "failure", "connect")]
    assert [type(e) for e in host.events] == [events.SenderCreated] * 2 + [
        events.ConnectionChecked] * 2


def test_without_an_actor_the_check_is_audited_with_none(make_app, server, closed_port):
    host = Host(actor=None)
    app = make_app(plugins=[host])
    sender = add(app, server.port)
    assert invoke(app).exit_code == 0
    assert host.checks() == [(None, sender.id, "success", "")]


def test_the_page_records_its_check_too(app, server):
    """Recording lives in service.check_connection, so the page's check is listed."""
    sender = add(app, server.port)
    client = app.test_client()
    page = client.get(f"{PREFIX}/{sender.id}")
    answer = client.post(f"{PREFIX}/{sender.id}/check",
                         headers={"Accept": "application/json"},
                         data={"csrf_token": csrf(page.data), "recipient": ""})
    assert answer.status_code == 200 and answer.json["ok"] is True
    assert stored(app, sender.id).last_check_ok is True
    assert b"Check passed" in client.get(f"{PREFIX}/").data
    assert_dry_run(server, 1)


def test_a_check_that_cannot_be_recorded_still_reports(app, two, monkeypatch):
    """A store failure while recording loses the record, not the result."""
    good, _ = two
    with app.app_context():
        service: SenderService = get_service(app)

        def broken(*args, **kwargs):
            raise StorageError("down")

        monkeypatch.setattr(service.store, "record_check", broken)
        assert service.check_connection(good.id).ok
    assert stored(app, good.id).last_check_at is None
