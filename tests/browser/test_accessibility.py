"""Issue 17, item 7: axe-core finds nothing at WCAG 2.1 AA on any Senders page.

axe-core comes from the installed ``axe-playwright-python`` package (its bundled
``axe.min.js``, injected by Playwright: nothing is fetched) and runs in Debian's Chromium on
every page of Settings > Senders in the example portal: the list (empty, then with a Custom
Server sender, an OAuth2 sender and a secret-expiry warning), the "+" step, each Provider
Type's form empty and re-rendered with field errors, the edit page, the delete
confirmation, the open Send Test Email modal with a success and with a failure, the same
without JavaScript (the page with the dialog open and the report the server draws) and
the page shown when the sender table is missing; and the list and read-only page a viewer
gets in a Flask-Login portal. Each page must have no violation of the rules tagged
wcag2a, wcag2aa, wcag21a and wcag21aa; a failure lists every violation readably, page by
page. A first test shows that the check finds violations where there are some.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.browser import (
    PROVIDER_HEADINGS,
    SUCCESS,
    Problems,
    add_sender,
    expect,
    log_in,
    open_senders,
    send_test_email,
    start_adding,
)
from tests.support.pages import PREFIX
from tests.support.viewer_portal import serve, viewer_portal_app

if os.environ.get("CI", "").lower() == "true":  # as for Chromium: never a silent skip in CI
    import axe_playwright_python.sync_playwright as axe_playwright
else:
    axe_playwright = pytest.importorskip(
        "axe_playwright_python.sync_playwright",
        reason="axe-playwright-python is not installed (pip install -e '.[test]')")

WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
#: What a refused form logs in Chromium (the 422 is on purpose); nothing else may be.
REFUSED = ("Failed to load resource: the server responded with a status of 422 "
           "(UNPROCESSABLE ENTITY)")


def violations(page: Any) -> list[str]:
    """axe-core's WCAG 2.1 A and AA violations on the page as it is now, one readable
    entry per rule: its id, impact, help text and each offending element with axe's own
    summary of what to fix."""
    results = axe_playwright.Axe().run(page, options={
        "runOnly": {"type": "tag", "values": WCAG_21_AA}, "resultTypes": ["violations"]})
    found = []
    for rule in results.response["violations"]:
        nodes = "\n".join(
            f"    {' '.join(node['target'])}: {node['html'][:200]}\n"
            f"      {node.get('failureSummary', '').replace(chr(10), ' ')}"
            for node in rule["nodes"])
        found.append(f"{rule['id']} ({rule['impact']}): {rule['help']}\n{nodes}")
    return found


class Audit:
    """The violations of each page checked, by a name for the page."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.found: dict[str, list[str]] = {}
        self.checked: list[str] = []

    def check(self, name: str) -> None:
        self.checked.append(name)
        found = violations(self.page)
        if found:
            self.found[f"{name} ({self.page.url})"] = found

    def report(self) -> str:
        return "\n".join(f"== {name}\n" + "\n".join(lines)
                         for name, lines in self.found.items())


def assert_no_violations(audit: Audit, *pages: str) -> None:
    assert audit.checked == list(pages)
    assert not audit.found, "axe-core found WCAG 2.1 AA violations:\n" + audit.report()


def test_the_check_finds_violations_where_there_are_some(browser):
    """A page with an image without text, an unlabelled field and grey on white: the check
    names each rule and element, so an empty list below means axe ran and found nothing."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_content('<html><head><title>Bad</title></head><body><main>'
                         '<img src="data:," id="picture"><input id="nameless">'
                         '<p id="faint" style="color:#bbb;background:#fff">Faint</p>'
                         '</main></body></html>')
        found = violations(page)
    finally:
        context.close()
    assert [entry.split(" ", 1)[0] for entry in found] == [
        "color-contrast", "html-has-lang", "image-alt", "label"]
    assert "#faint" in found[0] and "#picture" in found[2] and "#nameless" in found[3]


def test_the_empty_list_the_plus_step_and_every_provider_form(page, portal,
                                                              problems: Problems):
    audit = Audit(page)
    log_in(page, portal)
    open_senders(page)
    expect(page.get_by_text("No sender yet.")).to_be_visible()
    audit.check("empty list")
    page.get_by_role("link", name="Add a sender").click()
    expect(page.get_by_role("heading", name="Add a sender")).to_be_visible()
    audit.check("+ step")
    refused = []
    for provider, heading in PROVIDER_HEADINGS.items():
        open_senders(page)
        start_adding(page, provider=provider)
        audit.check(f"{provider} form")
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_role("heading", name=heading)).to_be_visible()
        expect(page.locator("p.error").first).to_be_visible()
        expect(page.locator("[aria-invalid=true]").first).to_be_visible()
        refused.append(f"console error on {page.url}: {REFUSED}")
        audit.check(f"{provider} form with field errors")
    assert_no_violations(audit, "empty list", "+ step", *[
        name for provider in PROVIDER_HEADINGS
        for name in (f"{provider} form", f"{provider} form with field errors")])
    assert problems.all() == refused


def add_microsoft365_sender(page: Any, expires: dt.date,
                            mailbox: str = "notifications@example.com") -> None:
    """A Microsoft 365 sender whose client secret expires on ``expires`` (saved only: no
    token is fetched until a test email)."""
    open_senders(page)
    start_adding(page, provider="Microsoft 365")
    for label, value in [("Tenant ID", "contoso.onmicrosoft.com"),
                         ("Client ID", "6f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"),
                         ("Client Secret", "Entra~not-a-real-secret"),
                         ("Mailbox", mailbox),
                         ("Secret Expires", expires.isoformat()),
                         ("From Address", mailbox)]:
        page.get_by_label(label).fill(value)
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status").filter(has_text="The sender was saved.")).to_be_visible()


def test_the_list_edit_delete_and_the_send_test_email_modal(page, portal,
                                                            problems: Problems):
    audit = Audit(page)
    log_in(page, portal)
    today = dt.date.today()
    add_microsoft365_sender(page, today + dt.timedelta(days=10))
    add_microsoft365_sender(page, today - dt.timedelta(days=1), "expired@example.com")

    add_sender(page, portal, Password="not-the-catcher-password",
               **{"From Address": "wrong@example.com"})
    dialog = send_test_email(page, "some.body@acme.com")
    expect(dialog.locator(".smtp-senders-diagnosis .stage.fail")).to_contain_text("AUTH")
    expect(dialog.locator(".smtp-senders-diagnosis .advice")).to_be_visible()
    audit.check("Send Test Email modal with a failure")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    add_sender(page, portal)  # on its edit page, never tested: the warning is shown
    expect(page.get_by_role("note").first).to_be_visible()
    audit.check("edit page, never tested")
    dialog = send_test_email(page, "some.body@acme.com")
    expect(dialog.get_by_role("status")).to_have_text(SUCCESS)
    expect(dialog.locator(".smtp-senders-diagnosis .stage").first).to_be_visible()
    audit.check("Send Test Email modal with a success")
    dialog.get_by_role("button", name="Check connection").click()
    expect(dialog.get_by_role("status")).to_contain_text("Nothing was sent.")
    audit.check("Send Test Email modal after Check connection")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    open_senders(page)
    rows = page.get_by_role("row")
    expect(rows.filter(has_text="Microsoft 365")).to_have_count(2)
    expect(page.locator("[data-secret-expiry=soon]")).to_be_visible()
    expect(page.locator("[data-secret-expiry=expired]")).to_be_visible()
    expect(rows.filter(has_text="Last test passed")).to_have_count(1)
    expect(rows.filter(has_text="Last test failed")).to_have_count(1)
    audit.check("list with senders")

    rows.filter(has_text="notifications@example.com").get_by_role("link",
                                                                 name="Edit").click()
    expect(page.get_by_role("heading", name=PROVIDER_HEADINGS["Microsoft 365"])
           ).to_be_visible()
    audit.check("Microsoft 365 edit page")
    page.get_by_role("link", name="Delete").click()
    expect(page.get_by_role("heading", name="Delete sender")).to_be_visible()
    audit.check("delete confirmation")
    assert_no_violations(audit, "Send Test Email modal with a failure",
                         "edit page, never tested", "Send Test Email modal with a success",
                         "Send Test Email modal after Check connection", "list with senders",
                         "Microsoft 365 edit page", "delete confirmation")
    assert problems.all() == []


def test_the_send_test_email_page_without_javascript(page, portal, problems: Problems):
    """senders.js withheld: Send Test Email is the page with the dialog open (not modal),
    and the server draws the result and the staged report."""
    page.route("**/senders.js", lambda route: route.fulfill(
        body="/* withheld */", content_type="text/javascript"))
    audit = Audit(page)
    log_in(page, portal)
    add_sender(page, portal, Password="not-the-catcher-password")
    page.get_by_role("link", name="Send Test Email").last.click()
    dialog = page.get_by_role("dialog", name="Send Test Email")
    expect(dialog).to_be_visible()
    assert "test=1" in page.url and dialog.evaluate("d => d.open && !d.matches(':modal')")
    audit.check("Send Test Email page")
    dialog.get_by_label("Send to").fill("some.body@acme.com")
    dialog.get_by_role("button", name="Send").click()
    expect(dialog.locator(".smtp-senders-diagnosis .stage.fail")).to_contain_text("AUTH")
    audit.check("Send Test Email page with a failure")
    assert_no_violations(audit, "Send Test Email page", "Send Test Email page with a failure")
    assert problems.all() == []


def test_the_page_shown_when_the_senders_table_is_missing(page, portal, problems: Problems,
                                                         tmp_path):
    audit = Audit(page)
    log_in(page, portal)
    with sqlite3.connect(tmp_path / "portal" / "instance" / "portal.db") as connection:
        connection.execute("DROP TABLE smtp_senders")
    page.goto(f"{PREFIX}/")
    expect(page.get_by_role("alert")).to_be_visible()
    audit.check("Senders unavailable")
    assert_no_violations(audit, "Senders unavailable")
    assert problems.all() == [f"console error on {page.url}: Failed to load resource: the "
                              "server responded with a status of 503 (SERVICE UNAVAILABLE)"]


@pytest.fixture
def viewer_portal(browser, tmp_path, fernet_key) -> Iterator[str]:
    """The viewer portal (tests/support/viewer_portal.py) served on loopback; its URL."""
    with serve(viewer_portal_app(tmp_path, fernet_key)) as url:
        yield url


def test_the_read_only_pages_of_a_viewer(open_page, viewer_portal, problems: Problems):
    page = open_page(viewer_portal)
    audit = Audit(page)
    page.goto(f"{PREFIX}/")  # to the login page, and back after it
    page.get_by_label("Username").fill("viewer")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Senders", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="Add a sender")).to_have_count(0)
    audit.check("viewer's list")
    page.get_by_role("row").filter(has_text="second@example.com").get_by_role(
        "link", name="View").click()
    expect(page.get_by_text("You can see this sender's settings but not change them.")
           ).to_be_visible()
    audit.check("viewer's read-only sender")
    assert_no_violations(audit, "viewer's list", "viewer's read-only sender")
    assert problems.all() == []
