"""A token from the token server signs in to an SMTP server that checks it with the token
server, and a message is delivered: the whole OAuth2 path, with real parts only.

Why: each half has its own tests; this shows they fit: the token fetch_token returns is
what XOAUTH2 carries, the SMTP server accepts exactly the tokens the token server issued
for the user signing in, and refuses them for anyone else.
"""

from __future__ import annotations

import pytest

from flask_smtp_senders.errors import DeliveryError
from flask_smtp_senders.oauth import (
    GOOGLE_SCOPE,
    MICROSOFT_SCOPE,
    ClientCredentials,
    ServiceAccount,
    fetch_token,
    microsoft_token_url,
)
from flask_smtp_senders.sealed import AccessToken, Secret
from flask_smtp_senders.smtp import transport
from tests.support.scripted_smtp import client_options
from tests.support.smtp_servers import SERVER_NAME
from tests.support.token_server import options_for

MAILBOX = "alerts@contoso.test"
DATA = b"From: <alerts@contoso.test>\r\nSubject: token\r\n\r\nSigned in with a token.\r\n"


@pytest.fixture
def tokens(token_server, google_key):
    server = token_server()
    server.add_microsoft_app("contoso.onmicrosoft.com", "app-1", "app-secret",
                             mailboxes=[MAILBOX])
    server.add_google_account(google_key, users=["alerts@workspace.test"])
    return server


def send(smtp, tls_material, user: str, token: AccessToken) -> dict:
    address = transport.ServerAddress(SERVER_NAME, smtp.port, user)
    with transport.connect(address, token, client_options(smtp, tls_material)) as connection:
        return connection.send(user, ["someone@example.com"], DATA)


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
def test_a_microsoft_token_signs_in_and_a_message_is_delivered(tokens, scripted_server,
                                                               tls_material, tls):
    issued = fetch_token(ClientCredentials(
        microsoft_token_url("contoso.onmicrosoft.com", tokens.microsoft_authority()),
        "app-1", Secret("app-secret"), MICROSOFT_SCOPE), options_for(tokens, tls_material))
    smtp = scripted_server(tls=tls, auth=("XOAUTH2",), token_check=tokens.valid)

    assert send(smtp, tls_material, MAILBOX, issued.token) == {}
    assert smtp.messages == [(MAILBOX, ["someone@example.com"], DATA)]


def test_a_google_token_signs_in_as_its_subject_only(tokens, scripted_server, tls_material,
                                                     google_key):
    issued = fetch_token(ServiceAccount(tokens.google_url(), Secret(google_key.text),
                                        "alerts@workspace.test", GOOGLE_SCOPE),
                         options_for(tokens, tls_material))
    smtp = scripted_server(auth=("XOAUTH2", "OAUTHBEARER"), token_check=tokens.valid)

    assert send(smtp, tls_material, "alerts@workspace.test", issued.token) == {}
    with pytest.raises(DeliveryError) as refused:
        send(smtp, tls_material, "boss@workspace.test", issued.token)
    assert refused.value.stage == "auth" and refused.value.token_refused
    assert len(smtp.messages) == 1


def test_a_token_the_server_did_not_issue_is_refused(tokens, scripted_server, tls_material):
    smtp = scripted_server(auth=("XOAUTH2",), token_check=tokens.valid)

    with pytest.raises(DeliveryError) as refused:
        send(smtp, tls_material, MAILBOX, AccessToken("tsrv.made-up-token"))

    assert refused.value.stage == "auth" and smtp.messages == []
