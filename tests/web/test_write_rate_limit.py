"""Case G5: changes (create, edit, delete, make default) are limited per administrator, on
the pages and the API, so that the save buttons cannot be used to try things (guessed
passwords) at speed; a refused change saves nothing and keeps what was typed."""

from __future__ import annotations

import pytest
from flask import Flask

from flask_smtp_senders import SenderSettings, get_service
from tests.support.cases import (
    CASE_CONFIG,
    PREFIX,
    Host,
    create_via_form,
    edit_via_form,
    routed_host,
    snapshot,
    token_of,
)
from tests.support.pages import errors, form_values

API = f"{PREFIX}/api"
TOKEN = {"Authorization": "Bearer script"}
LIMIT = "3 per minute"


@pytest.fixture
def host() -> Host:
    return routed_host()


@pytest.fixture
def app(make_app, host) -> Flask:
    return make_app(plugins=[host], SMTP_SENDERS_WRITE_RATE_LIMIT=LIMIT, **CASE_CONFIG)


def add(app: Flask, **fields: str) -> int:
    """A sender saved through the service (not counted: only the pages and the API are)."""
    values = {"username": "alice", "server_name": "smtp.example.com", "port": 587,
              "from_address": "noreply@example.com", **fields}
    with app.app_context():
        return get_service(app).create_sender(SenderSettings(**values), "pw").id


def edit(client, sender_id: int, **fields: str):
    """The edit form as the page shows it, changed by ``fields``, the password re-entered."""
    return edit_via_form(client, sender_id, password="Case-Pa55word", **fields)


def test_the_fourth_save_in_a_minute_is_refused_and_keeps_what_was_typed(app) -> None:
    """Case G5: three saves go through; the fourth answers 429 with Retry-After, the form
    comes back with every value typed but the password, and nothing is saved."""
    client = app.test_client()
    assert create_via_form(client).status_code == 302
    sender_id = add(app)
    for name in ("First", "Second"):
        assert edit(client, sender_id, from_name=name).status_code == 302
    before = snapshot(app)

    refused = edit_via_form(client, sender_id, from_name="Third", password="Typed-Pa55")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert b"Too many changes" in refused.data
    shown = form_values(refused.data)
    assert shown["from_name"] == "Third" and not shown.get("password")
    assert b"Typed-Pa55" not in refused.data
    assert snapshot(app) == before

    created = create_via_form(client, from_name="Fourth")
    assert created.status_code == 429 and form_values(created.data)["from_name"] == "Fourth"
    assert errors(created.data) == {}
    assert snapshot(app) == before


def test_delete_and_make_default_count_too(app) -> None:
    """Case G5: one-click changes are refused with the message, and change nothing."""
    client = app.test_client()
    first, second = add(app), add(app, from_address="other@example.com")
    for name in ("A", "B", "C"):
        assert edit(client, first, from_name=name).status_code == 302
    before = snapshot(app)
    token = token_of(client)
    made = client.post(f"{PREFIX}/{second}/default", data={"csrf_token": token},
                       follow_redirects=True)
    assert b"Too many changes" in made.data
    page = client.get(f"{PREFIX}/{second}/delete")
    version = form_values(page.data)["version"]
    deleted = client.post(f"{PREFIX}/{second}/delete",
                          data={"csrf_token": token, "version": version},
                          follow_redirects=True)
    assert b"Too many changes" in deleted.data
    assert snapshot(app) == before
    with app.app_context():
        assert not get_service(app).get_sender(second).is_default


def test_the_api_answers_a_rate_limited_problem(app) -> None:
    """Case G5: the API counts in the same window and answers RFC 9457 429s."""
    client = app.test_client()
    body = {"username": "alice", "password": "pw", "server_name": "smtp.example.com",
            "port": 587, "from_address": "noreply@example.com"}
    for number in range(3):
        created = client.post(f"{API}/senders", json=body, headers=TOKEN)
        assert created.status_code == 201, number
    before = snapshot(app)
    refused = client.post(f"{API}/senders", json=body, headers=TOKEN)
    assert refused.status_code == 429 and refused.headers["Retry-After"]
    assert refused.mimetype == "application/problem+json"
    assert refused.json["type"] == "urn:flask-smtp-senders:problem:rate-limited"
    assert snapshot(app) == before


def test_each_administrator_has_a_count_of_their_own(app, host) -> None:
    """Case G5: one administrator at the limit does not stop another."""
    client = app.test_client()
    sender_id = add(app)
    for name in ("A", "B", "C"):
        assert edit(client, sender_id, from_name=name).status_code == 302
    assert edit(client, sender_id, from_name="D").status_code == 429
    host.actor = "other-admin@portal"
    assert edit(client, sender_id, from_name="E").status_code == 302


def test_an_invalid_save_is_not_counted(app) -> None:
    """Case G5: only saves that would change something count (a 422 costs nothing)."""
    client = app.test_client()
    sender_id = add(app)
    for _ in range(5):
        assert edit(client, sender_id, port="0").status_code == 422
    assert edit(client, sender_id, from_name="Saved").status_code == 302
