"""Case G12: the example portal's session. Logout ends it on the server (a cookie copied
before logout signs nobody in afterwards), login attempts are throttled per client
address, and the cookie is HttpOnly, SameSite=Lax, and Secure over HTTPS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from flask.testing import FlaskClient

from example_app import create_app, db
from tests.support.example import PASSWORD, csrf_token, log_in

PORTAL_ENV = ("SECRET_KEY", "DATABASE_URL", "SMTP_SENDERS_ENCRYPTION_KEYS",
              "SMTP_SENDERS_CA_FILE", "EXAMPLE_ADMIN_PASSWORD", "EXAMPLE_API_TOKEN",
              "EXAMPLE_HTTPS")


@pytest.fixture
def make_portal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for name in PORTAL_ENV:
        monkeypatch.delenv(name, raising=False)
    made: list[Flask] = []

    def factory(**config: Any) -> Flask:
        app = create_app({"INSTANCE_PATH": str(tmp_path / "instance"),
                          "SECRET_KEY": "test-secret-key",
                          "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'p.db'}",
                          "SMTP_SENDERS_ENCRYPTION_KEYS": [Fernet.generate_key().decode()],
                          "EXAMPLE_ADMIN_PASSWORD": PASSWORD, **config})
        made.append(app)
        return app

    yield factory
    for app in made:
        with app.app_context():
            db.engine.dispose()


def session_cookie(client: FlaskClient) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value


def log_out(client: FlaskClient) -> None:
    answer = client.post("/logout", data={"csrf_token": csrf_token(client.get("/").text)})
    assert answer.status_code == 302 and answer.location.endswith("/login")


def test_a_cookie_replayed_after_logout_gets_nothing(make_portal):
    """Case G12: the attacker copies the admin's cookie; the admin logs out; the copy no
    longer opens the portal, the Senders pages or the API, and is deleted when sent."""
    portal = make_portal()
    admin = portal.test_client()
    log_in(admin)
    stolen = session_cookie(admin)
    attacker = portal.test_client()
    attacker.set_cookie("session", stolen)
    assert attacker.get("/settings/senders/").status_code == 200  # before logout: works

    log_out(admin)

    for path in ("/", "/settings/senders/", "/catcher"):
        answer = attacker.get(path)
        assert answer.status_code == 302 and "/login" in answer.location, path
    api = attacker.get("/settings/senders/api/senders")
    assert api.status_code == 401
    replayed = portal.test_client()
    replayed.set_cookie("session", stolen)
    deleted = replayed.get("/")
    assert any(h.startswith("session=;") for h in deleted.headers.getlist("Set-Cookie"))


def test_logging_in_again_works_and_old_cookies_stay_dead(make_portal):
    """Case G12: a new login after the logout gets a working session; the cookie from
    before the logout stays worthless."""
    portal = make_portal()
    client = portal.test_client()
    log_in(client)
    old = session_cookie(client)
    log_out(client)
    assert log_in(client).status_code == 302
    assert client.get("/settings/senders/").status_code == 200
    replay = portal.test_client()
    replay.set_cookie("session", old)
    assert replay.get("/settings/senders/").status_code == 302


def test_login_attempts_are_throttled_per_client(make_portal):
    """Case G12: past EXAMPLE_LOGIN_RATE_LIMIT, even the right password gets 429 with
    Retry-After and no session, without the password being checked."""
    portal = make_portal(EXAMPLE_LOGIN_RATE_LIMIT="3 per minute")
    client = portal.test_client()
    for _ in range(3):
        assert log_in(client, password="wrong").status_code == 200
    refused = log_in(client)  # right password, but too many attempts
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "60"
    assert "Too many login attempts" in refused.text
    assert client.get("/settings/senders/").status_code == 302
    other = portal.test_client()
    other.environ_base["REMOTE_ADDR"] = "127.0.0.9"
    assert log_in(other).status_code == 302  # another address has its own count


def test_the_default_limit_is_five_a_minute(make_portal):
    """Case G12: the default throttle."""
    portal = make_portal()
    assert portal.config["EXAMPLE_LOGIN_RATE_LIMIT"] == "5 per minute"
    client = portal.test_client()
    statuses = [log_in(client, password="wrong").status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]


def test_the_session_cookie_is_httponly_and_samesite_lax(make_portal):
    """Case G12: scripts cannot read it; other sites' requests do not carry it."""
    client = make_portal().test_client()
    answer = log_in(client)
    (cookie,) = [h for h in answer.headers.getlist("Set-Cookie") if h.startswith("session=")]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain http (the demo on loopback)


def test_the_cookie_is_secure_over_https(make_portal, monkeypatch):
    """Case G12: a request over HTTPS, or EXAMPLE_HTTPS=1, gives a Secure cookie."""
    client = make_portal().test_client()
    page = client.get("/login", base_url="https://portal.example")
    answer = client.post("/login", base_url="https://portal.example", data={
        "csrf_token": csrf_token(page.text), "username": "admin", "password": PASSWORD})
    (cookie,) = [h for h in answer.headers.getlist("Set-Cookie") if h.startswith("session=")]
    assert "Secure" in cookie
    monkeypatch.setenv("EXAMPLE_HTTPS", "1")
    portal = make_portal()
    assert portal.config["SESSION_COOKIE_SECURE"] is True
