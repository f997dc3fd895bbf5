"""Settings > Senders in Chromium, walked by visible labels in the example portal, with a
real mail catcher behind Send Test Email."""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path
from typing import Any

from tests.support.browser import (
    PNG_MAGIC,
    ROOT,
    SUCCESS,
    Problems,
    add_sender,
    expect,
    fill_sender,
    log_in,
    open_senders,
    screenshot_dir,
    send_test_email,
    start_adding,
)
from tests.support.portal import CATCHER_PORT
from tests.support.smtp_servers import LOOPBACK

AUTH_FAILED = ("Using the credentials you provided, we couldn't authenticate with your "
               "email server.")
WARNING = ("Saving SMTP settings without validating credentials using the test email button "
           "can cause problems sending emails.")
SUBJECT = "Test message from your SMTP sender"
SUCCESS_DATE = re.compile(r"Last test passed \d{4}-\d\d-\d\d \d\d:\d\d UTC")
README_SCREENSHOT = ROOT / "docs" / "senders-page.png"


def shoot(page: Any, name: str, path: Path | None = None) -> Path:
    """A full-page screenshot (under the screenshot folder unless ``path`` is given).

    The viewport is stretched to the page's height first, so a modal's backdrop, which
    covers the viewport only, covers the whole picture.
    """
    path = path or screenshot_dir() / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    viewport = page.viewport_size
    height = page.evaluate("document.documentElement.scrollHeight")
    page.set_viewport_size({"width": viewport["width"], "height": max(viewport["height"],
                                                                      height)})
    try:
        page.screenshot(path=str(path), full_page=True)
    finally:
        page.set_viewport_size(viewport)
    return path


def assert_png(path: Path) -> None:
    assert path.is_file(), f"{path} was not written"
    data = path.read_bytes()
    assert len(data) > len(PNG_MAGIC) and data.startswith(PNG_MAGIC), f"{path} is not a PNG"


def assert_clean(problems: Problems, *expected: str) -> None:
    """Nothing went wrong in the browser but the ``expected`` console errors, in order."""
    assert problems.all() == list(expected)


def test_seed_walkthrough_from_login_to_the_caught_test_message(page, portal, problems):
    """Add a sender, save, edit, Send Test Email, and find the message in the catcher."""
    shots = []
    page.goto("/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    shots.append(shoot(page, "01-login"))
    log_in(page, portal)
    shots.append(shoot(page, "02-home"))

    open_senders(page)
    expect(page.get_by_text("No sender yet.")).to_be_visible()
    shots.append(shoot(page, "03-senders-list"))
    start_adding(page, before_next=lambda: shots.append(shoot(page, "04-add-step")))
    expect(page.get_by_label("Port")).to_have_value("465")
    fill_sender(page, portal)
    shots.append(shoot(page, "05-form"))
    page.get_by_role("button", name="Save").click()

    expect(page.get_by_role("status").filter(has_text="The sender was saved.")).to_be_visible()
    expect(page.get_by_role("note")).to_contain_text(WARNING)
    expect(page.get_by_text("Never tested")).to_be_visible()
    expect(page.get_by_label("Password")).to_have_value("")
    shots.append(shoot(page, "06-form-with-warning"))

    page.get_by_role("link", name="Back to Senders").click()
    row = page.get_by_role("row").filter(has_text="portal@example.com")
    expect(row).to_have_count(1)
    for text in ["Email", portal.catcher_host, str(CATCHER_PORT), "SMTP with STARTTLS",
                 "Never tested"]:
        expect(row).to_contain_text(text)

    row.get_by_role("link", name=f"Edit {portal.catcher_host}").click()
    expect(page.get_by_label("Server Name")).to_have_value(portal.catcher_host)
    expect(page.get_by_label("From Name")).to_have_value("Acme Portal")
    page.get_by_label("From Name").fill("Acme Notifications")
    page.get_by_label("Password").fill(portal.catcher_password)
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status").filter(has_text="The sender was saved.")).to_be_visible()
    expect(page.get_by_label("From Name")).to_have_value("Acme Notifications")

    dialog = send_test_email(page, "some.body@acme.com")
    expect(dialog.get_by_role("status")).to_have_text(SUCCESS)
    expect(dialog.get_by_role("button", name="Send")).to_be_enabled()
    shots.append(shoot(page, "07-modal-success"))
    dialog.get_by_role("link", name="Close").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_text("Last test passed just now")).to_be_visible()  # no reload
    expect(page.get_by_role("note")).to_be_hidden()

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Mail catcher").click()
    expect(page.get_by_role("heading", name="Mail catcher")).to_be_visible()
    message = page.get_by_role("row").filter(has_text="some.body@acme.com")
    expect(message).to_have_count(1)
    message.get_by_role("link", name=SUBJECT).click()
    expect(page.get_by_role("heading", name=SUBJECT, level=2)).to_be_visible()
    expect(page.get_by_role("article")).to_contain_text("Acme Notifications")
    expect(page.get_by_role("article")).to_contain_text("portal@example.com")
    shots.append(shoot(page, "08-catcher"))

    open_senders(page)
    row = page.get_by_role("row").filter(has_text="portal@example.com")
    expect(row).to_contain_text("Last test passed")
    expect(row).to_contain_text(SUCCESS_DATE)
    if os.environ.get("UPDATE_README_SCREENSHOT") == "1":
        expect(page.get_by_role("navigation", name="Main").get_by_role(
            "link", name="Senders")).to_be_hidden()  # the menu folded, for a clean picture
        page.set_viewport_size({"width": 1200, "height": 360})
        shots.append(shoot(page, "readme", path=README_SCREENSHOT))
    for path in shots:
        assert_png(path)
    assert_clean(problems)


def test_wrong_password_shows_the_authentication_failure_in_the_modal(page, portal,
                                                                      problems):
    """A wrong Password gives the exact auth failure text; nothing reaches the catcher."""
    log_in(page, portal)
    add_sender(page, portal, Password="not-the-catcher-password")
    dialog = send_test_email(page, "some.body@acme.com")
    expect(dialog.get_by_role("status")).to_have_text(AUTH_FAILED)
    expect(dialog.locator(".smtp-senders-diagnosis .stage.fail")).to_contain_text("AUTH")
    expect(dialog.locator(".smtp-senders-diagnosis .advice")).to_contain_text(
        "refused the Username or Password")
    shots = [shoot(page, "09-modal-auth-failed")]
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    page.reload()
    expect(page.get_by_text("Last test failed")).to_be_visible()
    expect(page.get_by_role("note")).to_contain_text(WARNING)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Mail catcher").click()
    expect(page.get_by_text("No messages yet.")).to_be_visible()
    for path in shots:
        assert_png(path)
    assert_clean(problems)


def test_the_modal_opens_with_enter_and_closes_with_escape(page, portal, problems):
    """Keyboard only: Enter on the focused link opens the modal, Escape closes it."""
    log_in(page, portal)
    add_sender(page, portal)
    dialog = page.get_by_role("dialog", name="Send Test Email", include_hidden=True)
    expect(dialog).to_be_hidden()
    link = page.get_by_role("link", name="Send Test Email").last
    link.focus()
    expect(link).to_be_focused()
    url = page.url
    page.keyboard.press("Enter")
    expect(dialog).to_be_visible()
    assert dialog.evaluate("d => d.open && d.matches(':modal')")
    expect(dialog.get_by_label("Send to")).to_be_focused()
    assert page.url == url  # the modal, not the no-JavaScript page (?test=1)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert dialog.evaluate("d => d.open") is False
    expect(link).to_be_focused()
    assert_clean(problems)


def test_a_bad_port_is_shown_beside_the_port_and_keeps_all_but_the_password(page, portal,
                                                                            problems):
    """Save with Port 70000: the error is the Port field's own; the rest stays typed."""
    log_in(page, portal)
    open_senders(page)
    start_adding(page)
    fill_sender(page, portal, Port="70000", Username="typed-user",
                **{"Server Name": "smtp.typed.example", "From Name": "Typed Name",
                   "From Address": "typed@example.com"})
    page.get_by_role("button", name="Save").click()

    refused_at = page.url
    port = page.get_by_label("Port")
    error = page.get_by_text("Enter a port number from 1 to 65535.")
    expect(error).to_be_visible()
    expect(port).to_have_attribute("aria-invalid", "true")
    expect(port).to_have_accessible_description(
        re.compile(r"Enter a port number from 1 to 65535\.$"))
    port_box, error_box = port.bounding_box(), error.bounding_box()
    assert 0 <= error_box["y"] - (port_box["y"] + port_box["height"]) < 80
    assert abs(error_box["x"] - port_box["x"]) < 40
    expect(page.locator("p.error")).to_have_count(1)

    expect(port).to_have_value("70000")
    expect(page.get_by_label("Username")).to_have_value("typed-user")
    expect(page.get_by_label("Server Name")).to_have_value("smtp.typed.example")
    expect(page.get_by_label("From Name")).to_have_value("Typed Name")
    expect(page.get_by_label("From Address")).to_have_value("typed@example.com")
    expect(page.get_by_label("Password")).to_have_value("")
    assert portal.catcher_password not in page.content()
    shots = [shoot(page, "10-form-bad-port")]

    page.get_by_role("link", name="Back to Senders").click()
    expect(page.get_by_text("No sender yet.")).to_be_visible()
    for path in shots:
        assert_png(path)
    # The refused form comes back as 422 on purpose, which Chromium logs; nothing else may.
    assert_clean(problems, f"console error on {refused_at}: Failed to load resource: the "
                           "server responded with a status of 422 (UNPROCESSABLE ENTITY)")


def test_a_bad_port_on_a_saved_sender_keeps_the_edit_and_the_stored_port(page, portal,
                                                                         problems):
    """Edit a saved sender with Port 0: the error is beside Port, the edit is kept but the
    Password, and the stored sender is unchanged."""
    log_in(page, portal)
    add_sender(page, portal)
    page.get_by_label("Port").fill("0")
    page.get_by_label("From Name").fill("Edited Name")
    page.get_by_label("Password").fill("typed-again")
    page.get_by_role("button", name="Save").click()

    refused_at = page.url
    port = page.get_by_label("Port")
    expect(port).to_have_accessible_description(
        re.compile(r"Enter a port number from 1 to 65535\.$"))
    expect(port).to_have_value("0")
    expect(page.get_by_label("From Name")).to_have_value("Edited Name")
    expect(page.get_by_label("Password")).to_have_value("")
    assert "typed-again" not in page.content()

    page.get_by_role("link", name="Back to Senders").click()
    row = page.get_by_role("row").filter(has_text="portal@example.com")
    expect(row.get_by_role("cell").nth(2)).to_have_text(str(CATCHER_PORT))
    assert_clean(problems, f"console error on {refused_at}: Failed to load resource: the "
                           "server responded with a status of 422 (UNPROCESSABLE ENTITY)")


def stage_rows(dialog: Any) -> list[str]:
    """Each stage of the staged report as "<label> passed|failed"."""
    return [" ".join(item.locator(f".{part}").inner_text() for part in ("label", "outcome"))
            for item in dialog.locator(".smtp-senders-diagnosis .stage").all()]


def test_the_staged_report_and_check_connection_in_the_modal(page, portal, problems,
                                                             smtp_server):
    """Issue 7: the report for a success (with the demo domain's SPF and DMARC advice), a
    TLS mismatch (a STARTTLS-only server on an SMTPS port) and Check connection, which
    delivers nothing."""
    log_in(page, portal)
    add_sender(page, portal)
    # the demo's DNS server answered the From domain's lookups at save time
    expect(page.get_by_role("status").filter(
        has_text="example.com has a DMARC policy (p=quarantine)")).to_be_visible()
    dialog = send_test_email(page, "some.body@acme.com")
    expect(dialog.get_by_role("status")).to_have_text(SUCCESS)
    expect(dialog.locator(".smtp-senders-diagnosis .stage")).to_have_count(8)
    assert stage_rows(dialog) == [f"{label} passed" for label in (
        "Resolve", "Connect", "EHLO", "TLS", "AUTH", "MAIL FROM", "RCPT TO", "DATA")]
    expect(dialog.locator(".domain-advice").first).to_contain_text("SPF record")
    shots = [shoot(page, "11-report-success")]

    dialog.get_by_role("button", name="Check connection").click()
    expect(dialog.get_by_role("status")).to_contain_text("Nothing was sent.")
    expect(dialog.locator(".smtp-senders-diagnosis .stage").last).to_contain_text(
        "RSET and QUIT")
    shots.append(shoot(page, "12-check-connection"))
    page.keyboard.press("Escape")

    starttls_only = smtp_server("starttls", port=None)
    add_sender(page, portal, **{"Server Name": LOOPBACK,
                                "Port": str(starttls_only.port)})
    dialog = send_test_email(page, "some.body@acme.com")
    expect(dialog.get_by_role("status")).to_have_text(
        "We couldn't set up a secure connection with your email server. Check the Port "
        "and the server's certificate.")
    expect(dialog.locator(".smtp-senders-diagnosis .stage.fail")).to_contain_text("TLS")
    expect(dialog.locator(".smtp-senders-diagnosis .advice")).to_contain_text(
        "expect STARTTLS")
    shots.append(shoot(page, "13-report-tls-mismatch"))
    assert starttls_only.messages == []
    page.keyboard.press("Escape")

    open_senders(page)  # the list says which settings passed their last test
    expect(page.get_by_role("row").filter(has_text=str(CATCHER_PORT))).to_contain_text(
        "Tested")
    failed_row = page.get_by_role("row").filter(has_text=str(starttls_only.port))
    expect(failed_row).to_contain_text("No passed test")
    expect(failed_row).to_contain_text("Last test failed")
    shots.append(shoot(page, "14-list-test-states"))
    for path in shots:
        assert_png(path)
    assert_clean(problems)


def test_a_row_changed_behind_the_portals_back_never_sends_its_password(
        page, portal, problems, smtp_server, tmp_path):
    """Issue 7, item 3: the saved row's Server Name and Port are changed in the database
    directly, to a server that would accept anything; the edit page asks for the password
    again and Send Test Email reaches no server at all."""
    elsewhere = smtp_server("implicit", port=None)
    log_in(page, portal)
    add_sender(page, portal)
    database = tmp_path / "portal" / "instance" / "portal.db"
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE smtp_senders SET server_name = ?, port = ?",
                           (LOOPBACK, elsewhere.port))
    page.reload()
    unbound = ("The stored password belongs to other server settings. Edit the sender and "
               "re-enter the Password.")
    expect(page.get_by_role("alert")).to_have_text(unbound)
    dialog = send_test_email(page, "some.body@acme.com")
    expect(dialog.get_by_role("status")).to_have_text(unbound)
    assert_png(shoot(page, "15-row-changed-behind-its-back"))
    assert elsewhere.connections == 0 and elsewhere.auth_attempts == []
    assert_clean(problems)
