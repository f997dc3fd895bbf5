"""What an administrator types for an OAuth2 sender, checked before any request: the
Microsoft tenant, a generic token URL, a Google service account key file.

Why: the tenant goes into a URL path and the token URL is where a secret is sent, so
what could change where it goes (a slash, a percent sign, a dot-only segment, userinfo)
is refused; a key file that is not a service account's RSA key is refused when saved,
with a reason that never quotes the file.
"""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from flask_smtp_senders.oauth import (
    GOOGLE_SCOPE,
    GOOGLE_TOKEN_URL,
    MICROSOFT_AUTHORITY,
    MICROSOFT_SCOPE,
    check_tenant,
    check_token_url,
    microsoft_token_url,
    parse_service_account_key,
)
from flask_smtp_senders.sealed import Secret

GUID = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def test_the_providers_fixed_values():
    assert MICROSOFT_AUTHORITY == "https://login.microsoftonline.com"
    assert MICROSOFT_SCOPE == "https://outlook.office365.com/.default"
    assert GOOGLE_TOKEN_URL == "https://oauth2.googleapis.com/token"
    assert GOOGLE_SCOPE == "https://mail.google.com/"


# -- the Microsoft tenant ------------------------------------------------------------------


@pytest.mark.parametrize("tenant, url", [
    (GUID, f"https://login.microsoftonline.com/{GUID}/oauth2/v2.0/token"),
    (GUID.upper(), f"https://login.microsoftonline.com/{GUID}/oauth2/v2.0/token"),
    ("contoso.onmicrosoft.com",
     "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"),
    ("Mail.Contoso.co.uk",
     "https://login.microsoftonline.com/mail.contoso.co.uk/oauth2/v2.0/token"),
])
def test_a_tenant_id_or_domain_makes_the_v2_token_url(tenant, url):
    assert microsoft_token_url(tenant) == url


@pytest.mark.parametrize("tenant", [
    "", "contoso", "common", "organizations", "..", ".", "...", "a/b", "../x",
    "contoso.onmicrosoft.com/../other", "contoso.onmicrosoft.com%2f..", "%2e%2e",
    "contoso..com", ".contoso.com", "contoso.com.", " contoso.com", "contoso.com ",
    "contoso.com\n", "conto so.com", "contoso.com?x=1", "contoso.com#x", "user@contoso.com",
    "café.com", "-contoso.com", "contoso-.com", "contoso.123", "10.0.0.1",
    f"{GUID}x", GUID[:-1], "a" * 64 + ".com", None, 42,
])
def test_anything_else_is_not_a_tenant(tenant):
    with pytest.raises(ValueError) as refused:
        microsoft_token_url(tenant)
    assert str(refused.value) and "Tenant ID" in str(refused.value)


def test_the_authority_may_be_another_cloud_or_a_test_server():
    assert microsoft_token_url("contoso.com", "https://login.microsoftonline.us/") == (
        "https://login.microsoftonline.us/contoso.com/oauth2/v2.0/token")
    assert microsoft_token_url(GUID, "https://login.test:8443") == (
        f"https://login.test:8443/{GUID}/oauth2/v2.0/token")


@pytest.mark.parametrize("authority", ["http://login.microsoftonline.com",
                                       "https://user@login.test", "https://login.test?x=1",
                                       "login.microsoftonline.com"])
def test_an_authority_that_is_no_https_url_is_refused(authority):
    with pytest.raises(ValueError):
        microsoft_token_url(GUID, authority)


def test_check_tenant_normalises_case():
    assert check_tenant(GUID.upper()) == GUID
    assert check_tenant("Contoso.OnMicrosoft.com") == "contoso.onmicrosoft.com"


# -- a generic token URL -------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "https://idp.example.com/oauth2/token", "HTTPS://idp.example.com/token",
    "https://idp.example.com:8443/realms/portal/protocol/openid-connect/token",
    "https://idp.example.com/token?tenant=portal", "https://[2001:db8::1]/token",
    "https://192.0.2.10/token", "https://idp.example.com", "https://bücher.example/token",
])
def test_a_token_url_we_may_send_a_secret_to_comes_back_as_typed(url):
    assert check_token_url(url) == url


@pytest.mark.parametrize("url, reason", [
    ("http://idp.example.com/token", "https://"),
    ("ftp://idp.example.com/token", "https://"),
    ("https://user:pw@idp.example.com/token", "user name or password"),
    ("https://idp.example.com/token#frag", "fragment"),
    ("https:///token", "no host"),
    ("https://idp.example.com:70000/token", "port"),
    ("https://idp.example.com:0/token", "port"),
    ("https://idp.example.com/" + "a" * 2030, "2048"),
    ("https://idp.example.com/tok\x00en", "control"),
    ("https://idp.example.com/to ken", "spaces"),
    (" https://idp.example.com/token", "spaces"),
    ("https://idp.example.com\\@evil.test/", "backslash"),
    ("https://[idp.example.com]/token", "host"),
    ("https://[fe80::1%25eth0]/token", "percent"),
    ("https://idp_example.com/token", "domain name"),
    ("https://1.2.3/token", "IP address"),
    ("", "empty"),
])
def test_a_token_url_we_may_not_use_is_refused_with_its_reason(url, reason):
    with pytest.raises(ValueError) as refused:
        check_token_url(url)
    assert reason in str(refused.value)


def test_a_url_of_2048_characters_is_the_longest():
    base = "https://idp.example.com/"
    assert check_token_url(base + "a" * (2048 - len(base)))
    with pytest.raises(ValueError):
        check_token_url(base + "a" * (2049 - len(base)))


# -- a Google service account key file -----------------------------------------------------


def key_file(google_key, **changes) -> str:
    data = json.loads(google_key.text)
    for name, value in changes.items():
        if value is None:
            data.pop(name)
        else:
            data[name] = value
    return json.dumps(data)


def pem_of(private_key) -> str:
    return private_key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()


def test_a_key_file_gives_its_account_and_a_sealed_private_key(google_key):
    key = parse_service_account_key(google_key.text)

    assert (key.client_email, key.private_key_id, key.client_id) == (
        google_key.client_email, google_key.key_id, google_key.client_id)
    assert isinstance(key.private_key_pem, Secret)
    assert key.private_key_pem.reveal() == json.loads(google_key.text)["private_key"]
    assert "PRIVATE KEY" not in repr(key) and "PRIVATE KEY" not in str(key)


@pytest.mark.parametrize("change, reason", [
    ({"type": "authorized_user"}, "not a service account key"),
    ({"type": None}, "not a service account key"),
    ({"client_email": None}, '"client_email"'),
    ({"client_email": "no-at-sign"}, '"client_email"'),
    ({"private_key_id": ""}, '"private_key_id"'),
    ({"private_key_id": "id\nX"}, '"private_key_id"'),
    ({"client_id": None}, '"client_id"'),
    ({"client_id": 1234}, '"client_id"'),
    ({"private_key": None}, '"private_key"'),
    ({"private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQ==\n-----END PRIVATE KEY-----\n"},
     "does not load as an RSA private key"),
])
def test_a_key_file_with_a_wrong_or_missing_field_is_refused(google_key, change, reason):
    with pytest.raises(ValueError) as refused:
        parse_service_account_key(key_file(google_key, **change))
    assert reason in str(refused.value)


@pytest.mark.parametrize("text, reason", [
    ("", "empty"), ("   ", "empty"), ("not json at all", "not JSON"), ("[1, 2]",
                                                                         "service account"),
    ('{"type": "service_account"', "not JSON"), ("x" * (16 * 1024 + 1), "16 KB"),
])
def test_what_is_not_a_key_file_is_refused(text, reason):
    with pytest.raises(ValueError) as refused:
        parse_service_account_key(text)
    assert reason in str(refused.value)


@pytest.mark.parametrize("make, reason", [
    (lambda: ec.generate_private_key(ec.SECP256R1()), "RSA private key"),
    (lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024),  # noqa: S505
     "2048 bits"),  # (a weak key, to see it refused)
])
def test_a_key_that_is_not_rsa_of_2048_bits_is_refused(google_key, make, reason):
    with pytest.raises(ValueError) as refused:
        parse_service_account_key(key_file(google_key, private_key=pem_of(make())))
    assert reason in str(refused.value)


def test_no_refusal_quotes_the_key_file(google_key):
    """A broken file (the key's middle cut out): the message names the field, not it."""
    pem = json.loads(google_key.text)["private_key"]
    lines = pem.splitlines()
    broken = "\n".join(lines[:3] + lines[6:])
    for text in (key_file(google_key, private_key=broken), google_key.text[:-40],
                 key_file(google_key, type="user " + lines[2])):
        with pytest.raises(ValueError) as refused:
            parse_service_account_key(text)
        message = str(refused.value)
        assert lines[2] not in message and lines[3] not in message
        assert google_key.client_email not in message and google_key.key_id not in message
