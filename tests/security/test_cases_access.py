"""Security cases E (authorisation, CSRF, audit) and F (storage failures, concurrent edits),
through the pages, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import sqlite3
import time
import uuid

import pytest
from flask import request
from markupsafe import escape
from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from flask_smtp_senders import hookimpl
from flask_smtp_senders.events import (
    SenderCreated,
    SenderDeleted,
    SenderUpdated,
    TestEmailFailed,
    TestEmailSent,
)
from tests.support.cases import (
    CASE_CONFIG,
    PREFIX,
    RECIPIENT,
    BrokenAudit,
    Host,
    create_via_form,
    csrf,
    edit_via_form,
    form_values,
    good_fields,
    leaks,
    msg,
    outcome,
    routed_host,
    secret_forms,
    snapshot,
    stored_password,
    token_of,
)
from tests.support.databases import engine_options, locked
from tests.support.smtp_servers import LOOPBACK, SERVER_NAME

PASSWORD = "Access-Case-Pa55"
JSON = {"Accept": "application/json"}


@pytest.fixture
def host() -> Host:
    return routed_host()


@pytest.fixture
def app(make_app, host):
    return make_app(plugins=[host], **CASE_CONFIG)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def server(smtp_server):
    return smtp_server("implicit", users={"alice": PASSWORD})


@pytest.fixture
def sender_id(client, server) -> int:
    answer = create_via_form(client, server_name=SERVER_NAME, port=str(server.port),
                             password=PASSWORD)
    assert answer.status_code == 302
    return int(answer.location.rsplit("/", 1)[1])


def post_data(sender_id: int, token: str | None) -> dict[str, dict[str, str]]:
    """A valid body for every POST route (token aside)."""
    bodies = {
        f"{PREFIX}/new": {"sender_type": "email", "provider_type": "custom"},
        f"{PREFIX}/new/email/custom": good_fields(password=PASSWORD),
        f"{PREFIX}/{sender_id}": {**good_fields(password=PASSWORD), "version": "1"},
        f"{PREFIX}/{sender_id}/test": {"recipient": RECIPIENT},
        f"{PREFIX}/{sender_id}/delete": {"version": "1"},
    }
    if token is not None:
        for body in bodies.values():
            body["csrf_token"] = token
    return bodies


# -- E1: authorisation ----------------------------------------------------------------------


class RoutesOnly:
    """A host that implements no authorisation hook at all."""

    @hookimpl
    def smtp_senders_resolve(self, server_name, port):
        return [LOOPBACK]


def test_every_route_is_403_unless_the_hook_says_yes(make_app, app, client, host, server,
                                                     sender_id):
    """Case E1: every route and method (list, +, create, edit, delete, test email as a page
    and as JSON, static files, an unknown id) answers 403 to an anonymous user (the hook
    has no opinion), a non-admin (the hook says no), when the hook raises, and in an app
    with no authorisation hook at all; nothing changes and nothing is sent."""

    def by_role(action, sender_id):
        role = request.headers.get("X-Role")
        if role == "admin":
            return True
        if role == "broken":
            raise RuntimeError("session store down")
        return False if role == "editor" else None

    host.allow = by_role
    token = csrf(client.get(f"{PREFIX}/{sender_id}", headers={"X-Role": "admin"}).data)
    before, events_before = snapshot(app), list(host.events)
    gets = [f"{PREFIX}/", f"{PREFIX}/new", f"{PREFIX}/new/email/custom",
            f"{PREFIX}/{sender_id}", f"{PREFIX}/{sender_id}/delete",
            f"{PREFIX}/static/senders.css", f"{PREFIX}/static/senders.js", f"{PREFIX}/999",
            f"{PREFIX}/999/delete"]
    posts = {**post_data(sender_id, token), f"{PREFIX}/999": {"csrf_token": token},
             f"{PREFIX}/999/test": {"csrf_token": token, "recipient": RECIPIENT}}
    allowed = []
    for role in (None, "editor", "broken"):
        headers = {"X-Role": role} if role else {}
        for accept in ({}, JSON):
            for url in gets:
                if client.get(url, headers={**headers, **accept}).status_code != 403:
                    allowed.append((role, "GET", url, accept))
            for url, body in posts.items():
                if client.post(url, data=body, headers={**headers, **accept}
                               ).status_code != 403:
                    allowed.append((role, "POST", url, accept))
    assert not allowed, allowed
    assert ("test", sender_id) in host.asked and ("delete", sender_id) in host.asked
    assert ("update", 999) in host.asked and ("list", None) in host.asked

    no_hook = make_app(plugins=[RoutesOnly()], **CASE_CONFIG).test_client()
    for url in gets:
        assert no_hook.get(url).status_code == 403, url
    for url, body in posts.items():
        assert no_hook.post(url, data=body, headers=JSON).status_code == 403, url

    assert snapshot(app) == before and host.events == events_before
    assert server.connections == 0
    assert client.get(f"{PREFIX}/", headers={"X-Role": "admin"}).status_code == 200


# -- E2: CSRF -----------------------------------------------------------------------------------


def test_every_post_without_a_valid_csrf_token_is_400_and_changes_nothing(app, client, host,
                                                                        server, sender_id):
    """Case E2: each POST (the + step, create, edit, test email, delete), as a form and as
    a fetch asking for JSON, with no token, an empty one, a forged one, a tampered one or
    a valid token of another session, answers 400; nothing is stored, changed, deleted,
    sent or audited."""
    own = token_of(client)
    other_session = token_of(app.test_client())
    before, events_before = snapshot(app), list(host.events)
    wrong = []
    for label, token in [("missing", None), ("empty", ""), ("forged", "forged-token"),
                         ("tampered", own[:-4] + "AAAA"), ("other session", other_session)]:
        for headers in ({}, {**JSON, "X-Requested-With": "fetch"}):
            for url, body in post_data(sender_id, token).items():
                answer = client.post(url, data=body, headers=headers)
                if answer.status_code != 400:
                    wrong.append((label, url, headers, answer.status_code))
    assert not wrong, wrong
    assert snapshot(app) == before and host.events == events_before
    assert server.connections == 0
    assert client.post(f"{PREFIX}/{sender_id}/test", headers=JSON, data={
        "csrf_token": own, "recipient": RECIPIENT}).json["ok"] is True  # the token works


# -- E3: the audit trail ----------------------------------------------------------------------


def test_audit_events_carry_actor_sender_action_outcome_and_time_without_secrets(
        app, client, host, server):
    """Case E3: create, test email (passed and failed), update and delete each emit one
    event with the actor, the sender id, the action, the outcome and an aware UTC time;
    CR and LF in the actor are escaped; no event holds a password or a token."""
    host.actor = "eve\r\nINFO 2026-01-01 admin logged in"
    started = datetime.datetime.now(datetime.timezone.utc)
    created = create_via_form(client, server_name=SERVER_NAME, port=str(server.port),
                              password=PASSWORD)
    sender_id = int(created.location.rsplit("/", 1)[1])
    tokens = [row[3].decode() for row in snapshot(app)]
    test_url = f"{PREFIX}/{sender_id}/test"
    assert client.post(test_url, headers=JSON, data={"csrf_token": token_of(client),
                                                     "recipient": RECIPIENT}).json["ok"]
    assert edit_via_form(client, sender_id, from_name="Renamed",
                         password="Wrong-Now-Pa55").status_code == 302
    tokens += [row[3].decode() for row in snapshot(app)]
    assert not client.post(test_url, headers=JSON, data={"csrf_token": token_of(client),
                                                         "recipient": RECIPIENT}).json["ok"]
    confirm = client.get(f"{PREFIX}/{sender_id}/delete")
    assert client.post(f"{PREFIX}/{sender_id}/delete", data={
        "csrf_token": csrf(confirm.data), "version": form_values(confirm.data)["version"]},
    ).status_code == 302
    finished = datetime.datetime.now(datetime.timezone.utc)

    kinds = [(type(e), e.action, e.outcome) for e in host.events]
    assert kinds == [(SenderCreated, "sender_created", "success"),
                     (TestEmailSent, "test_email_sent", "success"),
                     (SenderUpdated, "sender_updated", "success"),
                     (TestEmailFailed, "test_email_failed", "failure"),
                     (SenderDeleted, "sender_deleted", "success")]
    needles = [*secret_forms(PASSWORD, "alice"), *secret_forms("Wrong-Now-Pa55", "alice"),
               *tokens]
    for audit in host.events:
        assert audit.sender_id == sender_id
        assert audit.actor == "eve\\r\\nINFO 2026-01-01 admin logged in"
        assert audit.occurred_at.utcoffset() == datetime.timedelta(0)
        assert started <= audit.occurred_at <= finished
        shown = repr(audit) + repr(dataclasses.asdict(audit))
        assert "\r" not in shown.replace("\\r", "") and not leaks(shown, needles)
    assert set(host.events[2].changed_fields) == {"from_name", "password"}
    assert host.events[1].recipient == host.events[3].recipient == RECIPIENT
    assert host.events[3].stage == "auth"


# -- E4: an audit hook that raises ------------------------------------------------------------


def test_failing_audit_rolls_changes_back_and_lets_a_send_result_stand(make_app, server,
                                                                       caplog):
    """Case E4: with an audit hook that raises, create, edit and delete fail closed: the
    form comes back with the save-failed message and nothing changed; a test email, which
    cannot be unsent, keeps its result and is recorded; the hook's error goes to the log
    only."""
    host = BrokenAudit()
    host.routes = {SERVER_NAME: [LOOPBACK]}
    app = make_app(plugins=[host], **CASE_CONFIG)
    client = app.test_client()
    created = create_via_form(client, server_name=SERVER_NAME, port=str(server.port),
                              password=PASSWORD)
    sender_id = int(created.location.rsplit("/", 1)[1])
    before = snapshot(app)
    host.failing = True
    save_failed = str(escape(msg("save_failed"))).encode()

    answers = {
        "create": create_via_form(client, from_name="Unaudited", password=PASSWORD),
        "edit": edit_via_form(client, sender_id, from_name="Unaudited", password="Other-Pa55"),
    }
    confirm = client.get(f"{PREFIX}/{sender_id}/delete")
    answers["delete"] = client.post(f"{PREFIX}/{sender_id}/delete", follow_redirects=True,
                                    data={"csrf_token": csrf(confirm.data),
                                          "version": form_values(confirm.data)["version"]})
    for action, answer in answers.items():
        assert answer.status_code == 200, action
        assert save_failed in answer.data, action
        assert b"do-not-show-this" not in answer.data, action
    assert form_values(answers["edit"].data)["from_name"] == "Unaudited"
    assert form_values(answers["edit"].data)["password"] == ""
    assert snapshot(app) == before
    assert stored_password(app, sender_id) == PASSWORD

    caplog.set_level(logging.ERROR)
    test = client.post(f"{PREFIX}/{sender_id}/test", headers=JSON,
                       data={"csrf_token": token_of(client), "recipient": RECIPIENT})
    assert outcome(test) == {"ok": True, "message": msg("test_success", recipient=RECIPIENT)}
    assert len(server.messages) == 1
    assert "smtp_senders_audit raised for test_email_sent" in caplog.text
    assert b"Last test passed" in client.get(f"{PREFIX}/").data


# -- F1: the database fails mid-save ---------------------------------------------------------


@pytest.fixture
def slow_lock_app(make_app, database, host):
    return make_app(plugins=[host], **CASE_CONFIG,
                    SQLALCHEMY_ENGINE_OPTIONS=engine_options(database))


def test_save_on_a_locked_database_re_renders_the_form_and_keeps_the_row(
        slow_lock_app, database):
    """Case F1: the table is locked by another connection (SQLite BEGIN IMMEDIATE,
    PostgreSQL LOCK TABLE ... EXCLUSIVE, short waits): create, edit and delete answer with
    the form (or page) and the save-failed message, never a 500; the previous row is
    intact, and the same save works once the lock is gone."""
    app = slow_lock_app
    client = app.test_client()
    sender_id = int(create_via_form(client, password=PASSWORD).location.rsplit("/", 1)[1])
    before = snapshot(app)
    save_failed = str(escape(msg("save_failed"))).encode()
    with locked(database, readers_too=False):
        created = create_via_form(client, from_name="Blocked create")
        edited = edit_via_form(client, sender_id, from_name="Blocked edit", password="New-Pa55")
        confirm = client.get(f"{PREFIX}/{sender_id}/delete")
        deleted = client.post(f"{PREFIX}/{sender_id}/delete", follow_redirects=True, data={
            "csrf_token": csrf(confirm.data), "version": form_values(confirm.data)["version"]})
    for action, answer in {"create": created, "edit": edited, "delete": deleted}.items():
        assert answer.status_code == 200, (action, answer.status_code)
        assert save_failed in answer.data, action
    assert form_values(created.data)["from_name"] == "Blocked create"
    assert form_values(edited.data)["from_name"] == "Blocked edit"
    assert form_values(edited.data)["password"] == ""
    assert snapshot(app) == before
    assert stored_password(app, sender_id) == PASSWORD

    retry = {**form_values(edited.data), "csrf_token": csrf(edited.data), "password": "New-Pa55"}
    assert client.post(f"{PREFIX}/{sender_id}", data=retry).status_code == 302
    assert stored_password(app, sender_id) == "New-Pa55"


def test_reads_on_an_unreachable_database_answer_503_with_the_storage_message(
        slow_lock_app, database):
    """Case F1: with readers locked out too (SQLite BEGIN EXCLUSIVE, PostgreSQL ACCESS
    EXCLUSIVE): the list, the edit page, an edit and a test email (page and JSON) answer
    503 with the storage message; a create answers the form with the save-failed
    message; never a 500, nothing changed."""
    app = slow_lock_app
    client = app.test_client()
    sender_id = int(create_via_form(client, password=PASSWORD).location.rsplit("/", 1)[1])
    token = token_of(client)
    before = snapshot(app)
    unavailable = msg("storage_unavailable")
    with locked(database, readers_too=True):
        pages = {"list": client.get(f"{PREFIX}/"),
                 "edit page": client.get(f"{PREFIX}/{sender_id}"),
                 "edit": client.post(f"{PREFIX}/{sender_id}", data={
                     **good_fields(), "csrf_token": token, "version": "1"}),
                 "test": client.post(f"{PREFIX}/{sender_id}/test", data={
                     "csrf_token": token, "recipient": RECIPIENT})}
        as_json = client.post(f"{PREFIX}/{sender_id}/test", headers=JSON,
                              data={"csrf_token": token, "recipient": RECIPIENT})
        created = create_via_form(client, from_name="Blocked create")
    for what, page in pages.items():
        assert page.status_code == 503, (what, page.status_code)
        assert str(escape(unavailable)).encode() in page.data, what
    assert (as_json.status_code, as_json.json) == (503, {"ok": False, "message": unavailable})
    assert created.status_code == 200
    assert str(escape(msg("save_failed"))).encode() in created.data
    assert snapshot(app) == before


class ConnectionKiller:
    """Breaks the store's connection at flush time: on PostgreSQL it terminates its own
    backend (pg_terminate_backend); SQLite has no backend to kill, so the flush raises
    the OperationalError a vanished disk or a killed connection gives."""

    def __init__(self, database) -> None:
        self.database = database
        self.armed = False

    def __call__(self, session, flush_context, instances) -> None:
        if not self.armed:
            return
        self.armed = False
        if self.database.kind == "sqlite":
            raise OperationalError("UPDATE smtp_senders", {}, sqlite3.OperationalError(
                "disk I/O error"))
        pid = session.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with self.database.raw_connect() as conn:
            assert conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
            for _ in range(100):  # the backend exits when it sees the signal
                if not conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s",
                                    (pid,)).fetchone():
                    break
                time.sleep(0.02)


def test_connection_lost_mid_save_rolls_back_and_re_renders_the_form(make_app, database,
                                                                    host):
    """Case F1: the database connection dies in the middle of a save (PostgreSQL: our
    backend terminated at flush; SQLite: the flush fails): the edit form comes back with
    the save-failed message, not a 500; the previous row is intact; the retry works."""
    app = make_app(plugins=[host], **CASE_CONFIG, SQLALCHEMY_ENGINE_OPTIONS=engine_options(
        database, **({} if database.kind == "sqlite" else
                     {"application_name": f"f1-{uuid.uuid4().hex[:8]}"})))
    client = app.test_client()
    sender_id = int(create_via_form(client, password=PASSWORD).location.rsplit("/", 1)[1])
    before = snapshot(app)
    killer = ConnectionKiller(database)
    event.listen(Session, "before_flush", killer)
    try:
        killer.armed = True
        edited = edit_via_form(client, sender_id, from_name="Lost", password="Lost-Pa55")
        assert not killer.armed, "the save never reached a flush"
    finally:
        event.remove(Session, "before_flush", killer)
    assert edited.status_code == 200
    assert str(escape(msg("save_failed"))).encode() in edited.data
    assert form_values(edited.data)["from_name"] == "Lost"
    assert snapshot(app) == before
    assert stored_password(app, sender_id) == PASSWORD
    retry = {**form_values(edited.data), "csrf_token": csrf(edited.data), "password": "Lost-Pa55"}
    assert client.post(f"{PREFIX}/{sender_id}", data=retry).status_code == 302
    assert stored_password(app, sender_id) == "Lost-Pa55"


# -- F2: two administrators ----------------------------------------------------------------


def test_two_admins_the_stale_save_and_delete_get_a_conflict_and_nothing_is_lost(app, host):
    """Case F2: two admins open the same sender; the first saves; the second's save from
    the old version gets the conflict message with its typed values kept and changes
    nothing; its delete from the old version is refused too; after reviewing, its save
    goes through. No update is lost or audited twice."""
    first, second = app.test_client(), app.test_client()
    sender_id = int(create_via_form(first, password=PASSWORD).location.rsplit("/", 1)[1])
    url = f"{PREFIX}/{sender_id}"
    first_page, second_page = first.get(url), second.get(url)
    second_confirm = second.get(f"{url}/delete")
    host.events.clear()

    saved = first.post(url, data={**form_values(first_page.data), "csrf_token": csrf(
        first_page.data), "from_name": "First admin", "password": "First-Pa55"})
    assert saved.status_code == 302
    stale = second.post(url, data={**form_values(second_page.data), "csrf_token": csrf(
        second_page.data), "from_name": "Second admin", "password": "Second-Pa55"})
    assert stale.status_code == 200
    assert str(escape(msg("conflict"))).encode() in stale.data
    assert form_values(stale.data)["from_name"] == "Second admin"
    assert form_values(stale.data)["password"] == ""
    after_first = snapshot(app)
    assert after_first[0][1] == 2 and after_first[0][2].from_name == "First admin"
    assert stored_password(app, sender_id) == "First-Pa55"

    deleted = second.post(f"{url}/delete", follow_redirects=True, data={
        "csrf_token": csrf(second_confirm.data),
        "version": form_values(second_confirm.data)["version"]})
    assert str(escape(msg("conflict"))).encode() in deleted.data
    assert snapshot(app) == after_first

    retry = {**form_values(stale.data), "csrf_token": csrf(stale.data), "password": "Second-Pa55"}
    assert second.post(url, data=retry).status_code == 302
    [(_, version, settings, _, _)] = snapshot(app)
    assert (version, settings.from_name) == (3, "Second admin")
    assert [type(e) for e in host.events] == [SenderUpdated, SenderUpdated]


def test_a_page_of_a_deleted_sender_cannot_change_a_later_one_given_its_id(app, host):
    """Case F2: the second admin's pages are of a sender the first admin deleted and then
    replaced; SQLite gives the new sender the old id. Saving or deleting from those pages
    is a conflict: the newcomer is neither overwritten nor deleted."""
    first, second = app.test_client(), app.test_client()
    url = create_via_form(first, password=PASSWORD).location
    old_page, old_confirm = second.get(url), second.get(f"{url}/delete")
    confirm = first.get(f"{url}/delete")
    assert first.post(f"{url}/delete", data={"csrf_token": csrf(confirm.data),
                                             "version": form_values(confirm.data)["version"]}
                      ).status_code == 302
    new_url = create_via_form(first, from_name="The newcomer", password="New-Pa55").location
    newcomer = snapshot(app)
    assert form_values(old_page.data)["version"] != form_values(first.get(new_url).data)[
        "version"]

    if new_url != url:  # PostgreSQL never reuses an id: the old pages find nothing
        assert second.post(url, data={**form_values(old_page.data), "csrf_token": csrf(
            old_page.data), "password": "Second-Pa55"}).status_code == 404
        return
    stale = second.post(url, data={**form_values(old_page.data), "csrf_token": csrf(
        old_page.data), "from_name": "Second admin", "password": "Second-Pa55"})
    assert stale.status_code == 200 and str(escape(msg("conflict"))).encode() in stale.data
    deleted = second.post(f"{url}/delete", follow_redirects=True, data={
        "csrf_token": csrf(old_confirm.data),
        "version": form_values(old_confirm.data)["version"]})
    assert str(escape(msg("conflict"))).encode() in deleted.data
    assert snapshot(app) == newcomer and newcomer[0][2].from_name == "The newcomer"
