"""Helpers shared by the security-case tests (tests/security/test_cases_*.py,
tests/web/test_fuzz_forms.py, tests/security/test_secret_sweep.py and others); this module
holds no test itself.

The cases are listed in docs/security-cases.md. Each test cites the cases it covers with
``Case <ID>`` (or ``Cases <ID>, <ID>``) in its docstring; scripts/case_coverage.py reads
those citations.
"""

from __future__ import annotations

import base64
import html
import logging
import re
import urllib.parse
from collections.abc import Callable
from typing import Any

from flask import Flask, request
from flask.testing import FlaskClient

from flask_smtp_senders import get_service, hookimpl
from flask_smtp_senders.events import AuditEvent
from flask_smtp_senders.settings import DEFAULTS
from tests.support.pages import csrf, errors, form_values
from tests.support.smtp_servers import LOOPBACK, SERVER_NAME

__all__ = ["csrf", "errors", "form_values"]

PREFIX = "/settings/senders"
RECIPIENT = "some.body@acme.example.com"

#: Every text the package may show a user: the fixed catalogue of config.py.
CATALOGUE = {value for key, value in DEFAULTS.items() if key.startswith("SMTP_SENDERS_MSG_")}

#: Settings of every app built here. The test-email rate limit (Case C7, tested on its own)
#: is set high so that cases which send several test emails never meet it.
CASE_CONFIG: dict[str, Any] = {"SMTP_SENDERS_TEST_EMAIL_RATE_LIMIT": "10000 per minute"}

TEXT_FIELDS = ("username", "server_name", "from_name", "from_address", "reply_to_name",
               "reply_to_address")


def msg(name: str, **values: str) -> str:
    """The default text of ``SMTP_SENDERS_MSG_<NAME>``."""
    return DEFAULTS[f"SMTP_SENDERS_MSG_{name.upper()}"].format(**values)


class Host:
    """A host app's plugin: authorises (``allow``: True, False, None or a callable of
    action and sender id), routes server names to loopback (no other name resolves, so no
    test ever asks a real resolver), names the actor, records every audit event, and lets a
    test change the outgoing message (``prepare``)."""

    def __init__(self) -> None:
        self.allow: bool | None | Callable[[str, int | None], bool | None] = True
        self.routes: dict[str, list[str]] = {}
        self.actor = "admin@portal"
        self.events: list[AuditEvent] = []
        self.asked: list[tuple[str, int | None]] = []
        self.prepare: Callable[..., None] | None = None

    @hookimpl
    def smtp_senders_authorize(self, action, sender_id):
        self.asked.append((action, sender_id))
        return self.allow(action, sender_id) if callable(self.allow) else self.allow

    @hookimpl
    def smtp_senders_resolve(self, server_name, port):
        return list(self.routes.get(server_name, []))

    @hookimpl
    def smtp_senders_actor(self):
        return self.actor

    @hookimpl
    def smtp_senders_api_token_authenticated(self):
        return bearer_token_sent()

    @hookimpl
    def smtp_senders_audit(self, event):
        self.events.append(event)

    @hookimpl
    def smtp_senders_prepare_message(self, message, sender, purpose):
        if self.prepare is not None:
            self.prepare(message, sender, purpose)


class BrokenAudit(Host):
    """A host whose audit trail fails once ``failing`` is set."""

    failing = False

    @hookimpl
    def smtp_senders_audit(self, event):
        if self.failing:
            raise RuntimeError("audit sink unreachable: do-not-show-this")
        self.events.append(event)


def bearer_token_sent() -> bool:
    """The test hosts sign a script in by any bearer token (tests/web/test_api.py's TOKEN), so
    such a call skips CSRF; every other call needs the page's CSRF token."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(credentials.strip())


def routed_host(kind: type[Host] = Host) -> Host:
    """A host (``kind``) that routes the test server name to LOOPBACK."""
    host = kind()
    host.routes = {SERVER_NAME: [LOOPBACK]}
    return host


def good_fields(**overrides: str) -> dict[str, str]:
    """A valid Email Sender Custom SMTP Server form, as posted."""
    return {"username": "alice", "password": "Case-Pa55word", "server_name": "smtp.example.com",
            "port": "587", "from_name": "Acme", "from_address": "noreply@example.com",
            "reply_to_name": "", "reply_to_address": "", **overrides}


def token_of(client: FlaskClient, url: str = f"{PREFIX}/new/email/custom") -> str:
    """A valid CSRF token of ``client``'s session, read from the page at ``url``."""
    page = client.get(url)
    assert page.status_code == 200, (url, page.status_code)
    return csrf(page.data)


def create_via_form(client: FlaskClient, **fields: str):
    """POST the create form (valid unless ``fields`` say otherwise) with a valid token."""
    return client.post(f"{PREFIX}/new/email/custom",
                       data={"csrf_token": token_of(client), **good_fields(**fields)})


def edit_via_form(client: FlaskClient, sender_id: int, **fields: str):
    """POST the edit form with what the page shows, changed by ``fields``."""
    page = client.get(f"{PREFIX}/{sender_id}")
    assert page.status_code == 200
    values = {**form_values(page.data), "csrf_token": csrf(page.data)}
    return client.post(f"{PREFIX}/{sender_id}", data={**values, **fields})


def snapshot(app: Flask) -> list[tuple[object, ...]]:
    """Everything stored about every sender but the test status, to compare before/after."""
    with app.app_context():
        return [(s.id, s.version, s.settings, s.password.token, s.updated_at)
                for s in get_service(app).list_senders()]


def stored_password(app: Flask, sender_id: int) -> str:
    with app.app_context():
        service = get_service(app)
        return service.cipher.decrypt(service.get_sender(sender_id).password).reveal()


def secret_forms(password: str, username: str) -> list[str]:
    """The password as it could leak: literal, escaped, URL-encoded, and the base64 that
    AUTH PLAIN and AUTH LOGIN put on the wire."""
    b64 = lambda text: base64.b64encode(text.encode("utf-8")).decode("ascii")  # noqa: E731
    return sorted({password, html.escape(password), urllib.parse.quote(password),
                   urllib.parse.quote_plus(password), b64(password),
                   b64(f"\0{username}\0{password}"), b64(f"{username}\0{username}\0{password}")})


def leaks(text: str, needles: list[str]) -> list[str]:
    """The needles found in ``text`` (an empty list is the only good answer). CSRF token
    values are random text and are left out, or "535" would turn up in one now and then."""
    text = re.sub(r'(name="csrf_token" type="hidden" value=")[^"]*"', r"\1", text)
    return [needle for needle in needles if needle and needle in text]


#: Loggers of the loopback test servers (aiosmtpd, asyncio, tests/support/*.py): what the
#: remote side logs is not the app's log, so leak checks leave exactly these out.
HARNESS_LOGGERS = ("mail.log", "asyncio", "tests.")


def app_log_text(records: list[logging.LogRecord]) -> str:
    """Every record but the harness's, formatted with its traceback (as a handler would)."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(formatter.format(record) for record in records
                     if not record.name.startswith(HARNESS_LOGGERS))


def outcome(answer) -> dict[str, object]:
    """The result of a JSON test-email answer, without its diagnosis and advice."""
    return {"ok": answer.json["ok"], "message": answer.json["message"]}
