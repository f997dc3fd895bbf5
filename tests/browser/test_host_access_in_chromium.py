"""Issue 17, item 2 in Chromium: a viewer in a Flask-Login portal.

The portal (served from this process by a werkzeug thread on the run's loopback address)
has real Flask-Login users: ``admin`` may do everything, ``viewer`` may ``list`` and
``read``. An anonymous visit to Settings > Senders lands on the portal's login page; the
viewer logs in there, comes back to the list, sees the senders with no +, Edit or Make
default, and opens one read-only (fields disabled, no password, no Save, no Send Test
Email). Nothing is loaded from outside loopback; no console error.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, redirect, render_template_string, request
from flask_login import LoginManager, UserMixin, current_user, login_user
from flask_sqlalchemy import SQLAlchemy
from werkzeug.serving import WSGIRequestHandler, make_server

from flask_smtp_senders import SMTPSenders, hookimpl
from tests.support.browser import PNG_MAGIC, Problems, expect, screenshot_dir
from tests.support.loopback import LOOPBACK
from tests.support.pages import PREFIX, create

ROLES = {"admin": {"list", "read", "create", "update", "delete", "test"},
         "viewer": {"list", "read"}}
LOGIN_PAGE = """<!doctype html><html lang="en"><title>Log in</title><main><h1>Log in</h1>
<form method="post"><input type="hidden" name="next" value="{{ request.args.get('next', '') }}">
<label>Username <input name="username"></label> <button>Log in</button></form></main></html>"""


class User(UserMixin):
    def __init__(self, name: str) -> None:
        self.id = name


class Roles:
    """The portal's answer: the signed-in user's role; no opinion for anyone else."""

    @hookimpl
    def smtp_senders_authorize(self, action, sender_id):
        if not current_user.is_authenticated:
            return None
        return action in ROLES.get(current_user.id, ())

    @hookimpl
    def smtp_senders_actor(self):
        return current_user.get_id()


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        """No access log line per request on the test's output."""


def portal_app(folder: Path, fernet_key: str) -> Flask:
    app = Flask("viewer_portal")
    app.config.update(SECRET_KEY="viewer-portal-key",
                      SQLALCHEMY_DATABASE_URI=f"sqlite:///{folder / 'portal.db'}",
                      SMTP_SENDERS_ENCRYPTION_KEYS=[fernet_key],
                      SMTP_SENDERS_CREATE_TABLES=True, SMTP_SENDERS_DOMAIN_ADVICE=False)
    SQLAlchemy(app)
    manager = LoginManager(app)
    manager.login_view = "login"
    manager.user_loader(lambda name: User(name) if name in ROLES else None)

    @app.route("/login", methods=["GET", "POST"])
    def login():
        if request.method == "POST":
            login_user(User(request.form["username"]))
            target = request.form.get("next") or "/"
            return redirect(target if target.startswith("/") and not target.startswith("//")
                            else "/")
        return render_template_string(LOGIN_PAGE)

    SMTPSenders(app, db=app.extensions["sqlalchemy"], plugins=[Roles()])
    return app


@pytest.fixture
def viewer_portal(browser, tmp_path, fernet_key) -> Iterator[str]:
    """The portal with two senders saved by the admin, served on loopback; its URL."""
    app = portal_app(tmp_path, fernet_key)
    admin = app.test_client()
    with admin.session_transaction() as session:
        session["_user_id"], session["_fresh"] = "admin", True
    for address in ("noreply@example.com", "second@example.com"):
        assert create(admin, from_address=address).status_code == 302
    server = make_server(LOOPBACK, 0, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()


def shoot(page: Any, name: str) -> Path:
    path = screenshot_dir() / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path


def test_a_viewer_logs_in_and_sees_a_read_only_list(open_page, viewer_portal,
                                                    problems: Problems):
    page = open_page(viewer_portal)
    page.goto(f"{PREFIX}/")  # anonymous: Flask-Login's login_view, with next
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    assert page.url.startswith(f"{viewer_portal}/login?next=")
    page.get_by_label("Username").fill("viewer")
    page.get_by_role("button", name="Log in").click()

    expect(page.get_by_role("heading", name="Senders", exact=True)).to_be_visible()
    assert page.url == f"{viewer_portal}{PREFIX}/"
    rows = page.get_by_role("row")
    expect(rows.filter(has_text="noreply@example.com")).to_have_count(1)
    expect(rows.filter(has_text="second@example.com")).to_have_count(1)
    expect(page.get_by_role("link", name="Add a sender")).to_have_count(0)
    expect(page.get_by_role("link", name="Edit", exact=False)).to_have_count(0)
    expect(page.get_by_role("button", name="Make default", exact=False)).to_have_count(0)
    expect(page.get_by_text("Default", exact=True)).to_have_count(1)
    shots = [shoot(page, "19-viewer-read-only-list")]

    rows.filter(has_text="second@example.com").get_by_role("link", name="View").click()
    expect(page.get_by_role("heading", name="Email Sender Custom SMTP Server")).to_be_visible()
    expect(page.get_by_text("You can see this sender's settings but not change them.")
           ).to_be_visible()
    for label, value in [("Username", "alice"), ("Server Name", "smtp.example.com"),
                         ("Port", "587"), ("From Address", "second@example.com")]:
        field = page.get_by_label(label)
        expect(field).to_have_value(value)
        expect(field).to_be_disabled()
    expect(page.get_by_role("textbox", disabled=False)).to_have_count(0)
    expect(page.get_by_label("Password")).to_have_count(0)
    expect(page.get_by_role("button")).to_have_count(0)  # no Save, no Send
    expect(page.get_by_role("link", name="Send Test Email")).to_have_count(0)
    expect(page.get_by_role("link", name="Delete")).to_have_count(0)
    shots.append(shoot(page, "20-viewer-read-only-sender"))

    page.get_by_role("link", name="Back to Senders").click()
    expect(page.get_by_role("heading", name="Senders", exact=True)).to_be_visible()
    for path in shots:
        assert path.read_bytes().startswith(PNG_MAGIC)
    assert problems.all() == []
