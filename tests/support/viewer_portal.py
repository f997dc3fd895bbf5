"""A small Flask-Login portal for the browser tests of access (issue 17): ``admin`` may
do everything, ``viewer`` may ``list`` and ``read``; and ``serve(app)``, which serves any
app from this process on the run's loopback address (for tests whose portal needs
objects of the test, such as a token server, or real Flask-Login users)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flask import Flask, redirect, render_template_string, request
from flask_login import LoginManager, UserMixin, current_user, login_user
from flask_sqlalchemy import SQLAlchemy
from werkzeug.serving import WSGIRequestHandler, make_server

from flask_smtp_senders import SMTPSenders, hookimpl
from tests.support.loopback import LOOPBACK
from tests.support.pages import create

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


def viewer_portal_app(folder: Path, fernet_key: str) -> Flask:
    """The portal, with two senders saved by the admin."""
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
    admin = app.test_client()
    with admin.session_transaction() as session:
        session["_user_id"], session["_fresh"] = "admin", True
    for address in ("noreply@example.com", "second@example.com"):
        assert create(admin, from_address=address).status_code == 302
    return app


@contextlib.contextmanager
def serve(app: Flask) -> Iterator[str]:
    """``app`` served on loopback by a werkzeug thread while the block runs; its URL."""
    server = make_server(LOOPBACK, 0, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        if "sqlalchemy" in app.extensions:
            with app.app_context():
                app.extensions["sqlalchemy"].engine.dispose()
