"""Apps for the Send Test Email rate-limit tests (security cases C7, F5).

``build_app`` and ``post_test_emails`` also run in a second worker process
(tests/web/test_ratelimit.py starts ``python -c`` with them), so they need no fixture.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, request
from flask_sqlalchemy import SQLAlchemy

from flask_smtp_senders import SMTPSenders, hookimpl
from tests.support.pages import Admin, csrf

JSON = {"Accept": "application/json"}


class Operator(Admin):
    """Admin whose name comes from the X-Admin header, as the host's login would give it."""

    @hookimpl
    def smtp_senders_actor(self) -> str | None:
        return request.headers.get("X-Admin")


def build_app(name: str, config: dict[str, Any]) -> Flask:
    """An app built the way a host builds it; the F5 test's second process builds the same."""
    app = Flask(name)
    app.config.update(SECRET_KEY="test-secret-key", SMTP_SENDERS_OPERATION_TIMEOUT=2.0,
                      SMTP_SENDERS_TIMEOUT=5.0, SMTP_SENDERS_EHLO_NAME="client.test",
                      SMTP_SENDERS_ALLOW_LOOPBACK=True, SMTP_SENDERS_CREATE_TABLES=True,
                      **config)
    SMTPSenders(app, db=SQLAlchemy(app), plugins=[Operator()])
    return app


def post_test_emails(client: Any, sender_url: str, count: int,
                     admin: str | None = None) -> list[int]:
    """Send Test Email ``count`` times through the JSON API; returns the status codes."""
    token = csrf(client.get(sender_url).data)
    headers = {**JSON, **({"X-Admin": admin} if admin else {})}
    return [client.post(f"{sender_url}/test", headers=headers,
                        data={"csrf_token": token, "recipient": "to@acme.com"}).status_code
            for _ in range(count)]

