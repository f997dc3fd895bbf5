"""Fixtures for the Chromium tests: Debian's Chromium through Playwright, the example portal
in a subprocess, and pages that record console errors, failed requests and any attempt to
load something that is not on loopback (127.0.0.0/8).

Playwright never downloads a browser here: it drives ``/usr/bin/chromium``. Without it the
tests skip, except under ``CI=true`` where they fail.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import ROOT, Portal, Problems
from tests.support.portal import READY

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
#: Every URL the browser may load (the portal and the other site are on the run's loopback
#: address, tests/support/loopback.py); anything else is aborted and reported.
LOOPBACK_URL = re.compile(r"^https?://127(\.\d{1,3}){3}(:\d+)?/")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser tests cannot run under CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Debian Chromium for the session."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the Python package playwright is not installed (pip install -e '.[test]')")
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        _unavailable(f"{CHROMIUM} is missing: apt-get install chromium "
                     "(Playwright's own browser download cannot work here)")
    from playwright.sync_api import expect

    expect.set_options(timeout=15_000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _start_portal(folder: Path) -> Portal:
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "portal.log"
    env = {**os.environ,
           "PORTAL_INSTANCE": str(folder / "instance"),
           "PORTAL_ADMIN_PASSWORD": secrets.token_urlsafe(12),
           "PORTAL_CATCHER_PASSWORD": secrets.token_urlsafe(12),
           "PYTHONUNBUFFERED": "1"}
    env.pop("DATABASE_URL", None)  # the portal's own SQLite file, always
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter, fixed arguments
            [sys.executable, "-c", "from tests.support.portal import run_portal; run_portal()"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    portal = Portal("", "", env["PORTAL_ADMIN_PASSWORD"], env["PORTAL_CATCHER_PASSWORD"],
                    process, log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.search(rf"^{READY} (\S+) (\S+)$", portal.output(), re.MULTILINE)
        if found:
            portal.url, portal.catcher_host = found.groups()
            return portal
        if process.poll() is not None:
            break
        time.sleep(0.05)
    _stop(process)
    raise RuntimeError(f"the portal did not start (exit {process.returncode}):\n"
                       f"{portal.output()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture
def portal(browser: Any, tmp_path: Path) -> Iterator[Portal]:
    """A fresh portal per test (empty database, empty catcher), stopped by its PID."""
    portal = _start_portal(tmp_path / "portal")
    yield portal
    _stop(portal.process)


@pytest.fixture
def problems() -> Problems:
    return Problems()


@pytest.fixture
def open_page(browser: Any, problems: Problems) -> Iterator[Callable[[str], Any]]:
    """Factory: open_page(base_url) -> a page in a new context, limited to loopback and
    recording every problem; closed at teardown (for a portal other than ``portal``)."""
    contexts: list[Any] = []

    def open_at(base_url: str) -> Any:
        context = browser.new_context(viewport={"width": 1200, "height": 800},
                                      base_url=base_url)
        contexts.append(context)
        return _watched_page(context, problems)

    yield open_at
    for context in contexts:
        context.close()


@pytest.fixture
def page(portal: Portal, open_page: Callable[[str], Any]) -> Any:
    """A new context and page per test, limited to loopback, recording every problem."""
    return open_page(portal.url)


def _watched_page(context: Any, problems: Problems) -> Any:
    def refuse(route: Any) -> None:
        problems.blocked.append(f"blocked a non-loopback request: {route.request.url}")
        route.abort()

    context.route(lambda url: not LOOPBACK_URL.match(url), refuse)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.on("console", lambda msg: msg.type == "error" and problems.console_errors.append(
        f"console error on {page.url}: {msg.text}"))
    page.on("pageerror", lambda exc: problems.page_errors.append(
        f"page error on {page.url}: {exc}"))
    def request_failed(request: Any) -> None:
        # ERR_ABORTED is Chromium cancelling a load because the page navigated away (a
        # quick click after Save, say): not a fault. A missing or broken resource shows
        # up as a console error with its status instead, and is still caught.
        if "ERR_ABORTED" not in (request.failure or ""):
            problems.failed_requests.append(
                f"request failed: {request.method} {request.url}: {request.failure}")

    page.on("requestfailed", request_failed)
    return page
