"""Case G6 in Chromium: another origin cannot frame the Senders list, and the pages work
under their own Content-Security-Policy with no violation (the modal included)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.support.browser import (
    SUCCESS,
    Portal,
    add_sender,
    expect,
    log_in,
    send_test_email,
)
from tests.support.loopback import LOOPBACK

#: Records every CSP violation the page reports, before any page script runs.
VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


@pytest.fixture
def other_site(portal: Portal) -> Iterator[str]:
    """A second loopback server (another origin: another port) whose page frames the
    portal's Senders list, as a clickjacking page would."""
    target = f"{portal.url}/settings/senders/"

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = (f'<!doctype html><title>Win a prize</title><h1>Click here</h1>'
                    f'<iframe id="framed" src="{target}" width="900" height="600">'
                    f'</iframe>').encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{LOOPBACK}:{server.server_port}/"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def test_another_origin_cannot_frame_the_senders_list(page, portal, problems, other_site):
    """Case G6: signed in (the cookie is sent: same site, other port), the Senders list in
    another origin's frame is refused by frame-ancestors 'self': the frame never shows
    the page, so its one-click Make default form cannot be clicked through a decoy."""
    log_in(page, portal)
    add_sender(page, portal)
    add_sender(page, portal, **{"From Address": "second@example.com"})  # a Make default
    page.goto("/settings/senders/")
    expect(page.get_by_role("button", name="Make default")).to_have_count(1)

    with page.expect_response(lambda r: r.url.endswith("/settings/senders/")) as framed:
        page.goto(other_site)
    response = framed.value
    assert response.status == 200  # served (the cookie went along) ...
    assert "frame-ancestors 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "SAMEORIGIN"
    expect(page.get_by_role("heading", name="Click here")).to_be_visible()
    frame = page.frame_locator("#framed")
    page.wait_for_timeout(500)  # give a (wrongly) allowed frame the time to render
    expect(frame.get_by_role("heading", name="Senders")).to_have_count(0)  # ... not shown
    expect(frame.get_by_role("button", name="Make default")).to_have_count(0)
    (child,) = page.main_frame.child_frames
    assert not child.url.startswith(portal.url)  # Chromium's error page instead
    refusals = [text for text in problems.console_errors if "frame-ancestors" in text]
    assert refusals, problems.console_errors
    blocked = [f"request failed: GET {portal.url}/settings/senders/: "
               "net::ERR_BLOCKED_BY_RESPONSE"]
    assert problems.failed_requests == blocked  # Chromium refused the framed response
    assert problems.all() == refusals + blocked  # nothing else went wrong


def test_the_pages_meet_their_policy_and_the_modal_works(page, portal, problems):
    """Case G6: under the CSP every page loads its script and styles with no violation
    reported (console or securitypolicyviolation), and Send Test Email's modal, which
    needs senders.js, still sends and shows the result without a reload."""
    page.add_init_script(VIOLATIONS)
    console: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    log_in(page, portal)
    add_sender(page, portal)
    url = page.url
    dialog = send_test_email(page, "some.body@acme.com")
    expect(dialog.get_by_role("status")).to_have_text(SUCCESS)
    assert dialog.evaluate("d => d.matches(':modal')")
    assert page.url == url  # the script ran: the modal, not the no-JavaScript page
    expect(dialog.locator(".smtp-senders-diagnosis .stage.ok").first).to_be_visible()
    dialog.get_by_role("link", name="Close").click()
    expect(page.get_by_text("Last test passed just now")).to_be_visible()
    header = page.request.get(url).headers["content-security-policy"]
    assert "script-src 'self'" in header
    for path in ("/settings/senders/", "/settings/senders/new", url):
        page.goto(path)
        assert page.evaluate("window.__cspViolations") == [], path
    assert [line for line in console if "Content Security Policy" in line] == []
    assert problems.all() == []
