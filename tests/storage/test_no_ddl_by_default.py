"""Start-up runs no DDL by default (issue 15): ``SMTP_SENDERS_CREATE_TABLES`` is off, so
``init_app`` leaves the database as it is. Until ``flask smtp-senders upgrade`` (or the
host's migrations) has made the table, every way in — the pages, the JSON API, the CLI and
the sending API — gives one clear message naming that command: no 500, no traceback.
On SQLite and PostgreSQL (the ``database`` fixture)."""

from __future__ import annotations

from email.message import EmailMessage

import pytest
from flask import Flask
from sqlalchemy import create_engine, inspect

from flask_smtp_senders import SenderSettings, StorageError, TableMissing, get_service, hookimpl
from flask_smtp_senders.settings import DEFAULTS
from tests.support.cases import good_fields, token_of
from tests.support.smtp_servers import LOOPBACK, SERVER_NAME

MESSAGE = DEFAULTS["SMTP_SENDERS_MSG_TABLE_MISSING"]
COMMAND = "flask smtp-senders upgrade"
API = "/settings/senders/api"
PAGES = "/settings/senders/"
TOKEN = {"Authorization": "Bearer script"}


class Admin:
    """Allowed everything, the test server name routed to loopback, bearer calls trusted."""

    @hookimpl
    def smtp_senders_authorize(self, action, sender_id):
        return True

    @hookimpl
    def smtp_senders_resolve(self, server_name, port):
        return [LOOPBACK] if server_name == SERVER_NAME else None

    @hookimpl
    def smtp_senders_api_token_authenticated(self):
        return True


@pytest.fixture
def app(make_app) -> Flask:
    """A host that keeps the default (make_app turns creation on; this gives it back)."""
    return make_app(plugins=[Admin()], SMTP_SENDERS_CREATE_TABLES=DEFAULTS[
        "SMTP_SENDERS_CREATE_TABLES"])


def tables(database) -> set[str]:
    engine = create_engine(database.url, **database.engine_options)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def cli(app: Flask, *args: str):
    return app.test_cli_runner().invoke(args=["smtp-senders", *args])


def note() -> EmailMessage:
    message = EmailMessage()
    message["To"] = "user@example.com"
    message["Subject"] = "Notification"
    message.set_content("Body.\n")
    return message


def test_the_default_is_off_and_init_app_creates_no_table(app, database) -> None:
    """Nothing at all is created: neither our table nor Alembic's version table."""
    assert DEFAULTS["SMTP_SENDERS_CREATE_TABLES"] is False
    assert app.config["SMTP_SENDERS_CREATE_TABLES"] is False
    assert COMMAND in MESSAGE and "SMTP_SENDERS_CREATE_TABLES" in MESSAGE
    assert tables(database) == set()


def test_the_list_page_says_which_command_creates_the_table(app) -> None:
    answer = app.test_client().get(PAGES)
    assert answer.status_code == 503
    page = answer.get_data(as_text=True)
    assert "flask smtp-senders upgrade" in page
    assert "The smtp_senders table does not exist yet" in page
    assert "cannot be reached" not in page and "Traceback" not in page


def test_saving_a_new_sender_flashes_the_message(app) -> None:
    """The form page needs no table; its save says which command to run, not "could
    not be saved"."""
    client = app.test_client()
    answer = client.post(f"{PAGES}new/email/custom",
                         data=good_fields(csrf_token=token_of(client)))
    page = answer.get_data(as_text=True)
    assert "flask smtp-senders upgrade" in page and "could not be saved" not in page
    assert answer.status_code != 500


def test_the_list_page_as_json_gives_the_message(app) -> None:
    answer = app.test_client().get(PAGES, headers={"Accept": "application/json"})
    assert answer.status_code == 503
    assert answer.json == {"ok": False, "message": MESSAGE}


def test_the_api_answers_503_with_the_message(app) -> None:
    client = app.test_client()
    for answer in (client.get(f"{API}/senders", headers=TOKEN),
                   client.get(f"{API}/senders/1", headers=TOKEN),
                   client.post(f"{API}/senders", headers=TOKEN, json={
                       "username": "alice", "password": "Pa55word-1",
                       "server_name": SERVER_NAME, "port": 465,
                       "from_address": "noreply@example.com"})):
        assert answer.status_code == 503, answer.get_data(as_text=True)
        assert answer.mimetype == "application/problem+json"
        assert answer.json["title"] == MESSAGE
        assert answer.json["type"] == "urn:flask-smtp-senders:problem:unavailable"


def test_the_cli_exits_2_with_the_message(app) -> None:
    """One line on stderr, ending with the message; exit 2 (nothing read, checked or
    changed), as for any other database failure."""
    for args in (("list",), ("list", "--json"), ("show", "1"), ("check",), ("rotate-keys",),
                 ("delete", "1", "--yes"), ("set-default", "1"),
                 ("test", "1", "--to", "a@example.com")):
        result = cli(app, *args)
        assert result.exit_code == 2, (args, result.output)
        assert result.stdout == "", args
        assert result.stderr.startswith("Error: "), args
        assert result.stderr.endswith(f"{MESSAGE}\n"), (args, result.stderr)
        assert result.stderr.count("\n") == 1, args
        assert "Traceback" not in result.output
    assert cli(app, "list").stderr == f"Error: {MESSAGE}\n"


def test_sending_raises_an_error_naming_the_command(app) -> None:
    with app.app_context():
        mailer = get_service(app).mailer
        for sender in (None, 1):  # the default sender, or one by id
            with pytest.raises(TableMissing) as raised:
                mailer.send(note(), sender)
            assert str(raised.value) == MESSAGE
            assert isinstance(raised.value, StorageError)  # what hosts already catch
            with pytest.raises(TableMissing):
                mailer.send_many([note()], sender)


def test_the_message_is_a_setting(make_app) -> None:
    text = "Table manquante : lancez `flask smtp-senders upgrade`."
    app = make_app(plugins=[Admin()], SMTP_SENDERS_CREATE_TABLES=False,
                   SMTP_SENDERS_MSG_TABLE_MISSING=text)
    assert app.test_client().get(f"{API}/senders", headers=TOKEN).json["title"] == text
    assert cli(app, "list").stderr == f"Error: {text}\n"
    with app.app_context(), pytest.raises(TableMissing, match="Table manquante"):
        get_service(app).mailer.send(note())


def test_after_the_upgrade_everything_works(app, database, smtp_server) -> None:
    upgraded = cli(app, "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    assert "smtp_senders" in tables(database)
    client = app.test_client()
    assert client.get(PAGES).status_code == 200
    assert client.get(f"{API}/senders", headers=TOKEN).json == {"senders": []}
    listed = cli(app, "list", "--json")
    assert listed.exit_code == 0 and listed.stdout.strip() == "[]"
    server = smtp_server("implicit")
    with app.app_context():
        service = get_service(app)
        sender = service.create_sender(SenderSettings(
            username="alice", server_name=SERVER_NAME, port=server.port,
            from_address="noreply@example.com"), "s3cret")
        assert service.mailer.send(note()).ok
    assert len(server.messages) == 1
    assert client.get(f"{API}/senders/{sender.id}", headers=TOKEN).status_code == 200


def test_turned_on_init_app_creates_the_table(make_app, database) -> None:
    """The opt-in still works (make_app turns it on, as the tests and the demo do)."""
    make_app()
    assert "smtp_senders" in tables(database)
