"""The JSON API's senders of every Provider Type: the sign-in fields in and out, the secret
(password, client secret, key file) write-only whatever it is, each provider's rules with
problems naming the field, and a change of provider that does not carry stale fields.

Why: scripts create Microsoft 365 and Google senders too; what the pages refuse the API
must refuse with the same messages, and no answer may hold a secret.
"""

from __future__ import annotations

import json

import pytest

from flask_smtp_senders.provider_fields import MSG_NOT_FOR_PROVIDER
from tests.support.cases import CASE_CONFIG, routed_host, stored_password
from tests.support.pages import CLIENT, CLIENT_SECRET, TENANT
from tests.support.smtp_servers import SERVER_NAME
from tests.support.token_server import make_google_key

API = "/settings/senders/api"
TOKEN = {"Authorization": "Bearer script"}
OAUTH_FIELDS = ("tenant_id", "client_id", "token_url", "scope", "secret_expires")
MICROSOFT = {"provider": "microsoft365", "tenant_id": TENANT, "client_id": CLIENT,
             "password": CLIENT_SECRET, "username": "notifications@contoso.com",
             "server_name": "smtp.office365.com", "port": 587,
             "secret_expires": "2027-06-30", "from_address": "notifications@contoso.com"}


@pytest.fixture(scope="module")
def google_key():
    return make_google_key()


@pytest.fixture
def app(make_app):
    return make_app(plugins=[routed_host()], **CASE_CONFIG)


@pytest.fixture
def client(app):
    return app.test_client()


def create(client, **body):
    return client.post(f"{API}/senders", json=body, headers=TOKEN)


def assert_no_secret(answer, *secrets: str) -> None:
    text = answer.get_data(as_text=True)
    for secret in secrets:
        assert secret not in text
        assert json.dumps(secret)[1:-1] not in text
    assert "PRIVATE KEY" not in text
    body = answer.json
    for sender in body.get("senders", [body]) if "errors" not in body else []:
        assert "password" not in sender


def test_a_microsoft_365_sender_comes_back_with_its_sign_in_fields_never_its_secret(app,
                                                                                   client):
    answer = create(client, **MICROSOFT)
    assert answer.status_code == 201, answer.json
    body = answer.json
    assert {name: body[name] for name in ("provider", *OAUTH_FIELDS)} == {
        "provider": "microsoft365", "tenant_id": TENANT, "client_id": CLIENT, "token_url": "",
        "scope": "", "secret_expires": "2027-06-30"}
    assert body["mode"] == "STARTTLS" and body["password_usable"] is True
    assert_no_secret(answer, CLIENT_SECRET)
    assert stored_password(app, body["id"]) == CLIENT_SECRET
    listed = client.get(f"{API}/senders", headers=TOKEN)
    assert listed.json["senders"][0]["provider"] == "microsoft365"
    assert_no_secret(listed, CLIENT_SECRET)


def test_a_custom_server_is_the_default_provider_and_carries_no_sign_in_fields(client):
    answer = create(client, username="alice", password="Api-Pa55word-1",
                    server_name=SERVER_NAME, from_address="noreply@example.com")
    assert answer.status_code == 201
    assert answer.json["provider"] == "custom"
    assert all(answer.json[name] == "" for name in OAUTH_FIELDS)


def test_a_google_sender_takes_its_key_file_as_the_password_and_its_client_id_from_it(
        app, client, google_key):
    answer = create(client, provider="google", password=google_key.text,
                    username="notifications@example.com", server_name="smtp.gmail.com",
                    from_address="notifications@example.com", client_id="ignored")
    assert answer.status_code == 201, answer.json
    assert answer.json["client_id"] == google_key.client_id
    assert_no_secret(answer, google_key.text, google_key.key_id)
    assert stored_password(app, answer.json["id"]) == google_key.text


@pytest.mark.parametrize(("changes", "field", "words"), [
    ({"tenant_id": ""}, "tenant_id", "This field is required."),
    ({"tenant_id": "not a tenant"}, "tenant_id", "Directory (tenant) ID"),
    ({"client_id": "mailer"}, "client_id", "Application (client) ID"),
    ({"username": "notifications"}, "username", "email"),
    ({"secret_expires": "30/06/2027"}, "secret_expires", "YYYY-MM-DD"),
    ({"token_url": "https://login.example.com/token"}, "token_url", MSG_NOT_FOR_PROVIDER),
    ({"provider": "sendgrid"}, "provider", "Provider Type"),
    ({"password": ""}, "password", "This field is required."),
])
def test_each_bad_field_is_named_in_the_problem(client, changes, field, words):
    answer = create(client, **{**MICROSOFT, **changes})
    assert answer.status_code == 422
    errors = answer.json["errors"]
    assert field in errors and words.lower() in errors[field].lower(), errors
    assert_no_secret(answer, CLIENT_SECRET)


def test_a_bad_google_key_is_refused_on_the_password_field_without_quoting_it(client):
    key = '{"type": "authorized_user", "client_secret": "do-not-echo-this"}'
    answer = create(client, provider="google", password=key, username="a@example.com",
                    server_name="smtp.gmail.com", from_address="a@example.com")
    assert answer.status_code == 422
    assert set(answer.json["errors"]) == {"password"}
    assert "do-not-echo-this" not in answer.get_data(as_text=True)


def test_a_custom_server_password_is_still_at_most_1024_characters(client):
    answer = create(client, username="alice", password="p" * 1025, server_name=SERVER_NAME,
                    from_address="noreply@example.com")
    assert answer.status_code == 422 and set(answer.json["errors"]) == {"password"}


def test_an_update_keeps_the_sign_in_fields_and_asks_for_the_secret_again(app, client):
    made = create(client, **MICROSOFT)
    url, etag = f"{API}/senders/{made.json['id']}", made.headers["ETag"]
    refused = client.patch(url, json={"from_name": "Contoso"},
                           headers={**TOKEN, "If-Match": etag})
    assert refused.status_code == 422 and set(refused.json["errors"]) == {"password"}
    answer = client.patch(url, json={"from_name": "Contoso", "password": "New~Secret.1"},
                          headers={**TOKEN, "If-Match": etag})
    assert answer.status_code == 200, answer.json
    assert (answer.json["tenant_id"], answer.json["client_id"]) == (TENANT, CLIENT)
    assert answer.json["from_name"] == "Contoso"
    assert stored_password(app, made.json["id"]) == "New~Secret.1"
    assert_no_secret(answer, "New~Secret.1", CLIENT_SECRET)


def test_changing_the_provider_clears_the_old_providers_sign_in_fields(client):
    made = create(client, **MICROSOFT)
    answer = client.patch(f"{API}/senders/{made.json['id']}", json={
        "provider": "custom", "password": "Plain-Pa55word", "username": "relay-user",
        "server_name": SERVER_NAME}, headers={**TOKEN, "If-Match": made.headers["ETag"]})
    assert answer.status_code == 200, answer.json
    assert answer.json["provider"] == "custom"
    assert all(answer.json[name] == "" for name in OAUTH_FIELDS)
