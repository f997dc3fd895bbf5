"""The OAuth2 Provider Types in Chromium: "+" to a saved sender and a delivered test email
for Microsoft 365 (with the pictures docs/providers.md shows), Google Workspace (the key
file uploaded) and Custom Server with OAuth2, walked by visible labels in the example
portal.

Real parts: the example portal (served from this process, so that it can be pointed at
the test's servers), a loopback HTTPS token server issuing tokens as Microsoft Entra does
(tests/support/token_server.py), and an SMTP server that accepts exactly those tokens
over XOAUTH2. Nothing reaches the internet: the portal resolves the token host and the
mail server's name to loopback.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.fernet import Fernet
from werkzeug.serving import WSGIRequestHandler, make_server

from example_app import create_app, db
from flask_smtp_senders import hookimpl
from tests.support.browser import (
    PNG_MAGIC,
    ROOT,
    SUCCESS,
    InProcessPortal,
    Problems,
    expect,
    log_in,
    open_senders,
    screenshot_dir,
    send_test_email,
    start_adding,
)
from tests.support.smtp_servers import LOOPBACK, SERVER_NAME
from tests.support.token_server import TOKEN_HOSTS, TokenServer, make_google_key

TENANT = "0b3c5e7a-1d2f-4a6b-8c9d-0e1f2a3b4c5d"
CLIENT = "6f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
MAILBOX = "notifications@contoso.com"
WORKSPACE_USER = "notifications@example.com"
#: The pictures docs/providers.md shows (written with UPDATE_README_SCREENSHOT=1).
DOCS_FORM = ROOT / "docs" / "microsoft365-form.png"
DOCS_TEST = ROOT / "docs" / "microsoft365-test-email.png"


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        """No access log line per request on the test's output."""


class LoopbackNames:
    """The portal's resolver for the names of this test: all on loopback."""

    @hookimpl
    def smtp_senders_resolve(self, server_name: str, port: int) -> list[str] | None:
        return [LOOPBACK] if server_name in (SERVER_NAME, *TOKEN_HOSTS) else None


@pytest.fixture
def entra(tls_material, tmp_path) -> Iterator[TokenServer]:
    """The token server of all three providers: an Entra app allowed to send as MAILBOX,
    a Google service account delegated for WORKSPACE_USER (its key file in tmp_path), and
    a generic client for WORKSPACE_USER."""
    secret = "Entra~" + secrets.token_urlsafe(24)
    key = make_google_key()
    cert = tls_material.ca.issue_cert(*TOKEN_HOSTS, LOOPBACK)
    with TokenServer(cert=cert) as server:
        server.add_microsoft_app(TENANT, CLIENT, secret, mailboxes=[MAILBOX])
        server.add_google_account(key, users=[WORKSPACE_USER])
        server.add_client("portal-mailer", secret, users=[WORKSPACE_USER], scope="smtp.send")
        server.client_secret = secret  # type: ignore[attr-defined]
        server.key_file = tmp_path / "service-account.json"  # type: ignore[attr-defined]
        server.key_file.write_text(key.text)  # type: ignore[attr-defined]
        server.google_client_id = key.client_id  # type: ignore[attr-defined]
        yield server


@pytest.fixture
def oauth_portal(browser, tls_material, entra, tmp_path) -> Iterator[InProcessPortal]:
    """The example portal, trusting the test CA and getting Microsoft 365 tokens from
    ``entra``; served by a werkzeug thread on the run's loopback address."""
    password = secrets.token_urlsafe(12)
    app = create_app({
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "SECRET_KEY": os.urandom(32).hex(),
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'portal.db'}",
        "SMTP_SENDERS_ENCRYPTION_KEYS": [Fernet.generate_key().decode()],
        "SMTP_SENDERS_CA_FILE": tls_material.ca_file,
        "SMTP_SENDERS_EHLO_NAME": "portal.test",
        "SMTP_SENDERS_MICROSOFT_AUTHORITY": entra.microsoft_authority(),
        "SMTP_SENDERS_GOOGLE_TOKEN_URL": entra.google_url(),
        "EXAMPLE_ADMIN_PASSWORD": password,
    })
    app.extensions["smtp_senders"].plugin_manager.register(LoopbackNames())
    server = make_server(LOOPBACK, 0, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield InProcessPortal(f"http://{LOOPBACK}:{server.server_port}", password)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        with app.app_context():
            db.engine.dispose()


def shoot(page: Any, name: str, *also: Any) -> list[Any]:
    """A full-page screenshot under the screenshot folder, and into docs when asked. The
    viewport is stretched to the page first, so a modal's backdrop covers the picture."""
    path = screenshot_dir() / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    viewport = page.viewport_size
    height = page.evaluate("document.documentElement.scrollHeight")
    page.set_viewport_size({"width": viewport["width"],
                            "height": max(viewport["height"], height)})
    try:
        page.screenshot(path=str(path), full_page=True)
    finally:
        page.set_viewport_size(viewport)
    if os.environ.get("UPDATE_README_SCREENSHOT") == "1":
        for target in also:
            target.write_bytes(path.read_bytes())
    return [path]


def test_microsoft_365_from_plus_to_a_delivered_test_email(open_page, oauth_portal, entra,
                                                           scripted_server,
                                                           problems: Problems):
    smtp = scripted_server(tls="implicit", auth=("XOAUTH2",), token_check=entra.valid)
    page = open_page(oauth_portal.url)
    log_in(page, oauth_portal)
    open_senders(page)
    start_adding(page, provider="Microsoft 365")
    expect(page.get_by_label("Server Name")).to_have_value("smtp.office365.com")
    expect(page.get_by_label("Port")).to_have_value("587")

    page.get_by_label("Tenant ID").fill(TENANT)
    page.get_by_label("Client ID").fill(CLIENT)
    page.get_by_label("Client Secret").fill(entra.client_secret)
    page.get_by_label("Mailbox").fill(MAILBOX)
    page.get_by_label("Secret Expires").fill("2027-06-30")
    page.get_by_label("From Name").fill("Contoso Portal")
    page.get_by_label("From Address").fill(MAILBOX)
    shots = shoot(page, "16-microsoft365-form", DOCS_FORM)  # as an administrator fills it
    page.get_by_label("Server Name").fill(SERVER_NAME)  # the test's server, not Microsoft's
    page.get_by_label("Port").fill(str(smtp.port))
    page.get_by_role("button", name="Save").click()

    expect(page.get_by_role("status").filter(has_text="The sender was saved.")).to_be_visible()
    expect(page.get_by_role("heading", name="Email Sender Microsoft 365")).to_be_visible()
    expect(page.get_by_label("Tenant ID")).to_have_value(TENANT)
    expect(page.get_by_label("Client Secret")).to_have_value("")
    expect(page.get_by_label("Secret Expires")).to_have_value("2027-06-30")
    assert entra.client_secret not in page.content()

    dialog = send_test_email(page, "some.body@acme.com")
    expect(dialog.get_by_role("status")).to_have_text(SUCCESS)
    stages = dialog.locator(".smtp-senders-diagnosis .stage")
    expect(stages.first).to_contain_text("Token")
    expect(stages.first).to_contain_text("passed")
    expect(dialog.locator(".smtp-senders-diagnosis")).to_contain_text("AUTH")
    shots += shoot(page, "17-microsoft365-test-email", DOCS_TEST)
    dialog.get_by_role("link", name="Close").click()

    open_senders(page)
    row = page.get_by_role("row").filter(has_text=MAILBOX)
    expect(row).to_contain_text("Microsoft 365")
    expect(row).to_contain_text("Last test passed")
    assert len(smtp.messages) == 1
    mail_from, recipients, _data = smtp.messages[0]
    assert (mail_from, recipients) == (MAILBOX, ["some.body@acme.com"])
    assert len(entra.requests) == 1  # one token, fetched for the test email
    for path in shots:
        assert path.read_bytes().startswith(PNG_MAGIC)
    assert problems.all() == []


def save_and_send(page: Any, heading: str) -> Any:
    """Save, check the saved page, and send a test email; the dialog, with the result."""
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status").filter(has_text="The sender was saved.")).to_be_visible()
    expect(page.get_by_role("heading", name=heading)).to_be_visible()
    dialog = send_test_email(page, "some.body@acme.com")
    expect(dialog.get_by_role("status")).to_have_text(SUCCESS)
    expect(dialog.locator(".smtp-senders-diagnosis .stage").first).to_contain_text("Token")
    return dialog


def test_google_workspace_with_an_uploaded_key_file(open_page, oauth_portal, entra,
                                                    scripted_server, problems: Problems):
    smtp = scripted_server(tls="implicit", auth=("XOAUTH2",), token_check=entra.valid)
    page = open_page(oauth_portal.url)
    log_in(page, oauth_portal)
    open_senders(page)
    start_adding(page, provider="Google Workspace")
    expect(page.get_by_label("Server Name")).to_have_value("smtp.gmail.com")
    expect(page.get_by_label("Port")).to_have_value("465")
    page.get_by_label("Service Account Key File").set_input_files(str(entra.key_file))
    page.get_by_label("Workspace User").fill(WORKSPACE_USER)
    page.get_by_label("Server Name").fill(SERVER_NAME)
    page.get_by_label("Port").fill(str(smtp.port))
    page.get_by_label("From Address").fill(WORKSPACE_USER)
    dialog = save_and_send(page, "Email Sender Google Workspace")
    shots = shoot(page, "18-google-test-email")
    dialog.get_by_role("link", name="Close").click()

    expect(page.get_by_text(entra.google_client_id)).to_be_visible()  # for the delegation
    expect(page.get_by_role("textbox", name="Service Account Key")).to_have_value("")
    assert "PRIVATE KEY" not in page.content()
    assert [(m[0], m[1]) for m in smtp.messages] == [(WORKSPACE_USER, ["some.body@acme.com"])]
    for path in shots:
        assert path.read_bytes().startswith(PNG_MAGIC)
    assert problems.all() == []


def test_custom_server_with_oauth2(open_page, oauth_portal, entra, scripted_server,
                                   problems: Problems):
    smtp = scripted_server(tls="implicit", auth=("OAUTHBEARER",), token_check=entra.valid)
    page = open_page(oauth_portal.url)
    log_in(page, oauth_portal)
    open_senders(page)
    start_adding(page, provider="Custom Server with OAuth2")
    expect(page.get_by_label("Port")).to_have_value("465")
    page.get_by_label("Token URL").fill(entra.generic_url())
    page.get_by_label("Client ID").fill("portal-mailer")
    page.get_by_label("Client Secret").fill(entra.client_secret)
    page.get_by_label("Scope").fill("smtp.send")
    page.get_by_label("Username").fill(WORKSPACE_USER)
    page.get_by_label("Server Name").fill(SERVER_NAME)
    page.get_by_label("Port").fill(str(smtp.port))
    page.get_by_label("From Address").fill(WORKSPACE_USER)
    dialog = save_and_send(page, "Email Sender Custom Server with OAuth2")
    expect(dialog.locator(".smtp-senders-diagnosis")).to_contain_text("OAUTHBEARER")
    dialog.get_by_role("link", name="Close").click()

    open_senders(page)
    expect(page.get_by_role("row").filter(has_text=WORKSPACE_USER)).to_contain_text(
        "Custom Server with OAuth2")
    assert len(smtp.messages) == 1
    assert problems.all() == []
