"""Case G6: every page of Settings > Senders, and every answer of the JSON API, carries a
Content-Security-Policy that refuses other sites' frames, X-Frame-Options and (for
everything showing sender settings) Cache-Control: no-store; headers a host set first are
kept; the pages meet their own script policy."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask

from flask_smtp_senders.settings import DEFAULTS
from tests.support.cases import (
    CASE_CONFIG,
    PREFIX,
    Host,
    create_via_form,
    routed_host,
    token_of,
)

API = f"{PREFIX}/api"
BEARER = {"Authorization": "Bearer script"}
TEMPLATES = Path(__file__).resolve().parent.parent.parent / "flask_smtp_senders" / "templates"


@pytest.fixture
def host() -> Host:
    return routed_host()


@pytest.fixture
def app(make_app, host) -> Flask:
    return make_app(plugins=[host], **CASE_CONFIG)


def page_answers(app: Flask):
    """(name, response) of every route of the blueprint, GET and POST, success and error."""
    client = app.test_client()
    created = create_via_form(client)
    assert created.status_code == 302
    sender_id = int(created.location.rstrip("/").rsplit("/", 1)[1])
    token = token_of(client)
    second = create_via_form(client, from_address="second@example.com")
    assert second.status_code == 302
    answers = [
        ("index", client.get(f"{PREFIX}/")),
        ("new", client.get(f"{PREFIX}/new")),
        ("new post", client.post(f"{PREFIX}/new", data={
            "csrf_token": token, "sender_type": "email", "provider_type": "custom"})),
        ("create", client.get(f"{PREFIX}/new/email/custom")),
        ("create invalid", client.post(f"{PREFIX}/new/email/custom",
                                       data={"csrf_token": token})),
        ("edit", client.get(f"{PREFIX}/{sender_id}")),
        ("edit with dialog", client.get(f"{PREFIX}/{sender_id}?test=1")),
        ("test invalid", client.post(f"{PREFIX}/{sender_id}/test",
                                     data={"csrf_token": token, "recipient": "x"})),
        ("test json", client.post(f"{PREFIX}/{sender_id}/test",
                                  data={"csrf_token": token, "recipient": ""},
                                  headers={"Accept": "application/json"})),
        ("check invalid", client.post(f"{PREFIX}/{sender_id}/check",
                                      data={"csrf_token": token, "recipient": "x"})),
        ("make default", client.post(f"{PREFIX}/{sender_id}/default",
                                     data={"csrf_token": token})),
        ("delete page", client.get(f"{PREFIX}/{sender_id}/delete")),
        ("no csrf", client.post(f"{PREFIX}/{sender_id}/default")),
        ("not found", client.get(f"{PREFIX}/999999")),
    ]
    return client, answers


def test_every_page_sends_csp_frame_options_and_no_store(app):
    """Case G6: each route of the blueprint (pages, redirects, 4xx answers, the JSON of
    the modal) refuses other sites' frames and is never cached."""
    _, answers = page_answers(app)
    rules = {rule.endpoint.rpartition(".")[2] for rule in app.url_map.iter_rules()
             if rule.endpoint.startswith("smtp_senders.")}
    assert rules == {"index", "new", "create", "edit", "test_email", "check_connection",
                     "make_default", "delete", "static"}  # every one is called here
    statuses = set()
    for name, answer in answers:
        statuses.add(answer.status_code)
        headers = answer.headers
        assert headers["Content-Security-Policy"] == DEFAULTS[
            "SMTP_SENDERS_CONTENT_SECURITY_POLICY"], name
        assert "frame-ancestors 'self'" in headers["Content-Security-Policy"], name
        assert "script-src 'self'" in headers["Content-Security-Policy"], name
        assert headers["X-Frame-Options"] == "SAMEORIGIN", name
        assert headers["X-Content-Type-Options"] == "nosniff", name
        assert headers["Cache-Control"] == "no-store", name
    assert {200, 302, 400, 404, 422} <= statuses


def test_a_refused_visitor_gets_the_headers_too(app, host):
    """Case G6: the 403 of the authorisation hook is framed no more than the pages."""
    host.allow = False
    answer = app.test_client().get(f"{PREFIX}/")
    assert answer.status_code == 403
    assert "frame-ancestors 'self'" in answer.headers["Content-Security-Policy"]
    assert answer.headers["X-Frame-Options"] == "SAMEORIGIN"


def test_static_files_get_the_headers_but_may_be_cached(app):
    """Case G6: senders.js is what the policy allows ('self'); it holds no settings."""
    answer = app.test_client().get(f"{PREFIX}/static/senders.js")
    assert answer.status_code == 200
    assert answer.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert answer.headers.get("Cache-Control") != "no-store"
    answer.close()


def test_every_api_answer_sends_a_strict_policy_and_no_store(app):
    """Case G6: JSON answers (data, problems, unknown routes) are never framed or cached."""
    client = app.test_client()
    created = client.post(f"{API}/senders", headers=BEARER, json={
        "username": "alice", "password": "Api-Pa55word-1", "server_name": "smtp.example.com",
        "port": 587, "from_address": "noreply@example.com"})
    answers = [created, client.get(f"{API}/senders", headers=BEARER),
               client.get(f"{API}/senders/{created.json['id']}", headers=BEARER),
               client.get(f"{API}/openapi.json", headers=BEARER),
               client.get(f"{API}/nothing", headers=BEARER),
               client.post(f"{API}/senders", json={})]  # csrf problem
    assert [a.status_code for a in answers] == [201, 200, 200, 200, 404, 403]
    for answer in answers:
        assert answer.headers["Content-Security-Policy"] == (
            "default-src 'none'; frame-ancestors 'none'")
        assert answer.headers["X-Frame-Options"] == "SAMEORIGIN"
        assert answer.headers["Cache-Control"] == "no-store"


def test_headers_the_host_set_first_are_kept(make_app, host):
    """Case G6: a host-wide policy already on the response is not replaced by ours."""
    app = make_app(plugins=[host], **CASE_CONFIG)
    host_policy = "default-src 'self' https://cdn.example; frame-ancestors 'none'"

    @app.before_request
    def host_answers_itself():
        from flask import request

        if request.args.get("host") == "1":
            return "host page", 200, {"Content-Security-Policy": host_policy,
                                      "X-Frame-Options": "DENY",
                                      "Cache-Control": "private, no-store, max-age=0"}
        return None

    answer = app.test_client().get(f"{PREFIX}/?host=1")
    assert answer.text == "host page"
    assert answer.headers["Content-Security-Policy"] == host_policy
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert answer.headers["Cache-Control"] == "private, no-store, max-age=0"
    assert len(answer.headers.getlist("Content-Security-Policy")) == 1


def test_the_policy_can_be_changed_or_turned_off(make_app, host):
    """Case G6: SMTP_SENDERS_CONTENT_SECURITY_POLICY; None sends no policy of ours."""
    custom = make_app(plugins=[host], SMTP_SENDERS_CONTENT_SECURITY_POLICY=(
        "default-src 'self'; frame-ancestors 'none'"), **CASE_CONFIG)
    answer = custom.test_client().get(f"{PREFIX}/")
    assert answer.headers["Content-Security-Policy"] == (
        "default-src 'self'; frame-ancestors 'none'")
    off = make_app(plugins=[host], SMTP_SENDERS_CONTENT_SECURITY_POLICY=None, **CASE_CONFIG)
    answer = off.test_client().get(f"{PREFIX}/")
    assert "Content-Security-Policy" not in answer.headers
    assert answer.headers["X-Frame-Options"] == "SAMEORIGIN"


def test_the_password_input_asks_for_a_new_password(app):
    """Case G6: the browser must not fill in the administrator's own saved login."""
    client = app.test_client()
    for url in (f"{PREFIX}/new/email/custom",):
        page = client.get(url).text
        (password,) = re.findall(r'<input[^>]*name="password"[^>]*>', page)
        assert 'autocomplete="new-password"' in password
    sender_id = int(create_via_form(client).location.rstrip("/").rsplit("/", 1)[1])
    page = client.get(f"{PREFIX}/{sender_id}").text
    (password,) = re.findall(r'<input[^>]*name="password"[^>]*>', page)
    assert 'autocomplete="new-password"' in password
    assert 'aria-describedby="password-hint"' in password  # the hint still comes with it


def test_the_templates_hold_no_inline_script_handler_or_style():
    """Case G6: what script-src 'self' and style-src 'self' require of the pages."""
    for path in TEMPLATES.rglob("*.html"):
        text = path.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), path
        assert not re.search(r"\son[a-z]+\s*=", text), path
        assert not re.search(r"\sstyle\s*=", text), path
        assert "<style" not in text and "javascript:" not in text, path
