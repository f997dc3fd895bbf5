"""Field rules: CR/LF never reaches a header or an SMTP command, strict addresses, ports."""

from __future__ import annotations

import pytest

from flask_smtp_senders import InvalidSenderData, validate_settings
from flask_smtp_senders.validation import (
    normalise_port,
    normalise_server_name,
    validate_password,
    validate_recipient,
)

VALID = {
    "username": "alice",
    "server_name": "smtp.example.com",
    "from_address": "noreply@example.com",
    "port": 465,
    "from_name": "Acme Notifications",
    "reply_to_name": "Acme Support",
    "reply_to_address": "support@example.com",
}

TEXT_FIELDS = ["username", "server_name", "from_name", "from_address", "reply_to_name",
               "reply_to_address"]
CONTROL = ["\r", "\n", "\r\n", "\x00", "\t\n"]


@pytest.mark.parametrize("field", TEXT_FIELDS)
@pytest.mark.parametrize("bad", CONTROL)
def test_control_characters_in_any_header_or_command_field_are_refused(field, bad):
    value = VALID[field] + bad + "Bcc: victim@example.net"
    with pytest.raises(InvalidSenderData) as caught:
        validate_settings(**{**VALID, field: value})
    assert field in caught.value.errors
    assert set(caught.value.errors) == {field}


@pytest.mark.parametrize("field", TEXT_FIELDS)
def test_trailing_newline_is_refused(field):
    with pytest.raises(InvalidSenderData) as caught:
        validate_settings(**{**VALID, field: VALID[field] + "\n"})
    assert field in caught.value.errors


def test_valid_settings_are_kept_as_typed():
    settings = validate_settings(**VALID)
    assert settings.from_name == "Acme Notifications"
    assert settings.port == 465
    assert settings.server_name == "smtp.example.com"


def test_all_bad_fields_are_reported_at_once():
    with pytest.raises(InvalidSenderData) as caught:
        validate_settings(username="", server_name="", from_address="nope", port="0")
    assert set(caught.value.errors) == {"username", "server_name", "from_address", "port"}
    assert caught.value.errors["username"] == "This field is required."


@pytest.mark.parametrize("address", [
    "alice@example.org(<bob@example.com>",
    "alice@example.org<<bob@example.com>",
    "Alice <alice@example.org>",
    "alice@example.org, bob@example.com",
    "alice@example.org;bob@example.com",
    "a@b@example.com",
    "@example.com",
    "alice@",
    "alice",
    "nø@example.dk",
    "alice@-example.com",
    "alice@example..com",
    "",
])
def test_malformed_or_tricky_addresses_are_refused(address):
    with pytest.raises(InvalidSenderData) as caught:
        validate_recipient(address)
    assert "recipient" in caught.value.errors


def test_idn_domain_is_accepted():
    assert validate_recipient("to@漢字.example.com") == "to@漢字.example.com"


@pytest.mark.parametrize("value, expected", [
    ("", 465), (None, 465), ("  ", 465), ("25", 25), (" 587 ", 587), (2525, 2525),
    ("1", 1), ("65535", 65535),
])
def test_port_accepts_1_to_65535_and_blank_means_465(value, expected):
    assert normalise_port(value) == expected


@pytest.mark.parametrize("value", ["0", "65536", "-1", "25abc", "1e3", "4 65", "٣", True, 0,
                                   70000, 1.5])
def test_port_refuses_everything_else(value):
    with pytest.raises(ValueError, match="1 to 65535"):
        normalise_port(value)


@pytest.mark.parametrize("value", [
    "smtp://host.example.com", "host.example.com:587", "smtp example.com", "host\r\n",
    "a" * 254, "-bad.example.com", "under_score.example.com", "1.2.3.999", "host/path",
])
def test_server_name_refuses_schemes_ports_spaces_and_junk(value):
    with pytest.raises(ValueError):
        normalise_server_name(value)


@pytest.mark.parametrize("value, expected", [
    ("smtp.example.com", "smtp.example.com"),
    ("SMTP.Example.COM.", "smtp.example.com"),
    ("127.0.0.1", "127.0.0.1"),
    ("[::1]", "::1"),
    ("mail.bücher.example", "mail.xn--bcher-kva.example"),
])
def test_server_name_accepts_host_names_and_ip_literals(value, expected):
    assert normalise_server_name(value) == expected


def test_oversized_values_get_a_length_error():
    with pytest.raises(InvalidSenderData) as caught:
        validate_settings(**{**VALID, "from_name": "x" * 10_000, "username": "u" * 10_000})
    assert caught.value.errors["from_name"] == "Must be at most 200 characters."
    assert "254" in caught.value.errors["username"]


@pytest.mark.parametrize("password", ["", None])
def test_password_is_required(password):
    with pytest.raises(InvalidSenderData) as caught:
        validate_password(password)
    assert caught.value.errors == {"password": "This field is required."}


def test_password_with_quotes_and_unicode_is_kept_exactly():
    password = "p#;'\"\\ünï©ødé" + "x" * 180
    assert validate_password(password) == password
