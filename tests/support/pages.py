"""Settings > Senders through Flask's test client: the page helpers the page tests share.

``Admin`` is the host plugin of tests/web/test_pages.py (routes the test server name to
LOOPBACK); ``csrf``, ``errors`` and ``form_values`` read a rendered page; ``create`` posts
the create form with valid values (``GOOD``) and a valid CSRF token.
"""

from __future__ import annotations

import re

from flask_smtp_senders import hookimpl
from flask_smtp_senders.settings import DEFAULTS
from tests.support.smtp_servers import LOOPBACK, SERVER_NAME

PREFIX = "/settings/senders"
PASSWORD = "Page-Test-Pa55word"
WARNING = DEFAULTS["SMTP_SENDERS_MSG_SAVE_WARNING"]


class Admin:
    """Host plugin: authorises everything unless told otherwise, and routes the test name."""

    def __init__(self) -> None:
        self.allow: bool | None = True
        self.address = LOOPBACK

    @hookimpl
    def smtp_senders_authorize(self, action, sender_id):
        return self.allow

    @hookimpl
    def smtp_senders_resolve(self, server_name, port):
        return [self.address] if server_name == SERVER_NAME else None


def csrf(html: bytes) -> str:
    return re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1).decode()


def errors(html: bytes) -> dict[str, str]:
    return {m[0].decode(): m[1].decode()
            for m in re.findall(rb'<p class="error" id="([a-z_]+)-error">([^<]*)</p>', html)}


def form_values(html: bytes) -> dict[str, str]:
    return {m[0].decode(): m[1].decode()
            for m in re.findall(rb'<input[^>]*? name="([a-z_]+)"[^>]*? value="([^"]*)"', html)}


GOOD = {"username": "alice", "password": PASSWORD, "server_name": "smtp.example.com",
        "port": "587", "from_name": "Acme", "from_address": "noreply@example.com",
        "reply_to_name": "", "reply_to_address": ""}


def create(client, **fields):
    page = client.get(f"{PREFIX}/new/email/custom")
    return client.post(f"{PREFIX}/new/email/custom",
                       data={"csrf_token": csrf(page.data), **GOOD, **fields})

