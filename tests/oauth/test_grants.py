"""fetch_token for the three providers against the real token server: what each grant
sends, what a good reply gives, and which failure (stage, status, codes, advice) each
refusal and each malformed reply becomes.

Why: the form and headers are what Microsoft Entra, Google and an RFC 6749 server
check, so they are compared as bytes; the assertion is verified with the public key, as
Google does; the advice an administrator reads depends on reading the provider's codes
right, so every listed code is produced by the server (or shaped like the provider's
reply) and mapped.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import time

import jwt
import pytest

from flask_smtp_senders.oauth import (
    GOOGLE_SCOPE,
    MICROSOFT_SCOPE,
    ClientCredentials,
    ServiceAccount,
    TokenError,
    fetch_token,
    microsoft_token_url,
)
from flask_smtp_senders.sealed import Secret
from tests.support.token_server import (
    MICROSOFT_HOST,
    MISSING,
    Reply,
    entra_error,
    google_error,
    make_google_key,
    options_for,
)

TENANT = "contoso.onmicrosoft.com"
APP, APP_SECRET = "11111111-2222-3333-4444-555555555555", "Qx8~secret.Value_of-the+app/=="
MAILBOX = "alerts@contoso.test"
CLIENT, CLIENT_SECRET = "portal:client", "p ss/w+rd%é"
WORKSPACE_USER = "alerts@workspace.test"


@pytest.fixture
def server(token_server, google_key):
    started = token_server()
    started.add_microsoft_app(TENANT, APP, APP_SECRET, mailboxes=[MAILBOX])
    started.add_client(CLIENT, CLIENT_SECRET, users=["alerts"], scope="smtp.send")
    started.add_google_account(google_key, users=[WORKSPACE_USER])
    return started


def microsoft(server, *, tenant=TENANT, client_id=APP, secret=APP_SECRET,
              scope=MICROSOFT_SCOPE) -> ClientCredentials:
    return ClientCredentials(microsoft_token_url(tenant, server.microsoft_authority()),
                             client_id, Secret(secret), scope)


def generic(server, *, secret=CLIENT_SECRET, method="client_secret_basic",
            scope="smtp.send") -> ClientCredentials:
    return ClientCredentials(server.generic_url(), CLIENT, Secret(secret), scope,
                             auth_method=method)


def google(server, key, *, subject=WORKSPACE_USER, scope=GOOGLE_SCOPE) -> ServiceAccount:
    return ServiceAccount(server.google_url(), Secret(key.text), subject, scope)


def failed(grant, server, tls_material, **keywords) -> TokenError:
    with pytest.raises(TokenError) as failure:
        fetch_token(grant, options_for(server, tls_material), **keywords)
    return failure.value


def shape(failure: TokenError) -> tuple:
    return (failure.stage, failure.status, failure.error, failure.provider_code,
            failure.advice)


# -- the happy paths, byte for byte ------------------------------------------------------


def test_microsoft_client_credentials_posts_the_secret_in_the_form(server, tls_material):
    issued = fetch_token(microsoft(server), options_for(server, tls_material),
                         now=lambda: 1_000_000.0)

    assert server.valid(MAILBOX, issued.token.reveal())
    assert issued.expires_at == 1_000_000.0 + 3599
    [request] = server.requests
    assert request.target == f"/{TENANT}/oauth2/v2.0/token"  # nothing secret in the URL
    assert request.body == (
        b"grant_type=client_credentials&client_id=11111111-2222-3333-4444-555555555555"
        b"&client_secret=Qx8~secret.Value_of-the%2Bapp%2F%3D%3D"
        b"&scope=https%3A%2F%2Foutlook.office365.com%2F.default")
    assert request.header("Authorization") is None


def test_generic_client_secret_basic_form_encodes_id_and_secret_first(server, tls_material):
    """RFC 6749 s2.3.1: "portal:client" and "p ss/w+rd%é" are form-urlencoded, then
    joined by ":" and base64-encoded; neither goes in the form."""
    issued = fetch_token(generic(server), options_for(server, tls_material))

    assert server.valid("alerts", issued.token.reveal())
    [request] = server.requests
    expected = base64.b64encode(b"portal%3Aclient:p+ss%2Fw%2Brd%25%C3%A9").decode()
    assert request.header("Authorization") == f"Basic {expected}"
    assert request.body == b"grant_type=client_credentials&scope=smtp.send"
    assert b"p+ss" not in request.head.split(b"Authorization")[0]


def test_generic_client_secret_post_sends_them_in_the_form(server, tls_material):
    issued = fetch_token(generic(server, method="client_secret_post"),
                         options_for(server, tls_material))

    assert server.valid("alerts", issued.token.reveal())
    assert server.requests[0].form == {"grant_type": "client_credentials",
                                       "client_id": CLIENT, "client_secret": CLIENT_SECRET,
                                       "scope": "smtp.send"}


def test_google_service_account_sends_an_rs256_assertion_google_would_accept(
        server, tls_material, google_key):
    now = float(int(time.time()))

    issued = fetch_token(google(server, google_key), options_for(server, tls_material),
                         now=lambda: now)

    assert server.valid(WORKSPACE_USER, issued.token.reveal())
    assert not server.valid("someone.else@workspace.test", issued.token.reveal())
    [request] = server.requests
    assert set(request.form) == {"grant_type", "assertion"}
    assert request.form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assertion = request.form["assertion"]
    assert jwt.get_unverified_header(assertion) == {"alg": "RS256", "typ": "JWT",
                                                   "kid": google_key.key_id}
    claims = jwt.decode(assertion, google_key.private_key.public_key(), algorithms=["RS256"],
                        audience=server.google_url())
    assert claims == {"iss": google_key.client_email, "sub": WORKSPACE_USER,
                      "scope": GOOGLE_SCOPE, "aud": server.google_url(),
                      "iat": int(now), "exp": int(now) + 3600}


@pytest.mark.parametrize("token_type", ["Bearer", "bearer", "BEARER"])
def test_token_type_bearer_is_case_insensitive(server, tls_material, token_type):
    server.token_type = token_type

    assert fetch_token(generic(server), options_for(server, tls_material)).token.reveal()


@pytest.mark.parametrize("expires_in, lifetime", [
    (MISSING, 3600), (3599, 3599), ("1200", 1200), (0, 60), (-30, 60), (59, 60),
    (86401, 86400), (10**12, 86400)])
def test_expires_in_is_held_to_a_minute_and_a_day(server, tls_material, expires_in, lifetime):
    server.expires_in = expires_in

    issued = fetch_token(generic(server), options_for(server, tls_material), now=lambda: 500.0)

    assert issued.expires_at == 500.0 + lifetime


# -- Microsoft Entra's refusals ----------------------------------------------------------


@pytest.mark.parametrize("change, status, error, code, advice", [
    ({"secret": "its-secret-id-instead"}, 401, "invalid_client", 7000215, "TOKEN_BAD_SECRET"),
    ({"client_id": "99999999-2222-3333-4444-555555555555"}, 400, "unauthorized_client",
     700016, "TOKEN_APP_NOT_FOUND"),
    ({"tenant": "fabrikam.onmicrosoft.com"}, 400, "invalid_request", 90002,
     "TOKEN_TENANT_NOT_FOUND"),
    ({"scope": "https://outlook.office365.com/SMTP.SendAsApp"}, 400, "invalid_scope",
     1002012, "TOKEN_BAD_SCOPE"),
    ({"scope": "https://graph.microsoft.com/.default"}, 400, "invalid_scope", 70011,
     "TOKEN_BAD_SCOPE"),
])
def test_entra_refusals_of_the_request_get_their_advice(server, tls_material, change, status,
                                                        error, code, advice):
    failure = failed(microsoft(server, **change), server, tls_material)

    assert shape(failure) == ("refused", status, error, f"AADSTS{code}", advice)


@pytest.mark.parametrize("state, status, error, code, advice", [
    ({"expired": True}, 401, "invalid_client", 7000222, "TOKEN_SECRET_EXPIRED"),
    ({"disabled": True}, 400, "unauthorized_client", 7000112, "TOKEN_APP_DISABLED"),
    ({"consented": False}, 400, "invalid_grant", 65001, "TOKEN_CONSENT_MISSING"),
    ({"blocked": True}, 400, "invalid_grant", 53003, "TOKEN_BLOCKED_BY_POLICY"),
])
def test_entra_refusals_of_the_app_get_their_advice(server, tls_material, state, status,
                                                    error, code, advice):
    server.add_microsoft_app(TENANT, APP, APP_SECRET, mailboxes=[MAILBOX], **state)

    failure = failed(microsoft(server), server, tls_material)

    assert shape(failure) == ("refused", status, error, f"AADSTS{code}", advice)


def test_a_tenant_entra_cannot_parse_is_aadsts900023(server, tls_material):
    grant = ClientCredentials(server.url(MICROSOFT_HOST, "/not_a_tenant/oauth2/v2.0/token"),
                              APP, Secret(APP_SECRET), MICROSOFT_SCOPE)

    assert shape(failed(grant, server, tls_material)) == (
        "refused", 400, "invalid_request", "AADSTS900023", "TOKEN_TENANT_NOT_FOUND")


def test_an_entra_code_without_advice_of_its_own_gets_its_errors(server, tls_material):
    server.reply = entra_error(401, "invalid_client", 700024,
                               "Client assertion is not within its valid time range.")

    assert shape(failed(microsoft(server), server, tls_material)) == (
        "refused", 401, "invalid_client", "AADSTS700024", "TOKEN_BAD_CLIENT")


def test_the_entra_code_is_read_from_the_description_without_error_codes(server,
                                                                          tls_material):
    server.reply = google_error(401, "invalid_client",
                                "AADSTS7000215: Invalid client secret provided.")

    assert shape(failed(microsoft(server), server, tls_material)) == (
        "refused", 401, "invalid_client", "AADSTS7000215", "TOKEN_BAD_SECRET")


# -- Google's refusals -----------------------------------------------------------------


def test_an_unknown_workspace_user_is_refused(server, tls_material, google_key):
    failure = failed(google(server, google_key, subject="nobody@workspace.test"), server,
                     tls_material)

    assert shape(failure) == ("refused", 400, "invalid_grant", None, "TOKEN_UNKNOWN_USER")


def test_missing_domain_wide_delegation_is_unauthorized_client(server, tls_material,
                                                               google_key):
    server.add_google_account(google_key, users=[WORKSPACE_USER], scopes=())

    failure = failed(google(server, google_key), server, tls_material)

    assert shape(failure) == ("refused", 401, "unauthorized_client", None,
                              "TOKEN_DELEGATION_MISSING")


def test_a_revoked_key_is_an_invalid_signature(server, tls_material, google_key):
    server.add_google_account(google_key, users=[WORKSPACE_USER], revoked=True)

    failure = failed(google(server, google_key), server, tls_material)

    assert shape(failure) == ("refused", 400, "invalid_grant", None, "TOKEN_KEY_REVOKED")


def test_a_signature_by_another_key_is_an_invalid_signature(server, tls_material,
                                                            google_key):
    other = make_google_key(google_key.client_email, google_key.client_id)
    server.add_google_account(dataclasses.replace(other, key_id=google_key.key_id),
                              users=[WORKSPACE_USER])

    failure = failed(google(server, google_key), server, tls_material)

    assert shape(failure) == ("refused", 400, "invalid_grant", None, "TOKEN_KEY_REVOKED")


def test_a_wrong_clock_is_told_apart(server, tls_material, google_key):
    failure = failed(google(server, google_key), server, tls_material,
                     now=lambda: time.time() - 7200)

    assert shape(failure) == ("refused", 400, "invalid_grant", None, "TOKEN_CLOCK_SKEW")


@pytest.mark.parametrize("error, description, advice", [
    ("invalid_client", "The OAuth client was disabled.", "TOKEN_KEY_REVOKED"),
    ("invalid_grant", "Not a valid email.", "TOKEN_UNKNOWN_USER"),
    ("invalid_grant", "account not found", "TOKEN_KEY_REVOKED"),
    ("invalid_grant", "Something else.", "TOKEN_BAD_GRANT"),
    ("invalid_scope", "Invalid OAuth scope or ID token audience provided.",
     "TOKEN_BAD_SCOPE"),
])
def test_googles_other_replies(server, tls_material, google_key, error, description, advice):
    server.reply = google_error(400, error, description)

    assert failed(google(server, google_key), server, tls_material).advice == advice


def test_google_descriptions_mean_nothing_from_another_endpoint(server, tls_material):
    server.reply = google_error(400, "invalid_grant", "Invalid JWT Signature.")

    assert failed(generic(server), server, tls_material).advice == "TOKEN_BAD_GRANT"


# -- RFC 6749 refusals of a generic endpoint ---------------------------------------------


def test_a_wrong_secret_is_invalid_client(server, tls_material):
    failure = failed(generic(server, secret="wrong"), server, tls_material)

    assert shape(failure) == ("refused", 401, "invalid_client", None, "TOKEN_BAD_CLIENT")


def test_a_scope_the_client_may_not_have_is_invalid_scope(server, tls_material):
    failure = failed(generic(server, scope="admin"), server, tls_material)

    assert shape(failure) == ("refused", 400, "invalid_scope", None, "TOKEN_BAD_SCOPE")


@pytest.mark.parametrize("error, advice", [
    ("invalid_grant", "TOKEN_BAD_GRANT"), ("unauthorized_client", "TOKEN_UNAUTHORIZED_CLIENT"),
    ("unsupported_grant_type", "TOKEN_UNSUPPORTED_GRANT"),
    ("invalid_request", "TOKEN_BAD_REQUEST"), ("slow_down", "TOKEN_REFUSED"),
])
def test_each_rfc6749_error_gets_its_advice(server, tls_material, error, advice):
    server.reply = google_error(400, error, "words of the server")

    assert shape(failed(generic(server), server, tls_material)) == (
        "refused", 400, error, None, advice)


def test_an_error_code_that_is_not_a_short_token_is_not_kept(server, tls_material):
    server.reply = google_error(400, "<script>alert(1)</script>", "x")

    assert shape(failed(generic(server), server, tls_material)) == (
        "refused", 400, None, None, "TOKEN_REFUSED")


# -- replies that are not what RFC 6749 says ---------------------------------------------


@pytest.mark.parametrize("reply, stage, advice", [
    (Reply(503, b"<html><h1>Service Unavailable</h1></html>", "text/html"), "http",
     "TOKEN_SERVER_ERROR"),
    (Reply(500, b"", "text/plain"), "http", "TOKEN_SERVER_ERROR"),
    (Reply(503, b'{"error": "temporarily_unavailable"}'), "refused", "TOKEN_REFUSED"),
    (Reply(404, b"<h1>Not Found</h1>", "text/html"), "http", "TOKEN_HTTP_ERROR"),
    (Reply(400, b'{"message": "no"}'), "http", "TOKEN_HTTP_ERROR"),
    (Reply(200, b"<html>Sign in to continue</html>", "text/html"), "response",
     "TOKEN_NOT_JSON"),
    (Reply(200, b'["access_token"]'), "response", "TOKEN_NOT_JSON"),
    (Reply(200, b"\xff\xfe{}"), "response", "TOKEN_NOT_JSON"),
])
def test_replies_that_are_no_token_response(server, tls_material, reply, stage, advice):
    server.reply = reply

    failure = failed(generic(server), server, tls_material)

    assert (failure.stage, failure.status, failure.advice) == (stage, reply.status, advice)


@pytest.mark.parametrize("body", [
    {"token_type": "Bearer", "expires_in": 3600},
    {"access_token": "", "token_type": "Bearer"},
    {"access_token": 12345, "token_type": "Bearer"},
    {"access_token": "has space", "token_type": "Bearer"},
    {"access_token": "line\r\nbreak", "token_type": "Bearer"},
    {"access_token": "a" * 8193, "token_type": "Bearer"},
    {"access_token": "abc"},
    {"access_token": "abc", "token_type": "mac"},
    {"access_token": "abc", "token_type": "DPoP"},
    {"access_token": "abc", "token_type": "Bearer", "expires_in": "12.5"},
    {"access_token": "abc", "token_type": "Bearer", "expires_in": 3599.5},
    {"access_token": "abc", "token_type": "Bearer", "expires_in": True},
    {"access_token": "abc", "token_type": "Bearer", "expires_in": None},
    {"access_token": "abc", "token_type": "Bearer", "expires_in": "３６００"},
])
def test_a_token_that_is_no_bearer_token_or_has_no_lifetime_is_refused(server, tls_material,
                                                                        body):
    server.reply = Reply(200, json.dumps(body).encode())

    failure = failed(generic(server), server, tls_material)

    assert (failure.stage, failure.status, failure.advice) == ("response", 200,
                                                               "TOKEN_BAD_RESPONSE")


def test_the_server_issuing_another_token_type_is_refused(server, tls_material):
    server.token_type = "N_A"

    assert failed(generic(server), server, tls_material).stage == "response"


# -- grants that cannot be sent --------------------------------------------------------


@pytest.mark.parametrize("grant", [
    ClientCredentials("https://idp.test/t", "", Secret("s"), "x"),
    ClientCredentials("https://idp.test/t", "id\r\nX: y", Secret("s"), "x"),
    ClientCredentials("https://idp.test/t", "id", Secret("s"), "x\n"),
    ClientCredentials("https://idp.test/t", "id", Secret("s"), "x",
                      auth_method="private_key_jwt"),  # type: ignore[arg-type]
    ServiceAccount("https://idp.test/t", Secret("{}"), "user@x.test", GOOGLE_SCOPE),
    ServiceAccount("https://idp.test/t", Secret("k"), "", GOOGLE_SCOPE),
])
def test_a_grant_that_cannot_be_sent_is_a_value_error_before_any_connection(
        server, tls_material, grant):
    with pytest.raises(ValueError):
        fetch_token(grant, options_for(server, tls_material))
    assert server.connections == 0


def test_an_empty_scope_is_left_out(server, tls_material):
    server.add_client("no-scope", "pw", users=["x"])

    fetch_token(ClientCredentials(server.generic_url(), "no-scope", Secret("pw"), ""),
                options_for(server, tls_material))

    assert server.requests[0].form == {"grant_type": "client_credentials",
                                       "client_id": "no-scope", "client_secret": "pw"}
