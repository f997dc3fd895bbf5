"""Send Test Email and Check connection for an OAuth2 sender, on the pages and in the API:
the Token stage in front of the SMTP stages, and a token refused shown where it stopped.

Real parts: a loopback HTTPS token server (tests/support/token_server.py) issuing tokens
as Microsoft Entra does, and a scripted SMTP server that accepts exactly those tokens
over XOAUTH2. Why here as well as in tests/oauth: the modal and the no-JavaScript page
must draw a stage the SMTP exchange never had, and the API must document it.
"""

from __future__ import annotations

import re

import pytest

from flask_smtp_senders import hookimpl
from flask_smtp_senders.settings import DEFAULTS
from tests.support.pages import (
    CLIENT,
    CLIENT_SECRET,
    PREFIX,
    TENANT,
    Admin,
    create_provider,
    csrf,
)
from tests.support.smtp_servers import LOOPBACK, SERVER_NAME
from tests.support.token_server import MICROSOFT_HOST, TOKEN_HOSTS, TokenServer, entra_error

MAILBOX = "notifications@contoso.com"
JSON = {"Accept": "application/json"}
API = f"{PREFIX}/api"
TOKEN_FAILED = DEFAULTS["SMTP_SENDERS_MSG_TOKEN_FAILED"]


class TokenHosts(Admin):
    """Admin, with the token server's names routed to loopback too."""

    @hookimpl
    def smtp_senders_resolve(self, server_name, port):
        return [LOOPBACK] if server_name in (SERVER_NAME, *TOKEN_HOSTS) else None

    @hookimpl
    def smtp_senders_api_token_authenticated(self):
        return True


@pytest.fixture
def entra(tls_material):
    cert = tls_material.ca.issue_cert(*TOKEN_HOSTS, LOOPBACK)
    with TokenServer(cert=cert) as server:
        server.add_microsoft_app(TENANT, CLIENT, CLIENT_SECRET, mailboxes=[MAILBOX])
        yield server


@pytest.fixture
def client(make_app, entra):
    app = make_app(plugins=[TokenHosts()],
                   SMTP_SENDERS_MICROSOFT_AUTHORITY=entra.microsoft_authority())
    return app.test_client()


@pytest.fixture
def smtp(scripted_server, entra):
    return scripted_server(tls="implicit", auth=("XOAUTH2",), token_check=entra.valid)


def stages(page: bytes) -> list[tuple[str, str]]:
    return [(label.decode(), outcome.decode()) for label, outcome in re.findall(
        rb'<span class="label">([^<]+)</span>\s*<span class="outcome">(passed|failed)</span>',
        page)]


def microsoft_sender(client, smtp, **fields) -> str:
    answer = create_provider(client, "microsoft365", server_name=SERVER_NAME,
                             port=str(smtp.port), **fields)
    assert answer.status_code == 302
    return answer.location


def test_a_test_email_shows_the_token_stage_first_and_is_delivered(client, smtp, entra):
    url = microsoft_sender(client, smtp)
    page = client.get(url).data
    answer = client.post(url + "/test", data={"csrf_token": csrf(page),
                                              "recipient": "some.body@acme.com"})
    assert answer.status_code == 200
    assert b"A test message was successfully sent to some.body@acme.com." in answer.data
    shown = stages(answer.data)
    assert shown[0] == ("Token", "passed") and all(o == "passed" for _, o in shown)
    assert ("AUTH", "passed") in shown
    assert MICROSOFT_HOST.encode() in answer.data  # the Token stage's endpoint fact
    assert CLIENT_SECRET.encode() not in answer.data
    assert len(smtp.messages) == 1 and len(entra.requests) == 1


def test_the_modal_gets_the_token_stage_as_json(client, smtp):
    url = microsoft_sender(client, smtp)
    answer = client.post(url + "/check", headers=JSON, data={
        "csrf_token": csrf(client.get(url).data)})
    assert answer.status_code == 200 and answer.json["ok"] is True
    first = answer.json["diagnosis"]["stages"][0]
    assert (first["name"], first["label"], first["ok"]) == ("token", "Token", True)
    assert smtp.messages == []


def test_a_refused_client_secret_stops_at_the_token_stage_with_advice(client, smtp, entra):
    entra.reply = entra_error(401, "invalid_client", 7000215, "Invalid client secret "
                              "provided.")
    url = microsoft_sender(client, smtp)
    page = client.get(url).data
    answer = client.post(url + "/test", data={"csrf_token": csrf(page),
                                              "recipient": "some.body@acme.com"})
    assert TOKEN_FAILED.encode().replace(b"'", b"&#39;") in answer.data
    assert stages(answer.data) == [("Token", "failed")]
    assert b"Suggested fix" in answer.data and b"401" in answer.data
    assert b"Invalid client secret provided" not in answer.data  # never the provider's text
    assert smtp.connections == 0
    listing = client.get(f"{PREFIX}/").data
    assert b"Last test failed" in listing


def test_the_api_names_the_token_stage_where_a_probe_stopped(client, smtp, entra):
    entra.reply = entra_error(400, "invalid_grant", 65001, "The user or administrator has "
                              "not consented to use the application.")
    sender_id = int(microsoft_sender(client, smtp).rstrip("/").rsplit("/", 1)[1])
    answer = client.post(f"{API}/senders/{sender_id}/check", json={})
    assert answer.status_code == 200
    body = answer.json
    assert (body["ok"], body["stage"], body["message"]) == (False, "token", TOKEN_FAILED)
    assert body["diagnosis"]["stopped_at"] == "token"
    [stage] = body["diagnosis"]["stages"]
    assert (stage["name"], stage["label"], stage["ok"]) == ("token", "Token", False)
    assert body["diagnosis"]["advice"]
    listed = client.get(f"{API}/senders/{sender_id}").json
    assert listed["last_check_ok"] is False and listed["last_check_stage"] == "token"
