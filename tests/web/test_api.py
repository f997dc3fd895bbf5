"""The JSON API: the pages' rules (authorisation, CSRF for cookie calls, validation, the
write-only password, optimistic locking, rate limit, audit) for scripts, with RFC 9457
problems for every error, on SQLite and PostgreSQL and against real loopback SMTP servers.
"""

from __future__ import annotations

import json
import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_smtp_senders import get_service
from flask_smtp_senders.events import (
    ConnectionChecked,
    SenderCreated,
    SenderDeleted,
    SenderUpdated,
    TestEmailSent,
)
from tests.support.cases import (
    CASE_CONFIG,
    RECIPIENT,
    BrokenAudit,
    Host,
    msg,
    routed_host,
    secret_forms,
    snapshot,
    stored_password,
    token_of,
)
from tests.support.databases import engine_options, locked
from tests.support.smtp_servers import SERVER_NAME

API = "/settings/senders/api"
PASSWORD = "Api-Pa55word-1"
TOKEN = {"Authorization": "Bearer script"}  # the Host below allows it: any token passes
PROBLEM = "application/problem+json"


def good(**overrides: object) -> dict[str, object]:
    return {"username": "alice", "password": PASSWORD, "server_name": SERVER_NAME,
            "port": 587, "from_name": "Acme", "from_address": "noreply@example.com",
            **overrides}


@pytest.fixture
def host() -> Host:
    return routed_host()


@pytest.fixture
def app(make_app, host) -> Flask:
    return make_app(plugins=[host], **CASE_CONFIG)


@pytest.fixture
def client(app) -> FlaskClient:
    return app.test_client()


def create(client: FlaskClient, **fields: object):
    return client.post(f"{API}/senders", json=good(**fields), headers=TOKEN)


def problem(answer, status: int, kind: str | None = None) -> dict[str, object]:
    """The problem details of ``answer``, checked for their RFC 9457 shape."""
    assert answer.status_code == status, answer.get_data(as_text=True)
    assert answer.mimetype == PROBLEM
    body = answer.json
    assert body["status"] == status and body["title"]
    assert body["type"] == (f"urn:flask-smtp-senders:problem:{kind}" if kind else "about:blank")
    return body


def secrets_of(app: Flask, *passwords: str) -> list[str]:
    """Every form of every password given, and every stored token, binding, fingerprint."""
    found = [form for password in passwords for form in secret_forms(password, "alice")]
    with app.app_context():
        for sender in get_service(app).list_senders():
            found += [sender.password.token, sender.password_binding or "",
                      sender.settings_fingerprint or ""]
    return [value.decode() if isinstance(value, bytes) else value for value in found if value]


# -- create, read, list ------------------------------------------------------------------------


def test_create_saves_an_encrypted_sender_and_answers_with_it_but_never_its_password(
        app, client, host) -> None:
    answer = create(client)
    assert answer.status_code == 201
    body = answer.json
    assert answer.headers["Location"] == f"{API}/senders/{body['id']}"
    assert re.fullmatch(r'"1\.[0-9a-f]{8}"', answer.headers["ETag"])
    assert body | {"id": 0} == {
        "id": 0, "version": 1, "username": "alice", "server_name": SERVER_NAME, "port": 587,
        "mode": "STARTTLS", "from_name": "Acme", "from_address": "noreply@example.com",
        "reply_to_name": "", "reply_to_address": "", "default": True, "test_state": "never",
        "last_test_ok": None, "last_test_at": None, "last_check_ok": None,
        "last_check_at": None, "last_check_stage": None, "password_usable": True,
        "provider": "custom", "tenant_id": "", "client_id": "", "token_url": "", "scope": "",
        "secret_expires": ""}
    assert stored_password(app, body["id"]) == PASSWORD
    assert [type(e) for e in host.events] == [SenderCreated]
    assert host.events[0].actor == "admin@portal"
    assert ("create", None) in host.asked
    for url in (f"{API}/senders", answer.headers["Location"]):
        read = client.get(url, headers=TOKEN)
        assert read.status_code == 200 and read.headers["Cache-Control"] == "no-store"
        text = read.get_data(as_text=True)
        assert "password\"" not in text.replace('"password_usable"', "")
        assert not [s for s in secrets_of(app, PASSWORD) if s in text]
    assert client.get(f"{API}/senders", headers=TOKEN).json["senders"] == [body]
    assert client.get(answer.headers["Location"], headers=TOKEN).headers["ETag"] == (
        answer.headers["ETag"])


def test_port_defaults_to_465_and_the_port_rule_names_the_mode(client) -> None:
    null = create(client, port=None).json
    assert (null["port"], null["mode"]) == (465, "SMTPS")
    body = create(client, port=2525, from_address="b@example.com").json
    assert (body["port"], body["mode"]) == (2525, "STARTTLS")
    absent = {name: value for name, value in good().items() if name != "port"}
    assert client.post(f"{API}/senders", json=absent, headers=TOKEN).json["port"] == 465


def test_every_bad_field_is_reported_at_once_and_nothing_is_saved(app, client, host) -> None:
    before = snapshot(app)
    answer = client.post(f"{API}/senders", headers=TOKEN, json={
        "username": "", "password": "", "server_name": "https://smtp.example.com",
        "port": "587", "from_address": "not an address", "reply_to_name": "a\r\nBcc: x@y.z",
        "colour": "red"})
    body = problem(answer, 422, "invalid")
    assert body["errors"] == {
        "username": "This field is required.",
        "password": "This field is required.",
        "server_name": "Enter a host name or IP address, without a scheme, a port or spaces.",
        "port": "Must be an integer.",
        "from_address": body["errors"]["from_address"],
        "reply_to_name": "Must not contain line breaks or other control characters.",
        "colour": "Unknown field."}
    assert body["errors"]["from_address"].startswith("Enter a valid email address.")
    assert snapshot(app) == before and host.events == []


@pytest.mark.parametrize("value", [["a"], 5, None, True, {"x": 1}])
def test_a_text_field_of_another_json_type_is_refused(client, value) -> None:
    body = problem(create(client, username=value), 422, "invalid")
    assert body["errors"]["username"] in ("Must be a string.", "This field is required.")


@pytest.mark.parametrize("port", [0, 65536, 1.5, True, "25"])
def test_a_bad_port_is_refused(client, port) -> None:
    body = problem(create(client, port=port), 422, "invalid")
    assert body["errors"] == {"port": body["errors"]["port"]}
    assert body["errors"]["port"] in ("Must be an integer.", "Enter a port number from 1 to 65535.")


def test_a_destination_the_policy_refuses_is_a_field_error(make_app, host) -> None:
    app = make_app(plugins=[host], SMTP_SENDERS_ALLOW_LOOPBACK=False)
    body = problem(create(app.test_client(), server_name="127.0.0.1"), 422, "invalid")
    assert body["errors"] == {"server_name": msg("destination_refused")}


@pytest.mark.parametrize(("data", "content_type", "status", "kind"), [
    ('{"username": ', "application/json", 400, "malformed"),
    ("[1, 2]", "application/json", 422, "invalid"),
    ("username=alice", "application/x-www-form-urlencoded", 415, "unsupported-media-type"),
    (json.dumps(good()), "text/plain", 415, "unsupported-media-type"),
    (json.dumps(good(from_name="x" * 70_000)), "application/json", 413, None),
])
def test_bodies_of_the_wrong_shape_are_problems(app, client, data, content_type, status,
                                                kind) -> None:
    before = snapshot(app)
    answer = client.post(f"{API}/senders", data=data, content_type=content_type, headers=TOKEN)
    problem(answer, status, kind)
    assert snapshot(app) == before


# -- update and delete: optimistic locking -------------------------------------------------


def test_patch_needs_if_match_and_the_password_and_keeps_what_it_does_not_name(
        app, client, host) -> None:
    created = create(client)
    sender, etag = created.json, {"If-Match": created.headers["ETag"]}
    url = f"{API}/senders/{sender['id']}"
    problem(client.patch(url, json={"password": PASSWORD, "port": 2525}, headers=TOKEN),
            428, "precondition-required")
    for stale in ('"7"', '"1"', created.headers["ETag"].replace('"1.', '"2.')):
        problem(client.patch(url, json={"password": PASSWORD, "port": 2525},
                             headers={**TOKEN, "If-Match": stale}), 412, "conflict")
    no_password = client.patch(url, json={"port": 2525}, headers={**TOKEN, **etag})
    assert problem(no_password, 422, "invalid")["errors"] == {
        "password": "This field is required."}
    assert client.get(url, headers=TOKEN).json == sender

    answer = client.patch(url, json={"password": "New-Pa55", "port": 2525, "from_name": "Ops"},
                          headers={**TOKEN, **etag})
    assert answer.status_code == 200
    assert answer.headers["ETag"] == created.headers["ETag"].replace('"1.', '"2.')
    assert answer.json == sender | {"version": 2, "port": 2525, "from_name": "Ops"}
    assert stored_password(app, sender["id"]) == "New-Pa55"
    updated = [e for e in host.events if isinstance(e, SenderUpdated)]
    assert [sorted(e.changed_fields) for e in updated] == [["from_name", "password", "port"]]
    star = client.patch(url, json={"password": "New-Pa55"}, headers={**TOKEN, "If-Match": "*"})
    assert star.status_code == 200 and star.json["version"] == 3


def test_patch_with_a_bad_value_changes_nothing(app, client) -> None:
    created = create(client)
    before = snapshot(app)
    answer = client.patch(f"{API}/senders/{created.json['id']}",
                          headers={**TOKEN, "If-Match": created.headers["ETag"]},
                          json={"password": "x", "from_address": "a@b@c", "username": 3})
    assert set(problem(answer, 422, "invalid")["errors"]) == {"from_address", "username"}
    assert snapshot(app) == before


def test_delete_needs_the_current_etag_and_is_audited(app, client, host) -> None:
    created = create(client)
    url = created.headers["Location"]
    problem(client.delete(url, headers=TOKEN), 428, "precondition-required")
    problem(client.delete(url, headers={**TOKEN, "If-Match": '"2"'}), 412, "conflict")
    answer = client.delete(url, headers={**TOKEN, "If-Match": created.headers["ETag"]})
    assert answer.status_code == 204 and answer.data == b""
    assert isinstance(host.events[-1], SenderDeleted)
    problem(client.get(url, headers=TOKEN), 404, "not-found")
    problem(client.delete(url, headers={**TOKEN, "If-Match": "*"}), 404, "not-found")


def test_an_etag_of_a_deleted_sender_never_matches_a_later_one(app, client) -> None:
    """SQLite gives a new sender the id of the last one deleted; the ETag read before the
    deletion must not change or delete the newcomer."""
    first = create(client)
    client.delete(first.headers["Location"], headers={**TOKEN, "If-Match": first.headers["ETag"]})
    second = create(client, from_address="second@example.com")
    before = snapshot(app)
    stale = {**TOKEN, "If-Match": first.headers["ETag"]}
    for answer in (client.patch(first.headers["Location"], json={"password": "x"}, headers=stale),
                   client.delete(first.headers["Location"], headers=stale)):
        # the same id: the ETag differs (412); a new id: the old one is gone (404)
        assert answer.status_code == (
            412 if second.json["id"] == first.json["id"] else 404)
    assert snapshot(app) == before
    assert second.headers["ETag"] != first.headers["ETag"]


def test_set_default_moves_the_default(client, host) -> None:
    first, second = create(client).json, create(client, from_address="b@example.com").json
    assert (first["default"], second["default"]) == (True, False)
    answer = client.post(f"{API}/senders/{second['id']}/default", headers=TOKEN)
    assert answer.status_code == 200 and answer.json["default"] is True
    listed = client.get(f"{API}/senders", headers=TOKEN).json["senders"]
    assert [s["default"] for s in listed] == [False, True]
    assert host.events[-1].changed_fields == ("default",)
    problem(client.post(f"{API}/senders/999/default", headers=TOKEN), 404, "not-found")


# -- authorisation and CSRF ------------------------------------------------------------------


def api_calls(sender_id: int) -> list[tuple[str, str, dict[str, object] | None]]:
    """One call of every route of the API."""
    one = f"{API}/senders/{sender_id}"
    return [("GET", f"{API}/senders", None), ("POST", f"{API}/senders", good()),
            ("GET", one, None), ("PATCH", one, {"password": PASSWORD}), ("DELETE", one, None),
            ("POST", f"{one}/default", None), ("POST", f"{one}/test", {"recipient": RECIPIENT}),
            ("POST", f"{one}/check", {}), ("GET", f"{API}/openapi.json", None)]


def test_every_route_asks_the_authorisation_hook_and_a_no_is_a_403(app, client, host) -> None:
    sender = create(client).json
    routes = {rule.rule for rule in app.url_map.iter_rules()
              if rule.endpoint.startswith("smtp_senders_api.")}
    called = {call[1].replace(str(sender["id"]), "<int:sender_id>")
              for call in api_calls(sender["id"])}
    assert {route.removeprefix(API) for route in routes} == {
        url.removeprefix(API) for url in called}
    host.allow = False
    host.asked.clear()
    before = snapshot(app)
    for method, url, body in api_calls(sender["id"]):
        answer = client.open(url, method=method, json=body,
                             headers={**TOKEN, "If-Match": '"1"'})
        assert problem(answer, 403, "forbidden")["title"], (method, url)
    assert snapshot(app) == before
    assert [action for action, _ in host.asked] == [
        "list", "create", "list", "update", "delete", "update", "test", "test", "list"]
    assert {sender_id for _, sender_id in host.asked} == {None, sender["id"]}


def test_a_cookie_call_that_changes_something_needs_the_csrf_token(app, client) -> None:
    """A browser sends our session cookie whatever site made the call: such a call needs
    the page's token; a call with an Authorization header cannot come from another site."""
    token = token_of(client)  # the client now holds a session cookie
    before = snapshot(app)
    refused = client.post(f"{API}/senders", json=good())
    assert "CSRF" in problem(refused, 403, "csrf")["title"]
    forged = client.post(f"{API}/senders", json=good(), headers={"X-CSRFToken": "forged"})
    problem(forged, 403, "csrf")
    assert snapshot(app) == before
    assert client.get(f"{API}/senders").status_code == 200  # reading needs no token
    assert client.post(f"{API}/senders", json=good(),
                       headers={"X-CSRFToken": token}).status_code == 201
    assert client.post(f"{API}/senders", json=good(from_address="c@example.com"),
                       headers=TOKEN).status_code == 201


@pytest.mark.parametrize("credentials", [
    "Basic YWRtaW46YWRtaW4=", "Digest username=\"admin\"", "Negotiate YIIF", "NTLM TlRMTVNT",
    "basic YWRtaW46YWRtaW4="])
def test_credentials_a_browser_resends_by_itself_still_need_the_csrf_token(
        app, client, credentials) -> None:
    """Cached Basic or Digest credentials and the Windows login ride along with a forged
    call just as cookies do; only a token a script set proves the call is the script's."""
    sender = create(client).json
    before = snapshot(app)
    for method, url, body in [("POST", f"/settings/senders/api/senders/{sender['id']}/default",
                               None), ("POST", f"{API}/senders", good())]:
        answer = client.open(url, method=method, json=body,
                             headers={"Authorization": credentials})
        problem(answer, 403, "csrf")
    assert snapshot(app) == before


def test_unknown_routes_and_methods_answer_as_problems(client) -> None:
    problem(client.get(f"{API}/nothing", headers=TOKEN), 404)
    for huge in (2**31, 2**63, 2**64):  # past the id column's range: not found, no overflow
        problem(client.get(f"{API}/senders/{huge}", headers=TOKEN), 404, "not-found")
        assert client.get(f"/settings/senders/{huge}").status_code == 404
    wrong = client.put(f"{API}/senders", json={}, headers=TOKEN)
    problem(wrong, 405)
    assert wrong.headers["Allow"] == "GET, HEAD, OPTIONS, POST"
    assert client.get("/elsewhere").mimetype == "text/html"  # the host's pages stay its own


def test_the_openapi_document_is_served_with_this_apps_address(make_app, host) -> None:
    app = make_app(plugins=[host], SMTP_SENDERS_URL_PREFIX="/admin/mail/")
    answer = app.test_client().get("/admin/mail/api/openapi.json", headers=TOKEN)
    assert answer.status_code == 200
    assert answer.json["openapi"].startswith("3.1")
    assert answer.json["servers"] == [{"url": "/admin/mail/api"}]


def test_the_api_can_be_turned_off(make_app, host) -> None:
    app = make_app(plugins=[host], SMTP_SENDERS_API=False)
    assert app.test_client().get(f"{API}/senders", headers=TOKEN).status_code == 404


# -- failures of ours: nothing half-saved -------------------------------------------------


def test_a_failing_audit_hook_rolls_the_change_back(make_app) -> None:
    host = routed_host(BrokenAudit)
    app = make_app(plugins=[host], **CASE_CONFIG)
    client = app.test_client()
    created = create(client)
    url, etag = created.headers["Location"], {"If-Match": created.headers["ETag"]}
    host.failing = True
    before = snapshot(app)
    for answer in (create(client, from_address="x@example.com"),
                   client.patch(url, json={"password": "Other-1"}, headers={**TOKEN, **etag}),
                   client.delete(url, headers={**TOKEN, **etag})):
        assert problem(answer, 503, "save-failed")["title"] == msg("save_failed")
    assert snapshot(app) == before


def test_a_locked_database_is_a_503_and_loses_nothing(make_app, host, database) -> None:
    app = make_app(plugins=[host], **CASE_CONFIG,
                   SQLALCHEMY_ENGINE_OPTIONS=engine_options(database))
    client = app.test_client()
    sender = create(client).json
    before = snapshot(app)
    with locked(database, readers_too=True):
        for answer in (create(client, from_address="x@example.com"),
                       client.get(f"{API}/senders", headers=TOKEN)):
            assert problem(answer, 503, "unavailable")["title"] == msg("storage_unavailable")
    assert snapshot(app) == before
    assert client.get(f"{API}/senders/{sender['id']}", headers=TOKEN).status_code == 200


# -- Send Test Email and Check connection, against real servers --------------------------


def test_send_test_email_delivers_through_the_saved_settings(app, client, host,
                                                             smtp_server) -> None:
    server = smtp_server("implicit", users={"alice": PASSWORD})
    sender = create(client, port=server.port).json
    answer = client.post(f"{API}/senders/{sender['id']}/test", json={"recipient": RECIPIENT},
                         headers=TOKEN)
    assert answer.status_code == 200
    body = answer.json
    assert (body["ok"], body["message"], body["stage"]) == (
        True, msg("test_success", recipient=RECIPIENT), None)
    assert [stage["name"] for stage in body["diagnosis"]["stages"]][-1] == "data"
    assert [m.rcpt_tos for m in server.messages] == [[RECIPIENT]]
    assert isinstance(host.events[-1], TestEmailSent)
    assert client.get(f"{API}/senders/{sender['id']}", headers=TOKEN).json["test_state"] == (
        "tested")
    assert not [s for s in secrets_of(app, PASSWORD) if s in answer.get_data(as_text=True)]


def test_a_refused_login_is_a_result_with_the_contracts_message(client, smtp_server) -> None:
    server = smtp_server("implicit", users={"alice": "another password"})
    sender = create(client, port=server.port).json
    answer = client.post(f"{API}/senders/{sender['id']}/test", json={"recipient": RECIPIENT},
                         headers=TOKEN)
    assert answer.status_code == 200
    assert (answer.json["ok"], answer.json["message"], answer.json["stage"]) == (
        False, msg("auth_failed"), "auth")
    assert server.messages == []


def test_check_connection_delivers_nothing_and_is_recorded(client, host, smtp_server) -> None:
    server = smtp_server("implicit", users={"alice": PASSWORD})
    sender = create(client, port=server.port).json
    answer = client.post(f"{API}/senders/{sender['id']}/check", json={}, headers=TOKEN)
    assert (answer.status_code, answer.json["ok"], answer.json["message"]) == (
        200, True, msg("check_success"))
    assert server.messages == [] and server.rcpt_seen == ["noreply@example.com"]
    assert isinstance(host.events[-1], ConnectionChecked)
    read = client.get(f"{API}/senders/{sender['id']}", headers=TOKEN).json
    assert (read["last_check_ok"], read["test_state"]) == (True, "never")


def test_test_email_is_rate_limited_and_a_bad_recipient_is_not_counted(
        make_app, host, smtp_server) -> None:
    app = make_app(plugins=[host], SMTP_SENDERS_TEST_EMAIL_RATE_LIMIT="1 per minute")
    client = app.test_client()
    server = smtp_server("implicit", users={"alice": PASSWORD})
    sender = create(client, port=server.port).json
    url = f"{API}/senders/{sender['id']}/test"
    bad = client.post(url, json={"recipient": "not an address"}, headers=TOKEN)
    assert set(problem(bad, 422, "invalid")["errors"]) == {"recipient"}
    problem(client.post(url, json={}, headers=TOKEN), 422, "invalid")
    blanks = client.post(url, json={"recipient": " \t"}, headers=TOKEN)
    assert problem(blanks, 422, "invalid")["errors"] == {"recipient": "This field is required."}
    assert client.post(url, json={"recipient": RECIPIENT}, headers=TOKEN).json["ok"] is True
    limited = client.post(url, json={"recipient": RECIPIENT}, headers=TOKEN)
    body = problem(limited, 429, "rate-limited")
    retry_after = limited.headers["Retry-After"]
    assert body["title"] == msg("rate_limited", retry_after=retry_after)
    problem(client.post(f"{API}/senders/{sender['id']}/check", json={}, headers=TOKEN),
            429, "rate-limited")
    assert len(server.messages) == 1


def test_an_unknown_sender_is_not_tested(client) -> None:
    problem(client.post(f"{API}/senders/42/test", json={"recipient": RECIPIENT},
                        headers=TOKEN), 404, "not-found")


# -- the example portal's token ------------------------------------------------------------


def test_the_example_portal_answers_scripts_with_its_token(database, tmp_path,
                                                           fernet_key) -> None:
    from example_app import create_app

    app = create_app({"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "k" * 32,
                      "SQLALCHEMY_DATABASE_URI": database.url,
                      "SQLALCHEMY_ENGINE_OPTIONS": database.engine_options,
                      "SMTP_SENDERS_ENCRYPTION_KEYS": fernet_key,
                      "EXAMPLE_API_TOKEN": "the-token"})
    client = app.test_client()
    anonymous = client.get(f"{API}/senders")
    assert problem(anonymous, 401)["title"] and anonymous.headers["WWW-Authenticate"] == "Bearer"
    problem(client.get(f"{API}/senders", headers={"Authorization": "Bearer wrong"}), 401)
    problem(client.get(f"{API}/senders", headers={"Authorization": "the-token"}), 401)
    signed = {"Authorization": "Bearer the-token"}
    assert client.get(f"{API}/senders", headers=signed).json == {"senders": []}
    created = client.post(f"{API}/senders", headers=signed, json=good(server_name="127.0.0.1"))
    assert created.status_code == 201
    assert client.get(f"{API}/senders", headers=signed).json["senders"][0]["id"] == (
        created.json["id"])
