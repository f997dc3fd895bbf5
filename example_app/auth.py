"""The portal's one login (``admin``), the login gate and the extension's access hooks.

A real portal has users and roles; this one keeps just enough to show how a host answers
``smtp_senders_authorize``, ``smtp_senders_actor`` and
``smtp_senders_api_token_authenticated`` from its own session and API token.

Case G12: logins are throttled per client address (``EXAMPLE_LOGIN_RATE_LIMIT``, counted
with ``limits``), and logout ends the session on the server too (sessions.py).
"""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    current_app,
    has_request_context,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from werkzeug.wrappers import Response
from wtforms import HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, Length

from flask_smtp_senders import hookimpl
from flask_smtp_senders.extension import is_api_path

from . import sessions

ADMIN_USER = "admin"
DEFAULT_PASSWORD = "admin"  # noqa: S105 - the documented demo default
#: Endpoints an anonymous visitor may reach; everything else sends them to the login page.
PUBLIC_ENDPOINTS = frozenset({"auth.login", "static"})

bp = Blueprint("auth", __name__)


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=100)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=200)])
    next = HiddenField()


class LogoutForm(FlaskForm):
    """No fields: it exists for its CSRF token, so another site cannot log users out."""


#: Who a call with the API token acts as (audited under this name).
TOKEN_USER = "api-token"  # noqa: S105 - a user name, not a secret


def current_user() -> str | None:
    """The signed-in user, or ``api-token`` for a call bearing the portal's API token."""
    if not has_request_context():
        return None
    return session.get("user") or _token_user()


def _token_user() -> str | None:
    """``Authorization: Bearer <EXAMPLE_API_TOKEN>`` signs a script in (no session)."""
    expected = current_app.config.get("EXAMPLE_API_TOKEN")
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if not expected or scheme.lower() != "bearer" or not token:
        return None
    return TOKEN_USER if hmac.compare_digest(token.encode(), expected.encode()) else None


def safe_next(target: str | None) -> str | None:
    """``target`` if it is a path on this site, else None (no open redirect).

    Browsers read ``//host`` and ``/\\host`` as another site, and drop tabs and newlines
    in URLs, so only a plain path starting with exactly one slash passes.
    """
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return None
    if "\\" in target or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


def _credentials_ok(username: str, password: str) -> bool:
    expected = current_app.config["EXAMPLE_ADMIN_PASSWORD"]
    # Both comparisons always run, so timing does not tell which one failed.
    user_ok = hmac.compare_digest(username.encode(), ADMIN_USER.encode())
    password_ok = hmac.compare_digest(password.encode(), expected.encode())
    return user_ok and password_ok


LIMITER_KEY = "example_login_limiter"


def _login_allowed() -> bool:
    """Count one login attempt of this client address; False past the limit (Case G12).
    Behind a proxy, ProxyFix must give the real address, or everyone shares one count."""
    limiter = current_app.extensions.get(LIMITER_KEY)
    if limiter is None:
        limiter = current_app.extensions[LIMITER_KEY] = MovingWindowRateLimiter(
            MemoryStorage())
    limit = parse(current_app.config["EXAMPLE_LOGIN_RATE_LIMIT"])
    return limiter.hit(limit, "login", request.remote_addr or "unknown")


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    form = LoginForm()
    if request.method == "GET":
        form.next.data = safe_next(request.args.get("next")) or ""
    error = None
    if form.validate_on_submit():
        if not _login_allowed():
            form.password.data = ""
            return render_template(
                "login.html", form=form,
                error="Too many login attempts. Wait a minute and try again."), 429, {
                    "Retry-After": "60"}
        if _credentials_ok(form.username.data, form.password.data):
            target = safe_next(form.next.data) or url_for("home")
            session.clear()  # a fresh session: nothing from before the login survives
            session["user"] = ADMIN_USER
            return redirect(target)
        error = "Wrong username or password."
    elif request.method == "POST":
        error = "Enter your username and password." if not form.csrf_token.errors else (
            "Your login form expired. Please try again.")
    return render_template("login.html", form=form, error=error)


@bp.post("/logout")
def logout() -> Response:
    if not LogoutForm().validate_on_submit():
        return redirect(url_for("home"))
    user = session.get("user")
    if user is not None:
        sessions.end_sessions(user)  # a copy of the cookie kept from before is worthless
    session.clear()
    return redirect(url_for("auth.login"))


def require_login() -> ResponseReturnValue | None:
    """Send anonymous visitors to the login page, remembering where they were going."""
    if current_user() is not None:
        return None
    endpoint = request.endpoint or ""
    if endpoint in PUBLIC_ENDPOINTS or endpoint.endswith(".static"):
        return None
    if is_api_path(current_app.config, request.path):  # scripts get a readable answer
        return jsonify(type="about:blank", title="Sign in or send the API token.",
                       status=401), 401, {"WWW-Authenticate": "Bearer",
                                          "Content-Type": "application/problem+json"}
    target = request.full_path if request.query_string else request.path
    if request.method != "GET" or safe_next(target) is None:
        return redirect(url_for("auth.login"))
    return redirect(url_for("auth.login", next=target))


class PortalAccess:
    """The host's answers to the extension: only the admin manages senders."""

    @hookimpl
    def smtp_senders_authorize(self, action: str, sender_id: int | None) -> bool:
        return current_user() in (ADMIN_USER, TOKEN_USER)

    @hookimpl
    def smtp_senders_api_token_authenticated(self) -> bool:
        """Case G9: the API skips its CSRF check only for a call the API token signed in;
        a call with the session cookie (junk Authorization header or not) needs it."""
        return session.get("user") is None and _token_user() is not None

    @hookimpl
    def smtp_senders_actor(self) -> str | None:
        return current_user()

    @hookimpl
    def smtp_senders_audit(self, event: Any) -> None:
        current_app.logger.info("senders audit: %s sender=%s by %s: %s", event.action,
                                event.sender_id, event.actor, event.outcome)


def init_app(app: Flask) -> None:
    app.session_interface = sessions.RevocableSessionInterface()
    sessions.create_table(app)
    app.register_blueprint(bp)
    app.before_request(require_login)

    @app.context_processor
    def portal_user() -> dict[str, Any]:
        user = current_user()
        form = LogoutForm(formdata=None) if user else None
        return {"portal_user": user, "logout_form": form}
