"""What the Chromium tests (tests/browser/) share: the portal a test drives and what went
wrong in the browser (the ``portal`` and ``problems`` fixtures of tests/browser/conftest.py
give them), and the steps through Settings > Senders by visible labels."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.portal import CATCHER_PORT

#: The repository root.
ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def screenshot_dir() -> Path:
    """``SCREENSHOT_DIR`` (relative to the repository root), else test-output/screenshots."""
    return ROOT / os.environ.get("SCREENSHOT_DIR", "test-output/screenshots")


@dataclass
class Portal:
    """The example portal running in a subprocess, and what it needs to be used."""

    url: str
    catcher_host: str
    admin_password: str
    catcher_password: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class InProcessPortal:
    """The example portal served by a thread of the test's own process: for a walk whose
    servers (a token endpoint, an XOAUTH2 SMTP server) the test starts and configures."""

    url: str
    admin_password: str


@dataclass
class Problems:
    """What went wrong in the browser while a test ran; each test asserts it is empty."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)

    def all(self) -> list[str]:
        return [*self.console_errors, *self.page_errors, *self.failed_requests,
                *self.blocked]


#: What the modal says after a test email to some.body@acme.com went through.
SUCCESS = "A test message was successfully sent to some.body@acme.com."


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def log_in(page: Any, portal: Portal | InProcessPortal) -> None:
    """Log in as admin on the login page the portal sends anonymous visitors to."""
    page.goto("/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(portal.admin_password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Welcome, admin")).to_be_visible()


def open_senders(page: Any) -> None:
    """Settings > Senders from the portal's main menu."""
    menu = page.get_by_role("navigation", name="Main")
    menu.get_by_text("Settings", exact=True).click()
    menu.get_by_role("link", name="Senders").click()
    expect(page.get_by_role("heading", name="Senders", exact=True)).to_be_visible()


def start_adding(page: Any, before_next: Callable[[], object] | None = None,
                 provider: str = "Custom Server") -> None:
    """+ then Sender Type Email, Provider Type (Custom Server unless told), Next."""
    page.get_by_role("link", name="Add a sender").click()
    expect(page.get_by_role("heading", name="Add a sender")).to_be_visible()
    page.get_by_label("Sender Type").select_option(label="Email")
    page.get_by_label("Provider Type").select_option(label=provider)
    if before_next is not None:
        before_next()
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_role("heading", name=PROVIDER_HEADINGS[provider])).to_be_visible()


#: The heading of each Provider Type's form.
PROVIDER_HEADINGS = {"Custom Server": "Email Sender Custom SMTP Server",
                     "Microsoft 365": "Email Sender Microsoft 365",
                     "Google Workspace": "Email Sender Google Workspace",
                     "Custom Server with OAuth2": "Email Sender Custom Server with OAuth2"}


def fill_sender(page: Any, portal: Portal, **values: str) -> None:
    fields = {"Username": "demo", "Password": portal.catcher_password,
              "Server Name": portal.catcher_host, "Port": str(CATCHER_PORT),
              "From Name": "Acme Portal", "From Address": "portal@example.com", **values}
    for label, value in fields.items():
        page.get_by_label(label).fill(value)


def add_sender(page: Any, portal: Portal, **values: str) -> None:
    open_senders(page)
    start_adding(page)
    fill_sender(page, portal, **values)
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status").filter(has_text="The sender was saved.")).to_be_visible()


def send_test_email(page: Any, recipient: str) -> Any:
    """Open the Send Test Email modal from the form's buttons, send, return the dialog."""
    page.get_by_role("link", name="Send Test Email").last.click()
    dialog = page.get_by_role("dialog", name="Send Test Email")
    expect(dialog).to_be_visible()
    assert dialog.evaluate("d => d.open && d.matches(':modal')")
    dialog.get_by_label("Send to").fill(recipient)
    dialog.get_by_role("button", name="Send").click()
    return dialog
