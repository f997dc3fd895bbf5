"""Issue 17, item 1 in Chromium: Settings > Senders inside a Flask-Admin shell.

The host (served from this process by a werkzeug thread on the run's loopback address) is
Flask-Admin 2.x with ``add_senders_to_admin(admin)``, its one line for the Senders pages.
From Flask-Admin's home page the administrator opens Settings > Senders in Flask-Admin's
own menu, lands on the Senders list inside Flask-Admin's navbar and theme (the entry
active), adds a sender with + and Next, saves it, opens the Send Test Email modal and
sends a test email that a loopback SMTP server receives. Under the pages' default
Content-Security-Policy nothing is refused (Flask-Admin's scripts and styles are the
app's own), nothing is loaded from outside loopback, and no console error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask_admin import Admin as FlaskAdmin

from flask_smtp_senders.contrib.flask_admin import add_senders_to_admin
from tests.support.browser import (
    PNG_MAGIC,
    ROOT,
    Problems,
    expect,
    screenshot_dir,
    send_test_email,
    start_adding,
)
from tests.support.pages import PREFIX, Admin
from tests.support.smtp_servers import SERVER_NAME
from tests.support.viewer_portal import serve

pytestmark = pytest.mark.sqlite_only

#: The picture docs/flask-admin.md shows (written with UPDATE_README_SCREENSHOT=1).
DOCS_SCREENSHOT = ROOT / "docs" / "flask-admin-senders.png"
ACTIVE = re.compile(r"(^|\s)active(\s|$)")  # Flask-Admin marks the current menu entry
SUCCESS = "A test message was successfully sent to some.body@acme.com."


@pytest.fixture
def admin_portal(browser, make_app) -> Iterator[str]:
    """A Flask-Admin portal with the Senders pages in it, served on loopback; its URL."""
    app = make_app(plugins=[Admin()])
    add_senders_to_admin(FlaskAdmin(app, name="Acme Admin"))
    with serve(app) as url:
        yield url


def shoot(page: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path


def test_senders_inside_flask_admin_add_and_test_email(open_page, admin_portal, smtp_server,
                                                       problems: Problems):
    server = smtp_server("implicit")
    page = open_page(admin_portal)
    page.goto("/admin/")
    navbar = page.locator("nav.navbar")
    expect(navbar.get_by_role("link", name="Acme Admin")).to_be_visible()
    navbar.get_by_role("link", name="Settings").click()  # Flask-Admin's dropdown
    navbar.get_by_role("link", name="Senders").click()

    expect(page.get_by_role("heading", name="Senders", exact=True)).to_be_visible()
    assert page.url == f"{admin_portal}{PREFIX}/"
    expect(navbar.get_by_role("link", name="Senders", include_hidden=True)
           ).to_have_class(ACTIVE)
    # Flask-Admin's theme is applied (Bootstrap's dark navbar) and so is our stylesheet
    assert navbar.evaluate("n => getComputedStyle(n).backgroundColor") == "rgb(52, 58, 64)"
    assert page.evaluate("() => [...document.styleSheets].some("
                         "s => (s.href || '').endsWith('/static/senders.css'))")

    start_adding(page)
    for label, value in {"Username": "alice", "Password": "s3cret",
                         "Server Name": SERVER_NAME, "Port": str(server.port),
                         "From Name": "Acme Admin", "From Address": "portal@example.com"
                         }.items():
        page.get_by_label(label).fill(value)
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status").filter(has_text="The sender was saved.")).to_have_count(1)
    expect(navbar.get_by_role("link", name="Senders", include_hidden=True)
           ).to_have_class(ACTIVE)

    dialog = send_test_email(page, "some.body@acme.com")
    expect(dialog.get_by_text(SUCCESS)).to_be_visible()
    assert len(server.messages) == 1
    shots = [shoot(page, screenshot_dir() / "21-flask-admin-test-email.png")]

    page.goto(f"{PREFIX}/")
    row = page.get_by_role("row").filter(has_text="portal@example.com")
    expect(row).to_contain_text("Last test passed")
    shots.append(shoot(page, screenshot_dir() / "22-flask-admin-senders.png"))
    if os.environ.get("UPDATE_README_SCREENSHOT") == "1":
        page.set_viewport_size({"width": 1200, "height": 420})
        shots.append(shoot(page, DOCS_SCREENSHOT))
    for path in shots:
        assert path.read_bytes().startswith(PNG_MAGIC)
    assert problems.all() == []
