"""Issue 17, item 1: Settings > Senders inside a Flask-Admin shell, through Flask's test
client.

A host app with Flask-Admin 2.x calls ``add_senders_to_admin(admin)`` once; the Senders
pages then render in Flask-Admin's master template (its navbar, its Bootstrap theme, the
Senders entry active in its menu) with their own behaviour intact: the list, the + step,
a save, a delivered test email, CSRF (400 without the token), the authorisation hook
(403, and the menu entry hidden), and no 500 anywhere. Without the helper, naming
``admin/master.html`` as the base template is the 500 the issue reports.
"""

from __future__ import annotations

import re

import pytest
from flask_admin import Admin as FlaskAdmin

from flask_smtp_senders.contrib.flask_admin import LAYOUT, SendersView, add_senders_to_admin
from flask_smtp_senders.settings import DEFAULTS
from tests.support.pages import PREFIX, Admin, create, csrf
from tests.support.smtp_servers import SERVER_NAME

pytestmark = pytest.mark.sqlite_only  # the shell does not depend on the database

#: The Senders entry of Flask-Admin's menu, active (Flask-Admin's bootstrap4 markup).
ACTIVE_ENTRY = re.compile(rb'<a class="dropdown-item active\s*" href="/settings/senders/">'
                          rb'\s*Senders</a>')
SUCCESS = b"A test message was successfully sent to some.body@acme.com."


@pytest.fixture
def plugin() -> Admin:
    return Admin()


@pytest.fixture
def app(make_app, plugin):
    app = make_app(plugins=[plugin])
    admin = FlaskAdmin(app, name="Acme Portal")
    add_senders_to_admin(admin)  # the one line
    return app


@pytest.fixture
def client(app):
    return app.test_client()


def in_the_shell(html: bytes) -> None:
    """Flask-Admin's master template around our page: its navbar, brand, theme and
    scripts, the Senders entry active under Settings; our stylesheet and script too."""
    assert b'<nav class="navbar navbar-expand-lg' in html
    assert b'<a class="navbar-brand" href="/admin">Acme Portal</a>' in html
    assert b"/admin/static/bootstrap/bootstrap4/css/bootstrap.min.css" in html
    assert b"/admin/static/vendor/jquery.min.js" in html
    assert re.search(rb'<li class="active dropdown">\s*<a class="dropdown-toggle nav-link"'
                     rb'[^>]*>[^<]*(<[^>]*>[^<]*)*?Settings', html)
    assert ACTIVE_ENTRY.search(html), "the Senders entry is not active in the menu"
    assert f'href="{PREFIX}/static/senders.css"'.encode() in html
    assert f'src="{PREFIX}/static/senders.js"'.encode() in html
    assert html.count(b'<div class="smtp-senders">') == 1


def test_master_template_alone_is_the_500_the_issue_reports(make_app, plugin):
    """Why the helper exists: admin/master.html needs what only Flask-Admin's views give."""
    app = make_app(plugins=[plugin], SMTP_SENDERS_BASE_TEMPLATE="admin/master.html")
    FlaskAdmin(app)
    assert app.test_client().get(f"{PREFIX}/").status_code == 500


def test_the_helper_chooses_the_layout_and_adds_the_view(app):
    assert app.config["SMTP_SENDERS_BASE_TEMPLATE"] == LAYOUT
    [admin] = app.extensions["admin"]
    views = [view for view in admin._views if isinstance(view, SendersView)]
    assert [(view.name, view.category) for view in views] == [("Senders", "Settings")]


def test_the_list_renders_inside_flask_admin(client):
    page = client.get(f"{PREFIX}/")
    assert page.status_code == 200
    in_the_shell(page.data)
    assert b"<h1>Senders</h1>" in page.data
    assert b'aria-label="Add a sender"' in page.data
    assert b"<h4" not in page.data  # Flask-Admin's page title would repeat our heading
    assert page.headers["Content-Security-Policy"] == \
        DEFAULTS["SMTP_SENDERS_CONTENT_SECURITY_POLICY"]


def test_the_admin_menu_links_to_the_senders_list(client):
    home = client.get("/admin/")
    assert home.status_code == 200
    assert f'<a class="dropdown-item " href="{PREFIX}/">'.encode() in home.data
    assert not ACTIVE_ENTRY.search(home.data)  # active only on our pages
    # the view's own URL sends the visitor to the list
    answer = client.get("/admin/smtp_senders_admin/")
    assert answer.status_code == 302 and answer.location.endswith(f"{PREFIX}/")


def test_plus_save_and_a_delivered_test_email_inside_flask_admin(client, smtp_server,
                                                                  service):
    server = smtp_server("implicit")
    new = client.get(f"{PREFIX}/new")
    assert new.status_code == 200
    in_the_shell(new.data)
    step = client.post(f"{PREFIX}/new", data={"csrf_token": csrf(new.data),
                                              "sender_type": "email",
                                              "provider_type": "custom"})
    assert step.status_code == 302 and step.location.endswith(f"{PREFIX}/new/email/custom")
    form = client.get(step.location)
    assert form.status_code == 200 and b"Email Sender Custom SMTP Server" in form.data
    in_the_shell(form.data)

    saved = create(client, server_name=SERVER_NAME, port=str(server.port), password="s3cret")
    assert saved.status_code == 302
    edit = client.get(saved.location)
    assert edit.status_code == 200
    in_the_shell(edit.data)
    assert edit.data.count(b"The sender was saved.") == 1  # ours, not doubled by Flask-Admin
    assert b'<dialog id="send-test-email"' in edit.data

    modal = client.get(saved.location + "?test=1")
    assert b'<dialog id="send-test-email"' in modal.data and b" open " in modal.data
    sent = client.post(saved.location + "/test", follow_redirects=True,
                       data={"csrf_token": csrf(modal.data),
                             "recipient": "some.body@acme.com"})
    assert sent.status_code == 200 and sent.data.count(SUCCESS) == 1
    in_the_shell(sent.data)
    assert len(server.messages) == 1
    listing = client.get(f"{PREFIX}/")
    assert SERVER_NAME.encode() in listing.data and b"Last test passed" in listing.data
    assert [s.settings.server_name for s in service.list_senders()] == [SERVER_NAME]


def test_csrf_is_still_checked_inside_flask_admin(client, service):
    answer = client.post(f"{PREFIX}/new/email/custom", data={"server_name": "x"})
    assert answer.status_code == 400
    assert service.list_senders() == []


def test_a_refused_user_gets_403_and_no_menu_entry(client, plugin):
    plugin.allow = False
    assert client.get(f"{PREFIX}/").status_code == 403
    home = client.get("/admin/")
    assert home.status_code == 200
    assert f'href="{PREFIX}/"'.encode() not in home.data


def test_the_host_flashes_show_once_as_flask_admin_alerts(app, client):
    @app.get("/flash-then-senders")
    def flash_then_senders():
        from flask import flash, redirect

        flash("Welcome back", "message")
        return redirect(f"{PREFIX}/")

    page = client.get("/flash-then-senders", follow_redirects=True)
    assert page.status_code == 200
    assert page.data.count(b"Welcome back") == 1
    assert b'<div class="alert alert-info" role="status">Welcome back</div>' in page.data


def test_admin_init_app_later_and_senders_after_it(make_app, plugin):
    """The factory pattern: Admin() first, the helper, then admin.init_app(app)."""
    admin = FlaskAdmin(name="Later")
    add_senders_to_admin(admin, name="Mail senders", category=None)
    app = make_app(plugins=[plugin])
    admin.init_app(app)
    page = app.test_client().get(f"{PREFIX}/")
    assert page.status_code == 200
    assert b'<a class="navbar-brand" href="/admin">Later</a>' in page.data
    assert re.search(rb'<li class="active">\s*<a class="nav-link\s*" href="/settings/senders/">'
                     rb"\s*Mail senders</a>", page.data)


def test_a_base_template_the_host_chose_is_kept(make_app, plugin, tmp_path):
    app = make_app(plugins=[plugin], SMTP_SENDERS_BASE_TEMPLATE="portal/admin_senders.html")
    add_senders_to_admin(FlaskAdmin(app))
    assert app.config["SMTP_SENDERS_BASE_TEMPLATE"] == "portal/admin_senders.html"


def test_flask_admins_csp_nonce_is_on_its_tags_in_our_pages(make_app, plugin):
    app = make_app(plugins=[plugin])
    add_senders_to_admin(FlaskAdmin(app, csp_nonce_generator=lambda: "n0nce"))
    page = app.test_client().get(f"{PREFIX}/")
    assert page.status_code == 200
    assert b'<script nonce="n0nce" src="/admin/static/vendor/jquery.min.js' in page.data


def test_a_subclass_of_the_view_decides_who_sees_the_entry(make_app, plugin):
    class Nobody(SendersView):
        def is_accessible(self):
            return False

    app = make_app(plugins=[plugin])
    admin = FlaskAdmin(app)
    admin.add_view(Nobody(name="Mail", category="Settings", endpoint="smtp_senders_admin"))
    client = app.test_client()
    assert b"Mail</a>" not in client.get("/admin/").data
    page = client.get(f"{PREFIX}/")  # the pages themselves ask the hook, as always
    assert page.status_code == 200 and b'<nav class="navbar' in page.data
