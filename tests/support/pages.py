"""Settings > Senders through Flask's test client: the page helpers the page tests share.

``Admin`` is the host plugin of tests/web/test_pages.py (routes the test server name to
LOOPBACK); ``csrf``, ``errors`` and ``form_values`` read a rendered page; ``create`` posts
the create form with valid values (``GOOD``) and a valid CSRF token, ``create_provider``
another Provider Type's form (``PROVIDER_GOOD``).
"""

from __future__ import annotations

import io
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



#: Valid forms of the other Provider Types, by the names their pages post (the secret
#: included: a client secret, or a Google key added by the test).
TENANT = "0b3c5e7a-1d2f-4a6b-8c9d-0e1f2a3b4c5d"
CLIENT = "6f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
CLIENT_SECRET = "Entra~Client.Secret-Value_0123456789"
PROVIDER_GOOD = {
    "microsoft365": {"tenant_id": TENANT, "client_id": CLIENT, "client_secret": CLIENT_SECRET,
                     "username": "notifications@contoso.com",
                     "server_name": "smtp.office365.com", "port": "587",
                     "secret_expires": "2027-06-30", "from_name": "Contoso",
                     "from_address": "notifications@contoso.com", "reply_to_name": "",
                     "reply_to_address": ""},
    "google": {"service_account_key": "", "username": "notifications@example.com",
               "server_name": "smtp.gmail.com", "port": "465", "secret_expires": "",
               "from_name": "Acme", "from_address": "notifications@example.com",
               "reply_to_name": "", "reply_to_address": ""},
    "oauth2": {"token_url": "https://idp.example.com/oauth2/token", "client_id": "portal-mailer",
               "client_secret": CLIENT_SECRET, "scope": "smtp.send",
               "username": "portal@example.com", "server_name": "mail.example.com",
               "port": "465", "secret_expires": "", "from_name": "Acme",
               "from_address": "portal@example.com", "reply_to_name": "",
               "reply_to_address": ""},
}


def create_provider(client, provider: str, **fields):
    """Post the create form of ``provider`` (microsoft365, google, oauth2) with valid
    values, as changed by ``fields``; a value that is a tuple (bytes, name) is a file."""
    url = f"{PREFIX}/new/email/{provider}"
    page = client.get(url)
    data = {"csrf_token": csrf(page.data), **PROVIDER_GOOD[provider], **fields}
    files = {name: value for name, value in data.items() if isinstance(value, tuple)}
    if files:
        data |= {name: (io.BytesIO(content), filename)
                 for name, (content, filename) in files.items()}
        return client.post(url, data=data, content_type="multipart/form-data")
    return client.post(url, data=data)
