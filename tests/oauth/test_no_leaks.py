"""No secret, token or assertion in a TokenError, a repr, or a log record, at DEBUG too;
nor the endpoint's own words anywhere but a scrubbed DEBUG record.

Why: a client secret, a key file and a signed assertion are as good as a password, and
an access token is one while it lasts; the endpoint's error_description is written by
whoever runs it and may echo what we sent. Each case below runs a real exchange with
every record of the package captured at DEBUG.
"""

from __future__ import annotations

import json
import logging
import pickle

import pytest

from flask_smtp_senders.oauth import (
    ClientCredentials,
    ServiceAccount,
    TokenError,
    fetch_token,
    parse_service_account_key,
)
from flask_smtp_senders.sealed import Secret
from tests.support.token_server import Reply, google_error, options_for

SECRET = "Sh0rt!"  # short: only the "what we sent" rule can find it
CLIENT = "portal-app"
TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.payload-of-the-token.signature_part"
ECHO = f"AADSTS7000215: Invalid client secret '{SECRET}' for app {CLIENT}; token {TOKEN}"


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.DEBUG, logger="flask_smtp_senders")
    return caplog


def everything_logged(caplog) -> str:
    return "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records)


def everything_shown(failure: TokenError) -> str:
    return " ".join([str(failure), repr(failure), repr(failure.args), repr(vars(failure))])


@pytest.fixture
def server(token_server, google_key):
    started = token_server()
    started.add_client(CLIENT, SECRET, users=["alerts"])
    started.add_google_account(google_key, users=["alerts@workspace.test"])
    return started


def grant(server, secret=SECRET) -> ClientCredentials:
    return ClientCredentials(server.generic_url(), CLIENT, Secret(secret), "smtp",
                             auth_method="client_secret_post")


def test_an_echoed_secret_and_token_reach_no_error_and_only_scrubbed_debug(server,
                                                                           tls_material,
                                                                           logs):
    server.reply = google_error(401, "invalid_client", ECHO)

    with pytest.raises(TokenError) as failure:
        fetch_token(grant(server), options_for(server, tls_material))

    shown, logged = everything_shown(failure.value), everything_logged(logs)
    for value in (SECRET, TOKEN, "payload-of-the-token"):
        assert value not in shown and value not in logged
    assert "Invalid client secret" not in shown  # the endpoint's words: DEBUG only
    assert "Invalid client secret '[redacted]' for app [redacted]; token [redacted]" in logged
    assert all(r.levelno == logging.DEBUG for r in logs.records
               if "Invalid client secret" in r.getMessage())
    assert str(failure.value) == ("the token request failed at refused (HTTP 401): "
                                  "invalid_client, AADSTS7000215")


def test_a_line_break_in_the_description_cannot_forge_a_log_line(server, tls_material, logs):
    server.reply = google_error(400, "invalid_request", "no\r\nCRITICAL forged line")

    with pytest.raises(TokenError):
        fetch_token(grant(server), options_for(server, tls_material))

    assert all("\n" not in r.getMessage() and "\r" not in r.getMessage()
               for r in logs.records)


@pytest.mark.parametrize("reply", [
    Reply(200, json.dumps({"access_token": TOKEN, "token_type": "mac"}).encode()),
    Reply(200, json.dumps({"access_token": TOKEN + " x", "token_type": "Bearer"}).encode()),
    Reply(503, f"<html>{SECRET} {TOKEN}</html>".encode(), "text/html"),
    Reply(200, f"<html>{TOKEN}</html>".encode(), "text/html"),
])
def test_a_malformed_reply_leaks_nothing_it_held(server, tls_material, logs, reply):
    server.reply = reply

    with pytest.raises(TokenError) as failure:
        fetch_token(grant(server), options_for(server, tls_material))

    for text in (everything_shown(failure.value), everything_logged(logs)):
        assert TOKEN not in text and SECRET not in text and "payload-of" not in text


def test_a_successful_fetch_logs_nothing_secret_and_shows_nothing(server, tls_material,
                                                                  google_key, logs):
    generic = fetch_token(grant(server), options_for(server, tls_material))
    google = fetch_token(ServiceAccount(server.google_url(), Secret(google_key.text),
                                        "alerts@workspace.test", "https://mail.google.com/"),
                         options_for(server, tls_material))

    assertion = server.requests[-1].form["assertion"]
    private = json.loads(google_key.text)["private_key"].splitlines()[2]
    values = [SECRET, generic.token.reveal(), google.token.reveal(), assertion, private]
    shown = " ".join(repr(x) + str(x) for x in (
        generic, google, grant(server), parse_service_account_key(google_key.text),
        ServiceAccount(server.google_url(), Secret(google_key.text), "a@b.test", "s")))
    logged = everything_logged(logs)
    for value in values:
        assert value not in shown and value not in logged
    with pytest.raises(TypeError):
        pickle.dumps(generic.token)


def test_a_failed_google_request_leaks_no_assertion(server, tls_material, google_key, logs):
    server.reply = None
    account = ServiceAccount(server.google_url(), Secret(google_key.text),
                             "nobody@workspace.test", "https://mail.google.com/")

    with pytest.raises(TokenError) as failure:
        fetch_token(account, options_for(server, tls_material))

    assertion = server.requests[-1].form["assertion"]
    assert failure.value.advice == "TOKEN_UNKNOWN_USER"
    for text in (everything_shown(failure.value), everything_logged(logs)):
        assert assertion not in text and assertion.split(".")[2] not in text


@pytest.mark.parametrize("cert", ["wrong_name", "untrusted"])
def test_a_tls_failure_says_nothing_of_the_request(token_server, tls_material, logs, cert):
    server = token_server(cert=cert)

    with pytest.raises(TokenError) as failure:
        fetch_token(grant(server), options_for(server, tls_material))

    assert SECRET not in everything_shown(failure.value) + everything_logged(logs)
    assert str(failure.value) == "the token request failed at tls"
