"""Case G9: the JSON API skips its CSRF check only for a call the host says a token
authenticated (``smtp_senders_api_token_authenticated``), not for any call that merely
carries a non-ambient ``Authorization`` header beside the session cookie."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from flask import Flask

from example_app import create_app, db
from flask_smtp_senders import hookimpl
from tests.support.cases import CASE_CONFIG, Host, routed_host, snapshot

API = "/settings/senders/api"
TOKEN = "the-real-token"
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
SENDER = {"username": "alice", "password": "Api-Pa55word-1", "server_name": "127.0.0.1",
          "port": 587, "from_address": "noreply@example.com"}


@pytest.fixture
def portal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for name in ("SECRET_KEY", "DATABASE_URL", "EXAMPLE_API_TOKEN", "EXAMPLE_ADMIN_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    app = create_app({"INSTANCE_PATH": str(tmp_path / "instance"), "SECRET_KEY": "k" * 32,
                      "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'portal.db'}",
                      "SMTP_SENDERS_ENCRYPTION_KEYS": [Fernet.generate_key().decode()],
                      "EXAMPLE_ADMIN_PASSWORD": "pw", "EXAMPLE_API_TOKEN": TOKEN})
    yield app
    with app.app_context():
        db.engine.dispose()


def logged_in(app: Flask):
    client = app.test_client()
    page = client.get("/login")
    client.post("/login", data={"csrf_token": CSRF.search(page.text)[1],
                                "username": "admin", "password": "pw"})
    assert client.get("/settings/senders/").status_code == 200
    return client


def count(app: Flask) -> int:
    with app.app_context():
        from flask_smtp_senders import get_service

        return len(get_service().list_senders())


def test_session_cookie_with_a_junk_bearer_header_still_needs_the_csrf_token(portal):
    """Case G9: a signed-in browser's cookie + ``Authorization: Bearer x`` + no CSRF token
    is refused with 403 csrf and nothing changes (the portal's hook says the session, not
    a token, signed the call in)."""
    client = logged_in(portal)
    for headers in ({"Authorization": "Bearer x"}, {"Authorization": "Token abc"},
                    {"Authorization": f"Bearer {TOKEN}"}):  # cookie wins: still the session
        answer = client.post(f"{API}/senders", json=SENDER, headers=headers)
        assert answer.status_code == 403, headers
        assert answer.json["type"] == "urn:flask-smtp-senders:problem:csrf"
    assert count(portal) == 0
    token = CSRF.search(client.get("/settings/senders/new/email/custom").text)[1]
    assert client.post(f"{API}/senders", json=SENDER,
                       headers={"X-CSRFToken": token}).status_code == 201


def test_the_real_token_without_a_cookie_is_allowed(portal):
    """Case G9: a script with the portal's token and no cookie needs no CSRF token."""
    client = portal.test_client()
    answer = client.post(f"{API}/senders", json=SENDER,
                         headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 201, answer.text
    wrong = client.post(f"{API}/senders", json=SENDER, headers={"Authorization": "Bearer x"})
    assert wrong.status_code == 401  # a junk token alone signs nobody in
    assert count(portal) == 1


class TokenHost(Host):
    """A host that says whether a token signed the call in (``token``: True/False/None)."""

    def __init__(self) -> None:
        super().__init__()
        self.token: bool | None | Exception = None

    @hookimpl
    def smtp_senders_api_token_authenticated(self):
        if isinstance(self.token, Exception):
            raise self.token
        return self.token


@pytest.fixture
def host() -> TokenHost:
    return routed_host(TokenHost)


@pytest.fixture
def app(make_app, host) -> Flask:
    return make_app(plugins=[host], **CASE_CONFIG)


def test_the_hook_decides_over_the_header(app, host):
    """Case G9: False, None (no answer) or a raising hook needs the CSRF token whatever the
    header; only True skips it."""
    client = app.test_client()
    before = snapshot(app)
    for answer in (False, RuntimeError("auth backend down")):
        host.token = answer
        refused = client.post(f"{API}/senders", json=SENDER | {"server_name": "a.example"},
                              headers={"Authorization": "Bearer x"})
        assert refused.status_code == 403 and refused.json["type"].endswith(":csrf")
    assert snapshot(app) == before
    host.token = True
    assert client.post(f"{API}/senders", json=SENDER | {"server_name": "a.example"}
                       ).status_code == 201
    host.token = None  # no opinion: a header alone proves nothing, the token is needed
    for credentials in ("Bearer x", "Basic YTpi"):
        assert client.post(f"{API}/senders", json=SENDER | {"server_name": "b.example"},
                           headers={"Authorization": credentials}).status_code == 403
