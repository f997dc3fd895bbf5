"""The example portal (``make demo``): its login gate, its answers to the extension's hooks
and its mail catcher, driven as a browser and a mail client would.

CSRF stays on (tokens come from the rendered forms) and the catcher is a real aiosmtpd
server on loopback, so these tests see what a visitor and a mail client would see.
"""

from __future__ import annotations

import base64
import logging
import re
import smtplib
import ssl
import stat
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from flask.testing import FlaskClient

from example_app import create_app, database_url, db
from example_app.catcher import Catcher, MessageStore, start_catcher
from flask_smtp_senders import SenderSettings, get_service, hookimpl
from tests.support.example import NEXT, PASSWORD, csrf_token, log_in
from tests.support.smtp_servers import LOOPBACK, free_port

PORTAL_ENV = ("SECRET_KEY", "DATABASE_URL", "SMTP_SENDERS_ENCRYPTION_KEYS",
              "SMTP_SENDERS_CA_FILE", "EXAMPLE_ADMIN_PASSWORD", "EXAMPLE_API_TOKEN")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The portal reads these from the environment; a developer's shell must not leak in."""
    for name in PORTAL_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def make_portal(tmp_path: Path):
    made: list[Flask] = []

    def factory(**config: Any) -> Flask:
        settings: dict[str, Any] = {
            "INSTANCE_PATH": str(tmp_path / "instance"),
            "SECRET_KEY": "test-secret-key",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / f'portal{len(made)}.db'}",
            "SMTP_SENDERS_ENCRYPTION_KEYS": [Fernet.generate_key().decode()],
            "EXAMPLE_ADMIN_PASSWORD": PASSWORD,
        }
        settings.update(config)
        app = create_app(settings)
        made.append(app)
        return app

    yield factory
    for app in made:
        with app.app_context():
            db.engine.dispose()


@pytest.fixture
def portal(make_portal) -> Flask:
    return make_portal()


@pytest.fixture
def client(portal: Flask) -> FlaskClient:
    return portal.test_client()


def session_user(client: FlaskClient) -> str | None:
    with client.session_transaction() as session:
        return session.get("user")


# ------------------------------------------------------------------------------ login


def test_login_page_renders_a_form_with_csrf_protection(client):
    page = client.get("/login")

    assert page.status_code == 200
    assert 'name="username"' in page.text
    assert 'type="password"' in page.text
    assert csrf_token(page.text)


def test_login_without_csrf_token_is_refused(client):
    response = client.post("/login", data={"username": "admin", "password": PASSWORD})

    assert response.status_code == 200
    assert "expired" in response.text
    assert session_user(client) is None


def test_wrong_password_shows_an_error_and_keeps_the_username(client):
    response = log_in(client, password="wrong")

    assert response.status_code == 200
    assert "Wrong username or password." in response.text
    assert re.search(r'name="username"[^>]*value="admin"', response.text)
    assert "wrong" not in response.text.replace("Wrong username", "")  # password not echoed
    assert session_user(client) is None


def test_unknown_user_with_the_admin_password_is_refused(client):
    response = log_in(client, username="root")

    assert "Wrong username or password." in response.text
    assert session_user(client) is None


def test_anonymous_visit_to_senders_redirects_to_login_with_next(client):
    response = client.get("/settings/senders")

    assert response.status_code == 302
    target = urlsplit(response.location)
    assert target.path == "/login"
    assert parse_qs(target.query) == {"next": ["/settings/senders"]}


@pytest.mark.parametrize("path", ["/", "/catcher", "/settings/senders/", "/settings/senders/new",
                                  "/no-such-page"])
def test_every_page_but_login_needs_a_login(client, path):
    response = client.get(path)

    assert response.status_code == 302
    assert urlsplit(response.location).path == "/login"


def test_portal_stylesheet_is_public_for_the_login_page(client):
    with client.get("/static/portal.css") as response:  # a file response: close it
        assert response.status_code == 200
        assert response.mimetype == "text/css"


def test_right_password_logs_in_and_returns_to_next(client):
    first = client.get("/settings/senders/")
    login_page = client.get(first.location)
    assert NEXT.search(login_page.text).group(1) == "/settings/senders/"

    response = log_in(client, next_url="/settings/senders/")

    assert response.status_code == 302
    assert response.location == "/settings/senders/"
    assert session_user(client) == "admin"
    senders = client.get("/settings/senders/")
    assert senders.status_code == 200
    assert "<h1>Senders</h1>" in senders.text


def test_login_without_next_goes_home(client):
    response = log_in(client)

    assert response.location == "/"
    home = client.get("/")
    assert home.status_code == 200
    assert "Signed in as <strong>admin</strong>" in home.text


def test_login_starts_a_fresh_session(client):
    with client.session_transaction() as session:
        session["planted"] = "by someone else"

    log_in(client)

    with client.session_transaction() as session:
        assert dict(session) == {"user": "admin"}


@pytest.mark.parametrize("offsite", [
    "//evil.example",
    "https://evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "javascript:alert(1)",
    "/\t/evil.example",
    "evil.example",
])
def test_offsite_next_is_ignored(client, offsite):
    login_page = client.get("/login", query_string={"next": offsite})
    assert NEXT.search(login_page.text).group(1) == ""

    # Even when posted directly, bypassing the login page.
    response = client.post("/login", data={
        "csrf_token": csrf_token(login_page.text), "username": "admin",
        "password": PASSWORD, "next": offsite,
    })

    assert response.status_code == 302
    assert response.location == "/"


def test_default_admin_password_is_admin_when_unset(tmp_path):
    app = create_app({"INSTANCE_PATH": str(tmp_path / "instance"), "SECRET_KEY": "k",
                      "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'p.db'}",
                      "SMTP_SENDERS_ENCRYPTION_KEYS": [Fernet.generate_key().decode()]})
    try:
        client = app.test_client()
        assert log_in(client, password="admin").location == "/"
        assert session_user(client) == "admin"
    finally:
        with app.app_context():
            db.engine.dispose()


# ----------------------------------------------------------------------------- logout


def test_logout_post_clears_the_session(client):
    log_in(client)
    home = client.get("/")

    response = client.post("/logout", data={"csrf_token": csrf_token(home.text)})

    assert response.status_code == 302
    assert urlsplit(response.location).path == "/login"
    with client.session_transaction() as session:
        assert dict(session) == {}
    assert urlsplit(client.get("/").location).path == "/login"


def test_logout_without_csrf_token_keeps_the_user_logged_in(client):
    log_in(client)

    client.post("/logout")

    assert session_user(client) == "admin"
    assert client.get("/logout").status_code == 405  # a link cannot log anyone out


# ---------------------------------------------------------------- the extension's hooks


def test_only_the_admin_may_manage_senders(portal, client):
    service = get_service(portal)
    with portal.test_request_context():
        assert service.authorize("list") is False
    with portal.test_request_context():
        from flask import session

        session["user"] = "admin"
        assert service.authorize("update", 1) is True
        assert service.hooks.smtp_senders_actor() == "admin"

    # A signed-in user who is not the admin passes the login gate but not the hook.
    with client.session_transaction() as session:
        session["user"] = "mallory"
    assert client.get("/settings/senders/").status_code == 403


def test_layout_offers_settings_senders_catcher_and_logout(client):
    log_in(client)
    page = client.get("/").text

    assert "<summary>Settings</summary>" in page
    assert 'href="/settings/senders/"' in page
    assert 'href="/catcher"' in page
    assert 'action="/logout"' in page


# ---------------------------------------------------------------------- configuration


def test_secrets_are_generated_once_into_the_instance_folder_privately(tmp_path):
    instance = tmp_path / "instance"
    apps = [create_app({"INSTANCE_PATH": str(instance)}) for _ in range(2)]
    try:
        first, second = apps
        assert first.config["SECRET_KEY"] == second.config["SECRET_KEY"]
        assert (first.config["SMTP_SENDERS_ENCRYPTION_KEYS"]
                == second.config["SMTP_SENDERS_ENCRYPTION_KEYS"])
        Fernet(first.config["SMTP_SENDERS_ENCRYPTION_KEYS"])  # a usable key
        for name in ("secret.key", "encryption.key"):
            assert stat.S_IMODE((instance / name).stat().st_mode) == 0o600
        assert first.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{instance / 'portal.db'}"
        assert first.config["SMTP_SENDERS_BASE_TEMPLATE"] == "layout.html"
    finally:
        for app in apps:
            with app.app_context():
                db.engine.dispose()


def test_environment_settings_win_over_generated_ones(tmp_path, monkeypatch):
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("SECRET_KEY", "from-env")
    monkeypatch.setenv("SMTP_SENDERS_ENCRYPTION_KEYS", key)
    app = create_app({"INSTANCE_PATH": str(tmp_path / "instance"),
                      "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'p.db'}"})
    try:
        assert app.config["SECRET_KEY"] == "from-env"
        assert app.config["SMTP_SENDERS_ENCRYPTION_KEYS"] == key
        assert not (tmp_path / "instance" / "secret.key").exists()
        assert not (tmp_path / "instance" / "encryption.key").exists()
    finally:
        with app.app_context():
            db.engine.dispose()


@pytest.mark.parametrize(("given", "used"), [
    ("postgresql://u@127.0.0.1:5432/portal", "postgresql+psycopg://u@127.0.0.1:5432/portal"),
    ("postgres://u@127.0.0.1/portal", "postgresql+psycopg://u@127.0.0.1/portal"),
    ("postgresql+psycopg://u@127.0.0.1/portal", "postgresql+psycopg://u@127.0.0.1/portal"),
])
def test_database_url_uses_psycopg_3_for_postgresql(tmp_path, monkeypatch, given, used):
    monkeypatch.setenv("DATABASE_URL", given)

    assert database_url(tmp_path) == used


# ------------------------------------------------------------------------ mail catcher


@pytest.fixture
def catcher(tmp_path: Path):
    running = start_catcher(tmp_path / "catcher", LOOPBACK, free_port(), "pw")
    yield running
    running.stop()


@pytest.fixture
def localhost_catcher(tmp_path: Path):
    """A catcher on 127.0.0.1 itself (a free port there), the address the portal names
    "localhost"; every other test's catcher is on the run's LOOPBACK."""
    running = start_catcher(tmp_path / "catcher", "127.0.0.1", free_port("127.0.0.1"), "pw")
    yield running
    running.stop()


def _message(subject: str, body: str = "Hello from the test.\n") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "portal@example.com"
    message["To"] = "admin@example.com"
    message["Subject"] = subject
    message.set_content(body)
    return message


def _client_context(catcher: Catcher) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=catcher.ca_file)


def test_catcher_takes_mail_over_starttls_with_auth_and_the_portal_lists_it(
        catcher, make_portal):
    with smtplib.SMTP(catcher.host, catcher.port, timeout=5) as smtp:
        smtp.starttls(context=_client_context(catcher))
        smtp.login("demo", "pw")
        smtp.send_message(_message("Quarterly <b>report</b>", "Line one\n<script>x</script>\n"))

    client = make_portal(CATCHER=catcher).test_client()
    log_in(client)
    listing = client.get("/catcher")

    assert listing.status_code == 200
    assert "Quarterly &lt;b&gt;report&lt;/b&gt;" in listing.text
    assert "<b>report</b>" not in listing.text
    assert "portal@example.com" in listing.text
    (caught,) = catcher.messages.newest_first()
    assert caught.username == "demo"
    detail = client.get(f"/catcher/{caught.id}")
    assert detail.status_code == 200
    assert "&lt;script&gt;x&lt;/script&gt;" in detail.text
    assert "<script>x" not in detail.text
    assert "admin@example.com" in detail.text
    assert client.get(f"/catcher/{caught.id + 1}").status_code == 404


def test_home_page_shows_the_running_catchers_sender_settings(localhost_catcher, make_portal):
    catcher = localhost_catcher
    client = make_portal(CATCHER=catcher).test_client()
    log_in(client)
    page = client.get("/").text

    assert "<code>localhost</code>" in page
    assert f"<code>{catcher.port}</code>" in page
    assert "<code>demo</code>" in page
    assert "<code>pw</code>" in page


def test_catcher_lists_newest_first(catcher, make_portal):
    with smtplib.SMTP(catcher.host, catcher.port, timeout=5) as smtp:
        smtp.starttls(context=_client_context(catcher))
        smtp.login("demo", "pw")
        for subject in ("first-message", "second-message"):
            smtp.send_message(_message(subject))

    client = make_portal(CATCHER=catcher).test_client()
    log_in(client)
    page = client.get("/catcher").text

    assert page.index("second-message") < page.index("first-message")


def test_catcher_refuses_auth_and_mail_before_starttls(catcher):
    credentials = base64.b64encode(b"\0demo\0pw").decode()
    with smtplib.SMTP(catcher.host, catcher.port, timeout=5) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("starttls")
        assert not smtp.has_extn("auth")  # not even offered in clear text

        code, _ = smtp.docmd("AUTH", f"PLAIN {credentials}")
        assert code == 530
        code, _ = smtp.docmd("MAIL", "FROM:<portal@example.com>")
        assert code == 530

    assert len(catcher.messages) == 0


def test_catcher_refuses_wrong_password_and_mail_without_auth(catcher):
    with smtplib.SMTP(catcher.host, catcher.port, timeout=5) as smtp:
        smtp.starttls(context=_client_context(catcher))
        smtp.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError):
            smtp.login("demo", "not-the-password")
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            smtp.send_message(_message("unauthenticated"))
        assert refused.value.smtp_code == 530

    assert len(catcher.messages) == 0


def test_catcher_certificate_is_issued_by_its_own_ca(catcher):
    assert Path(catcher.ca_file).read_text().startswith("-----BEGIN CERTIFICATE-----")
    with smtplib.SMTP(catcher.host, catcher.port, timeout=5) as smtp:
        # The system store does not know the catcher's CA: verification must fail.
        with pytest.raises(ssl.SSLCertVerificationError):
            smtp.starttls(context=ssl.create_default_context())


def test_stopped_catcher_frees_its_port(tmp_path):
    port = free_port()
    start_catcher(tmp_path, LOOPBACK, port, "pw").stop()

    again = start_catcher(tmp_path, LOOPBACK, port, "pw")
    again.stop()
    again.stop()  # stopping twice is harmless


def test_message_store_keeps_only_the_newest_messages():
    store = MessageStore(limit=3)
    for number in range(5):
        store.add("a@example.com", ["b@example.com"],
                  _message(f"message {number}").as_bytes())

    assert [m.subject for m in store.newest_first()] == [
        "message 4", "message 3", "message 2"]


# ------------------------------------------------------- the portal sends to the catcher


class _RouteTo:
    """Resolve every Server Name to the catcher's address (it may not be 127.0.0.1)."""

    def __init__(self, address: str) -> None:
        self.address = address

    @hookimpl
    def smtp_senders_resolve(self, server_name: str, port: int) -> list[str]:
        return [self.address]


def test_send_test_email_from_the_portal_arrives_in_the_catcher(
        catcher_on_2525, make_portal, caplog):
    catcher = catcher_on_2525
    app = make_portal(CATCHER=catcher, SMTP_SENDERS_CA_FILE=catcher.ca_file,
                      SMTP_SENDERS_EHLO_NAME="portal.test")
    service = get_service(app)
    service.plugin_manager.register(_RouteTo(catcher.host))
    with app.app_context():
        sender = service.create_sender(
            SenderSettings(username="demo", server_name="localhost", port=2525,
                           from_name="Portal", from_address="portal@example.com"),
            password="pw",
        )
    client = app.test_client()
    log_in(client)
    edit = client.get(f"/settings/senders/{sender.id}")
    assert edit.status_code == 200

    with caplog.at_level(logging.INFO, logger="example_app"):
        result = client.post(f"/settings/senders/{sender.id}/test",
                             data={"csrf_token": csrf_token(edit.text),
                                   "recipient": "admin@example.com"},
                             headers={"Accept": "application/json"})

    answer = result.get_json()
    assert (answer["ok"], answer["message"]) == (
        True, "A test message was successfully sent to admin@example.com.")
    assert answer["diagnosis"]["stopped_at"] is None
    (caught,) = catcher.messages.newest_first()
    assert caught.rcpt_tos == ("admin@example.com",)
    assert caught.username == "demo"
    assert "Test message from your SMTP sender" in client.get("/catcher").text
    assert any("by admin" in record.getMessage() for record in caplog.records)


# ------------------------------------------------------------------- From-domain advice


def test_domain_advice_asks_the_demo_dns_server_and_only_it(tmp_path):
    """Without the demo's DNS server the portal looks nothing up (tests and offline
    machines); with it, lookups go to 127.0.0.1 and find the demo domain's records."""
    from example_app.dns_server import DEMO_ZONE, DNSServer
    from flask_smtp_senders import get_service

    base = {"INSTANCE_PATH": str(tmp_path / "instance"), "SECRET_KEY": "k",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'p.db'}",
            "SMTP_SENDERS_ENCRYPTION_KEYS": [Fernet.generate_key().decode()]}
    plain = create_app(dict(base))
    assert plain.config["SMTP_SENDERS_DOMAIN_ADVICE"] is False
    with DNSServer(DEMO_ZONE) as dns:
        demo = create_app(dict(base, DNS=dns))
        assert demo.config["SMTP_SENDERS_DNS_NAMESERVERS"] == ["127.0.0.1"]
        with demo.app_context():
            advice = get_service().domain_advisor.advise("portal@example.com")
    assert advice is not None and (advice.spf, advice.dmarc) == ("published", "quarantine")
    assert dns.questions == ["example.com", "_dmarc.example.com"]
    for app in (plain, demo):
        with app.app_context():
            db.engine.dispose()
