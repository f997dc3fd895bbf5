"""Issue 17, item 2 in Chromium: a viewer in a Flask-Login portal.

The portal (served from this process by a werkzeug thread on the run's loopback address)
has real Flask-Login users: ``admin`` may do everything, ``viewer`` may ``list`` and
``read``. An anonymous visit to Settings > Senders lands on the portal's login page; the
viewer logs in there, comes back to the list, sees the senders with no +, Edit or Make
default, and opens one read-only (fields disabled, no password, no Save, no Send Test
Email). Nothing is loaded from outside loopback; no console error.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import PNG_MAGIC, Problems, expect, screenshot_dir
from tests.support.pages import PREFIX
from tests.support.viewer_portal import serve, viewer_portal_app


@pytest.fixture
def viewer_portal(browser, tmp_path, fernet_key) -> Iterator[str]:
    """The portal with two senders saved by the admin, served on loopback; its URL."""
    with serve(viewer_portal_app(tmp_path, fernet_key)) as url:
        yield url


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
