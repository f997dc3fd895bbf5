"""Issue 17, items 2 and 3: access the way portals expect, and a global CSRFProtect.

Hosts built here as a portal builds them (Flask's test client, SQLite): one with real
Flask-Login users and roles, one with its own session and the ``smtp_senders_login_url``
hook, and either with Flask-WTF's ``CSRFProtect(app)`` made before or after
``SMTPSenders(app)``. What they prove:

- an anonymous visitor to a page is sent to the host's login with ``next`` the page
  (Flask-Login's ``login_view``, its blueprint view or ``unauthorized_handler``; else the
  hook), and comes back to it once signed in; a signed-in user refused, a POST, a static
  file and every API call get 403 (the API a problem, never a redirect);
- a user who may only list sees no +, Edit, View or Make default; one who may ``read``
  opens a sender read-only (fields disabled, no secret field, no Save, Send Test Email
  only with ``test``) and still cannot change it; each action is asked once per request;
- docs/hooks.md's table names every route and the action it asks;
- bearer-token API calls work under a global CSRFProtect in both orders, while the
  pages' forms, the session-cookie API calls and the host's own views stay protected.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask, redirect, render_template_string, request, session, url_for
from flask_login import LoginManager, UserMixin, current_user, login_user
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFError, CSRFProtect, generate_csrf

from flask_smtp_senders import SMTPSenders, get_service, hookimpl
from flask_smtp_senders.blueprint import bp
from flask_smtp_senders.web.api import api
from flask_smtp_senders.web.guard import IMPLIED_BY, action_of
from tests.support.pages import GOOD, PREFIX, create, create_provider, csrf
from tests.support.token_server import make_google_key

API = f"{PREFIX}/api"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "hooks.md"
TOKEN = "portal-api-token"
#: Each user's role: the actions the portal's hook allows them.
ROLES = {"admin": {"list", "read", "create", "update", "delete", "test"},
         "viewer": {"list", "read"},
         "tester": {"list", "read", "test"},
         "lister": {"list"},
         "legacy": {"list", "update"}}  # a hook written before "read" existed
LOGIN_PAGE = """<!doctype html><title>Log in</title><h1>Log in</h1>
{% for message in get_flashed_messages() %}<p class="flash">{{ message }}</p>{% endfor %}
<form method="post"><input name="csrf_token" type="hidden" value="{{ token }}">
<input type="hidden" name="next" value="{{ request.args.get('next', '') }}">
<label>Username <input name="username"></label><button>Log in</button></form>"""
SENDER = {"username": "alice", "password": "Api-Pa55word-1", "server_name": "smtp.example.com",
          "port": 587, "from_address": "noreply@example.com"}


class User(UserMixin):
    def __init__(self, name: str) -> None:
        self.id = name


def signed_in() -> str | None:
    """The portal's user: Flask-Login's, else its own session's (the host without
    Flask-Login), else ``admin`` for a call bearing the API token."""
    if getattr(current_user, "is_authenticated", False):
        return current_user.id
    if session.get("user"):
        return session["user"]
    return "admin" if bearer() else None


def bearer() -> bool:
    return request.headers.get("Authorization") == f"Bearer {TOKEN}"


def role_allows(action: str) -> bool | None:
    """The portal's rule: the signed-in user's role; no opinion for anyone else."""
    user = signed_in()
    return None if user is None else action in ROLES.get(user, ())


class Portal:
    """The portal's answers: roles by user, the API token, the actor; every question kept
    (``asked``, ``login_asked``). ``login``: what ``smtp_senders_login_url`` does
    ("url": the login page for a visitor not signed in, None: no opinion, an exception:
    raise it)."""

    def __init__(self, login: Any = "url") -> None:
        self.asked: list[tuple[str, int | None]] = []
        self.login = login
        self.login_asked: list[str] = []

    @hookimpl
    def smtp_senders_authorize(self, action, sender_id):
        self.asked.append((action, sender_id))
        return role_allows(action)

    @hookimpl
    def smtp_senders_login_url(self, next_url):
        self.login_asked.append(next_url)
        if isinstance(self.login, Exception):
            raise self.login
        if self.login == "url" and signed_in() is None:
            return url_for("login", next=next_url)
        return None

    @hookimpl
    def smtp_senders_api_token_authenticated(self):
        return bearer() and not getattr(current_user, "is_authenticated", False)

    @hookimpl
    def smtp_senders_actor(self):
        return signed_in()


class NoLoginHook:
    """The same portal without ``smtp_senders_login_url``."""

    @hookimpl
    def smtp_senders_authorize(self, action, sender_id):
        return role_allows(action)

    @hookimpl
    def smtp_senders_actor(self):
        return signed_in()


def build_host(tmp_path: Path, fernet_key: str, plugin: object, *,
               flask_login: bool = True, login_view: str | None = "login",
               csrf_protect: str | None = None, **config: Any) -> Flask:
    """A portal: its login page (``/login``, and ``/admin-login``), a home page and a
    profile form of its own; Flask-Login set up unless ``flask_login`` is False (then the
    login keeps the user in the session); ``CSRFProtect(app)`` made "before" or "after"
    ``SMTPSenders(app)`` when ``csrf_protect`` says so."""
    app = Flask(f"portal_{len(list(tmp_path.iterdir()))}")
    app.config.update(
        SECRET_KEY="portal-secret-key", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/p.db",
        SMTP_SENDERS_ENCRYPTION_KEYS=[fernet_key], SMTP_SENDERS_CREATE_TABLES=True,
        SMTP_SENDERS_DOMAIN_ADVICE=False, SMTP_SENDERS_WRITE_RATE_LIMIT="100000 per minute",
        **config)
    db = SQLAlchemy(app)
    csrf = CSRFProtect()

    @app.errorhandler(CSRFError)
    def host_csrf_error(error: CSRFError):
        return f"HOST CSRF: {error.description}", 400

    @app.route("/login", methods=["GET", "POST"], endpoint="login")
    @app.route("/admin-login", methods=["GET", "POST"], endpoint="admin_login")
    def login():
        if request.method == "POST":
            name = request.form["username"]
            if flask_login:
                login_user(User(name))
            else:
                session["user"] = name
            target = request.form.get("next") or "/"
            return redirect(target if target.startswith("/") and not target.startswith("//")
                            else "/")
        return render_template_string(LOGIN_PAGE, token=generate_csrf())

    @app.get("/")
    def home():
        return "home"

    @app.post("/profile")
    def profile():
        return "profile saved"

    if flask_login:
        manager = LoginManager(app)
        manager.login_view = login_view
        manager.user_loader(lambda name: User(name) if name in ROLES else None)
    if csrf_protect == "before":
        csrf.init_app(app)
    SMTPSenders(app, db=db, plugins=[plugin])
    if csrf_protect == "after":
        csrf.init_app(app)
    return app


@pytest.fixture
def made(tmp_path, fernet_key):
    """Factory of hosts (each in its own folder); their engines disposed at the end."""
    apps: list[Flask] = []

    def make(plugin: object, **options: Any) -> Flask:
        folder = tmp_path / f"host{len(apps)}"
        folder.mkdir()
        apps.append(build_host(folder, fernet_key, plugin, **options))
        return apps[-1]

    yield make
    for app in apps:
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()


def log_in(client, name: str, flask_login: bool = True) -> None:
    with client.session_transaction() as saved:
        if flask_login:
            saved["_user_id"], saved["_fresh"] = name, True
        else:
            saved["user"] = name


def add_senders(app: Flask) -> list[int]:
    """Two Custom Server senders (the second not the default), saved by the admin."""
    client = app.test_client()
    log_in(client, "admin", flask_login=hasattr(app, "login_manager"))
    ids = []
    for address in ("noreply@example.com", "second@example.com"):
        answer = create(client, from_address=address)
        assert answer.status_code == 302, answer.text
        ids.append(int(answer.location.rstrip("/").rpartition("/")[2]))
    return ids


PAGES = ["/", "/new", "/new/email/custom", "/new/email/microsoft365", "/{id}",
         "/{id}/delete", "/?sort=name&page=2"]


# -- anonymous visitors ----------------------------------------------------------------------

def test_an_anonymous_visitor_is_sent_to_flask_logins_login_view_and_back(made):
    """Every page sends an anonymous visitor to ``login_view`` with ``next`` the page (as
    ``@login_required`` does: Flask-Login's message flashed); once logged in there, the
    visitor lands on that page. The login hook is not asked: Flask-Login answered."""
    portal = Portal()
    app = made(portal)
    [sender_id, _] = add_senders(app)
    client = app.test_client()
    for page in PAGES:
        url = PREFIX + page.format(id=sender_id)
        answer = client.get(url)
        assert answer.status_code == 302, url
        assert to_login(answer.location) == ("/login", url), url
        assert client.head(url).status_code == 302
    assert portal.login_asked == []
    login = client.get(client.get(f"{PREFIX}/{sender_id}").location)
    assert "Please log in to access this page." in login.text
    back = client.post("/login", data={"csrf_token": csrf(login.data), "username": "admin",
                                       "next": f"{PREFIX}/{sender_id}"})
    assert back.location == f"{PREFIX}/{sender_id}"
    assert client.get(back.location).status_code == 200


def test_flask_logins_blueprint_view_and_unauthorized_handler_are_used(made):
    """``blueprint_login_views["smtp_senders"]`` wins over ``login_view``, and an
    ``unauthorized_handler`` over both, as for the host's own ``@login_required``."""
    app = made(Portal())
    app.login_manager.blueprint_login_views["smtp_senders"] = "admin_login"
    answer = app.test_client().get(f"{PREFIX}/")
    assert answer.status_code == 302
    assert to_login(answer.location) == ("/admin-login", f"{PREFIX}/")
    app.login_manager.unauthorized_handler(lambda: ("sign in first", 401))
    answer = app.test_client().get(f"{PREFIX}/")
    assert (answer.status_code, answer.text) == (401, "sign in first")


def test_without_a_login_view_the_hook_answers_then_403(made):
    """Flask-Login without ``login_view``: the ``smtp_senders_login_url`` hook gives the
    login page; without the hook (or with no answer) the visitor gets 403."""
    portal = Portal()
    app = made(portal, login_view=None)
    answer = app.test_client().get(f"{PREFIX}/new?a=1")
    assert answer.status_code == 302
    assert to_login(answer.location) == ("/login", f"{PREFIX}/new?a=1")
    assert portal.login_asked == [f"{PREFIX}/new?a=1"]
    portal.login = None
    assert app.test_client().get(f"{PREFIX}/new").status_code == 403
    assert made(NoLoginHook(), login_view=None).test_client().get(
        f"{PREFIX}/").status_code == 403


def test_a_host_without_flask_login_answers_with_the_hook(made, caplog):
    """No Flask-Login on the app: the hook says where a visitor who is not signed in goes
    (given the page); None (signed in, or no opinion) or a raising hook is a 403, and so
    is a host that does not implement it."""
    portal = Portal()
    app = made(portal, flask_login=False)
    [sender_id, _] = add_senders(app)
    client = app.test_client()
    for page in PAGES:
        url = PREFIX + page.format(id=sender_id)
        answer = client.get(url)
        assert answer.status_code == 302, url
        assert to_login(answer.location) == ("/login", url), url
    assert portal.login_asked[-1] == f"{PREFIX}/?sort=name&page=2"
    client.get(f"{PREFIX}/?q=a%2Fb%26c")  # the query as sent, escapes kept
    assert portal.login_asked[-1] == f"{PREFIX}/?q=a%2Fb%26c"
    login = client.get(answer.location)
    client.post("/login", data={"csrf_token": csrf(login.data), "username": "lister",
                                "next": f"{PREFIX}/"})
    assert client.get(f"{PREFIX}/").status_code == 200
    asked = len(portal.login_asked)
    assert client.get(f"{PREFIX}/new").status_code == 403  # signed in: the hook says None
    assert len(portal.login_asked) == asked + 1
    portal.login = None
    assert app.test_client().get(f"{PREFIX}/").status_code == 403
    portal.login = RuntimeError("login service down")
    with caplog.at_level(logging.ERROR):
        assert app.test_client().get(f"{PREFIX}/").status_code == 403
    assert "smtp_senders_login_url raised" in caplog.text
    assert made(NoLoginHook(), flask_login=False).test_client().get(
        f"{PREFIX}/").status_code == 403


def to_login(location: str) -> tuple[str, str]:
    """The login page a redirect goes to, and its ``next`` (its only parameter)."""
    target = urlsplit(location)
    query = parse_qs(target.query)
    assert list(query) == ["next"] and len(query["next"]) == 1, location
    return target.path, query["next"][0]


@pytest.mark.parametrize("flask_login", [True, False])
def test_posts_static_files_and_the_api_are_never_redirected(made, flask_login):
    """An anonymous POST, a static file and every API call (HTML accepted or not) answer
    403 (the API a problem) without a Location; nothing changes."""
    portal = Portal()
    app = made(portal, flask_login=flask_login)
    [sender_id, _] = add_senders(app)
    client = app.test_client()
    token = csrf(client.get("/login").data)
    for url in [f"{PREFIX}/new", f"{PREFIX}/new/email/custom", f"{PREFIX}/{sender_id}",
                f"{PREFIX}/{sender_id}/default", f"{PREFIX}/{sender_id}/delete",
                f"{PREFIX}/{sender_id}/test", f"{PREFIX}/{sender_id}/check"]:
        answer = client.post(url, data={**GOOD, "csrf_token": token, "recipient": "a@b.com"})
        assert answer.status_code == 403 and "Location" not in answer.headers, url
    for url in [f"{PREFIX}/static/senders.css", f"{PREFIX}/static/senders.js"]:
        assert client.get(url).status_code == 403, url
    asked = len(portal.login_asked)
    calls = [("GET", f"{API}/senders"), ("GET", f"{API}/senders/{sender_id}"),
             ("GET", f"{API}/openapi.json"), ("POST", f"{API}/senders"),
             ("PATCH", f"{API}/senders/{sender_id}"), ("DELETE", f"{API}/senders/{sender_id}"),
             ("POST", f"{API}/senders/{sender_id}/default"),
             ("POST", f"{API}/senders/{sender_id}/test"),
             ("POST", f"{API}/senders/{sender_id}/check")]
    for method, url in calls:
        for accept in ("application/json", "text/html"):
            answer = client.open(url, method=method, json=SENDER, headers={"Accept": accept})
            assert answer.status_code == 403 and "Location" not in answer.headers, url
            assert answer.json["type"] == "urn:flask-smtp-senders:problem:forbidden"
    assert len(portal.login_asked) == asked  # the API never asks where to log in
    with app.app_context():
        assert len(get_service().list_senders()) == 2


def test_a_signed_in_user_who_is_refused_gets_403(made):
    """Flask-Login says the user is signed in: a refusal is a 403, never the login page,
    and the hook is not asked."""
    portal = Portal()
    app = made(portal)
    client = app.test_client()
    log_in(client, "viewer")
    for url in [f"{PREFIX}/new", f"{PREFIX}/new/email/custom"]:
        answer = client.get(url)
        assert answer.status_code == 403 and "Location" not in answer.headers
    assert portal.login_asked == []


# -- what the pages show ------------------------------------------------------------------

class Controls(HTMLParser):
    """What a page offers: links and buttons by their accessible name, the fields of the
    sender form (name -> whether disabled, by themselves or by a disabled fieldset; the
    test modal's field aside), forms by their action, dialogs by their id."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.links: list[str] = []
        self.buttons: list[str] = []
        self.inputs: dict[str, bool] = {}
        self.forms: list[str] = []
        self.dialogs: list[str] = []
        self._disabled_fieldsets = 0
        self._in_dialog = False
        self._text: list[str] | None = None
        self._label: str | None = None
        self._tag = ""
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        kind = attributes.get("type")
        if tag == "fieldset":
            self._disabled_fieldsets += "disabled" in attributes
        elif tag == "input" and kind == "submit":
            self.buttons.append(attributes.get("value") or "")
        elif tag in ("input", "select", "textarea") and kind != "hidden":
            if not self._in_dialog:
                self.inputs[attributes.get("name") or ""] = (
                    bool(self._disabled_fieldsets) or "disabled" in attributes)
        elif tag in ("a", "button"):
            self._text, self._label, self._tag = [], attributes.get("aria-label"), tag
        elif tag == "form":
            self.forms.append(attributes.get("action") or "")
        elif tag == "dialog":
            self.dialogs.append(attributes.get("id") or "")
            self._in_dialog = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "fieldset" and self._disabled_fieldsets:
            self._disabled_fieldsets -= 1
        elif tag == "dialog":
            self._in_dialog = False
        elif tag == self._tag and self._text is not None:
            text = self._label or " ".join("".join(self._text).split())
            (self.links if tag == "a" else self.buttons).append(text)
            self._text = None

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)


def page_of(client, url: str) -> Controls:
    answer = client.get(url)
    assert answer.status_code == 200, (url, answer.status_code)
    return Controls(answer.text)


def test_a_user_who_may_only_list_sees_no_controls(made):
    """Only ``list``: the list shows the senders with no +, Edit, View or Make default
    (and no "Click +" when empty); their pages are refused."""
    app = made(Portal())
    client = app.test_client()
    log_in(client, "lister")
    empty = client.get(f"{PREFIX}/")
    assert "No sender yet." in empty.text and "Click <strong>+</strong>" not in empty.text
    [first, second] = add_senders(app)
    listing = page_of(client, f"{PREFIX}/")
    assert "Add a sender" not in listing.links and "+" not in listing.links
    assert [link for link in listing.links if link.startswith(("Edit", "View"))] == []
    assert [b for b in listing.buttons if b.startswith("Make default")] == []
    assert listing.forms == []
    text = client.get(f"{PREFIX}/").text
    assert "noreply@example.com" in text and "second@example.com" in text
    for sender_id in (first, second):
        assert client.get(f"{PREFIX}/{sender_id}").status_code == 403


def test_the_admin_sees_every_control(made):
    app = made(Portal())
    [first, second] = add_senders(app)
    client = app.test_client()
    log_in(client, "admin")
    listing = page_of(client, f"{PREFIX}/")
    assert "Add a sender" in listing.links
    assert listing.links.count("Edit smtp.example.com") == 2
    assert listing.buttons == ["Make default smtp.example.com"]
    sender = page_of(client, f"{PREFIX}/{second}")
    assert sender.buttons[0] == "Save" and "Delete" in sender.links
    assert "Send Test Email" in sender.links and sender.dialogs == ["send-test-email"]
    assert "password" in sender.inputs and not any(sender.inputs.values())


@pytest.mark.parametrize("provider", ["custom", "microsoft365", "google", "oauth2"])
def test_a_viewer_opens_a_sender_read_only(made, provider):
    """``read`` without ``update``: View (not Edit) on the list, no +, no Make default; the
    sender's page has every field disabled, no secret field, no Save, no Send Test Email
    (no ``test``), no Delete; saving, deleting, testing and Make default stay 403 and
    nothing changes."""
    app = made(Portal())
    [_, second] = add_senders(app)
    admin = app.test_client()
    log_in(admin, "admin")
    if provider != "custom":
        key = {"service_account_key": make_google_key().text} if provider == "google" else {}
        answer = create_provider(admin, provider, **key)
        assert answer.status_code == 302, answer.text
        second = int(answer.location.rpartition("/")[2])
    client = app.test_client()
    log_in(client, "viewer")
    listing = page_of(client, f"{PREFIX}/")
    assert "Add a sender" not in listing.links
    assert [link for link in listing.links if link.startswith("Edit")] == []
    assert "View smtp.example.com" in listing.links
    assert [b for b in listing.buttons if b.startswith("Make default")] == []
    html = client.get(f"{PREFIX}/{second}").text
    sender = Controls(html)
    assert sender.inputs and all(sender.inputs.values()), sender.inputs  # all disabled
    secrets = {"password", "client_secret", "service_account_key", "service_account_key_file"}
    assert secrets.isdisjoint(sender.inputs)
    assert "username" in sender.inputs and "server_name" in sender.inputs
    assert sender.buttons == [] and sender.forms == [] and sender.dialogs == []
    assert "Send Test Email" not in sender.links and "Delete" not in sender.links
    assert "Back to Senders" in sender.links
    assert "You can see this sender's settings but not change them." in html
    with app.app_context():
        before = [(s.id, s.version, s.is_default) for s in get_service().list_senders()]
    token = csrf(client.get("/login").data)
    data = {**GOOD, "csrf_token": token, "recipient": "a@b.com", "version": "1"}
    for url in [f"{PREFIX}/{second}", f"{PREFIX}/{second}/default",
                f"{PREFIX}/{second}/delete", f"{PREFIX}/{second}/test",
                f"{PREFIX}/{second}/check"]:
        assert client.post(url, data=data).status_code == 403, url
    assert client.get(f"{PREFIX}/{second}/delete").status_code == 403
    with app.app_context():
        assert [(s.id, s.version, s.is_default)
                for s in get_service().list_senders()] == before


def test_a_viewer_who_may_test_gets_the_test_button_only(made):
    """``read`` and ``test``: the read-only page with Send Test Email and its modal."""
    app = made(Portal())
    [sender_id, _] = add_senders(app)
    client = app.test_client()
    log_in(client, "tester")
    sender = page_of(client, f"{PREFIX}/{sender_id}")
    assert all(sender.inputs.values()) and "password" not in sender.inputs
    assert "Send Test Email" in sender.links and sender.dialogs == ["send-test-email"]
    assert sender.forms == [f"{PREFIX}/{sender_id}/test"]  # the modal's form alone
    assert "Save" not in sender.buttons and "Delete" not in sender.links


def test_a_hook_written_before_read_still_opens_senders_to_edit(made):
    """``update`` implies ``read``: a host whose hook knows only the old actions opens
    senders with Edit and saves them as before."""
    portal = Portal()
    app = made(portal)
    [sender_id, _] = add_senders(app)
    client = app.test_client()
    log_in(client, "legacy")
    assert "Edit smtp.example.com" in page_of(client, f"{PREFIX}/").links
    portal.asked.clear()
    sender = page_of(client, f"{PREFIX}/{sender_id}")
    assert "Save" in sender.buttons and "password" in sender.inputs
    assert portal.asked[:2] == [("read", sender_id), ("update", sender_id)]


@pytest.mark.parametrize("user", sorted(ROLES))
def test_each_action_is_asked_at_most_once_per_request(made, user):
    """The route's own question and every ``can`` the template reads share one answer
    per (action, sender) per request."""
    portal = Portal()
    app = made(portal)
    [first, second] = add_senders(app)
    client = app.test_client()
    log_in(client, user)
    for url in [f"{PREFIX}/", f"{PREFIX}/{first}", f"{PREFIX}/{second}?test=1"]:
        portal.asked.clear()
        client.get(url)
        assert portal.asked and max(Counter(portal.asked).values()) == 1, (url, portal.asked)


# -- the documented table -----------------------------------------------------------------

ROW = re.compile(r"^\| `(GET|POST|PATCH|DELETE) (/[^`]*)` \| `([\w.]+)` \| `(\w+)`([^|]*)\|$",
                 re.MULTILINE)


def routes() -> set[tuple[str, str, str]]:
    """(method, route as the table writes it, endpoint) of every page and API route."""
    app = Flask(__name__)
    app.register_blueprint(bp, url_prefix="/p")
    app.register_blueprint(api, url_prefix="/p/api")
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith(("smtp_senders.", "smtp_senders_api.")):
            path = re.sub(r"<(?:[^<>:]+:)?(\w+)>", r"{\1}", rule.rule.removeprefix("/p"))
            found |= {(method, path, rule.endpoint)
                      for method in rule.methods - {"HEAD", "OPTIONS"}}
    return found


def test_the_hooks_doc_names_every_route_and_the_action_it_asks():
    """docs/hooks.md's one table: a row per route and method, no other, each naming the
    action the guard asks (and the action that implies it, where one does)."""
    rows = ROW.findall(DOCS.read_text())
    assert len(rows) >= 20
    assert {(method, path, endpoint) for method, path, endpoint, _, _ in rows} == routes()
    assert len(rows) == len(routes())
    for method, path, endpoint, action, rest in rows:
        assert action == action_of(endpoint, method), (method, path)
        if action in IMPLIED_BY:
            assert f"`{IMPLIED_BY[action]}`" in rest, (method, path)


# -- a global CSRFProtect -----------------------------------------------------------------

@pytest.mark.parametrize("order", ["before", "after"])
def test_bearer_token_api_calls_work_under_a_global_csrf_protect(made, order):
    """``CSRFProtect(app)`` made before or after ``SMTPSenders(app)``: a script's bearer
    call needs no CSRF token (first request of the app included); a session-cookie call
    still needs ``X-CSRFToken`` (the API's own rule answers, as a problem); the pages'
    forms and the host's own views are still checked by CSRFProtect itself."""
    app = made(Portal(), csrf_protect=order)
    script = app.test_client()
    token = {"Authorization": f"Bearer {TOKEN}"}
    created = script.post(f"{API}/senders", json=SENDER, headers=token)
    assert created.status_code == 201, created.text
    sender_id = created.json["id"]
    again = script.post(f"{API}/senders", json=SENDER | {"from_address": "b@example.com"},
                        headers=token)
    assert again.status_code == 201
    assert script.post(f"{API}/senders/{again.json['id']}/default",
                       headers=token).status_code == 200
    patched = script.patch(f"{API}/senders/{sender_id}", headers={
        **token, "If-Match": created.headers["ETag"]}, json={"password": SENDER["password"],
                                                             "from_name": "Acme"})
    assert patched.status_code == 200, patched.text
    assert script.delete(f"{API}/senders/{sender_id}", headers={
        **token, "If-Match": patched.headers["ETag"]}).status_code == 204

    browser = app.test_client()
    log_in(browser, "admin")
    refused = browser.post(f"{API}/senders", json=SENDER)
    assert refused.status_code == 403
    assert refused.json["type"] == "urn:flask-smtp-senders:problem:csrf"
    page = browser.get(f"{PREFIX}/new/email/custom")
    assert browser.post(f"{API}/senders", json=SENDER | {"from_address": "c@example.com"},
                        headers={"X-CSRFToken": csrf(page.data)}).status_code == 201

    without = browser.post(f"{PREFIX}/new/email/custom", data=GOOD)
    assert without.status_code == 400 and without.text.startswith("HOST CSRF")
    with app.app_context():
        assert len(get_service().list_senders()) == 2
    saved = browser.post(f"{PREFIX}/new/email/custom",
                         data={**GOOD, "csrf_token": csrf(page.data)})
    assert saved.status_code == 302, saved.text
    default = browser.post(f"{PREFIX}/{saved.location.rpartition('/')[2]}/default")
    assert default.status_code == 400 and default.text.startswith("HOST CSRF")
    assert browser.post("/profile").text.startswith("HOST CSRF")
    assert script.post("/profile", headers=token).status_code == 400
    assert browser.post("/profile", data={"csrf_token": csrf(page.data)}).text == \
        "profile saved"
