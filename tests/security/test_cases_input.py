"""Security cases A: bad input in every form field and through the Python API.

Through the real pages (Flask's test client with valid CSRF tokens) or the service; every
test checks that nothing was stored. Validation happens before any database work, so
SQLite is enough here; how values at the length limits are stored on both databases is
tested in test_cases_secrets.py.
"""

from __future__ import annotations

import pytest

from flask_smtp_senders import InvalidSenderData, SenderSettings, get_service
from flask_smtp_senders.text_checks import MSG_CONTROL
from flask_smtp_senders.validation import MSG_PORT, MSG_REQUIRED, MSG_SERVER
from tests.support.cases import (
    CASE_CONFIG,
    PREFIX,
    TEXT_FIELDS,
    Host,
    create_via_form,
    csrf,
    edit_via_form,
    errors,
    form_values,
    good_fields,
    snapshot,
    token_of,
)

pytestmark = pytest.mark.sqlite_only

CONTROL_VALUES = ["\r", "\n", "\r\n", "\x00"]

#: Django's invalid e-mail list (tests/validators), the parseaddr tricks of CVE-2023-27043
#: and CVE-2019-16056, display names, lists, and a non-ASCII local part (no SMTPUTF8).
INVALID_ADDRESSES = [
    "", "abc", "abc@", "abc@bar", "a @x.cz", "abc@.com", "something@@somewhere.com",
    "email@127.0.0.1", "email@[127.0.0.256]", "email@[2001:db8::12345]",
    "email@[2001:db8:0:0:0:0:1]", "email@[::ffff:127.0.0.256]", "email@[2001:dg8::1]",
    "email@[2001:dG8:0:0:0:0:0:1]", "email@[::fTzF:127.0.0.1]", "example@invalid-.com",
    "example@-invalid.com", "example@invalid.com-", "example@inv-.alid-.com",
    "example@inv-.-alid.com", 'test@example.com\n\n<script src="x.js">',
    '"\\\011"@here.com', '"\\\012"@here.com', "trailingdot@shouldfail.com.",
    "a@" + "a" * 64 + ".us", "a@b.com\n", "a\n@b.com", '"test@test"\n@example.com',
    "a@[127.0.0.1]\n",
    "alice@example.org(<bob@example.com>", "alice@example.org<<bob@example.com>",
    "alice@example.org)<bob@example.com>",
    "Alice <alice@example.org>", '"bob@example.com" <alice@example.org>',
    "alice@example.org <bob@example.com>", "<alice@example.org>",
    "=?utf-8?q?bob=40example.com?= <alice@example.org>", "alice(comment)@example.org",
    "alice@example.org (Bob)", '"bob@example.com"@example.org', "bob@example.com@example.org",
    "alice@example.org, bob@example.com", "alice@example.org;bob@example.com",
    "alice@example.org bob@example.com",
    "nø@example.dk",
]

INVALID_SERVER_NAMES = [
    "smtp://host.example.com", "smtp.example.com:587", "host:587", "smtp example.com",
    " smtp.example.com x", "[::1]:25", "host/path", "http://smtp.example.com/",
    "a" * 254, ("a" * 62 + ".") * 4 + "com", "host.example.com\r\n", "host\r\n",
    "host\n", "ho\x00st",
]


@pytest.fixture
def host() -> Host:
    return Host()


@pytest.fixture
def app(make_app, host):
    return make_app(plugins=[host], **CASE_CONFIG)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def sender_id(client) -> int:
    answer = create_via_form(client)
    assert answer.status_code == 302
    return int(answer.location.rsplit("/", 1)[1])


# -- A1: CR, LF and NUL ------------------------------------------------------------------


def test_line_breaks_and_nul_in_any_field_are_a_field_error_on_create_and_edit(
        app, client, sender_id):
    """Case A1: CR, LF, CRLF, NUL (also trailing) in From Name, From Address, Reply-To
    Name, Reply-To Address, Username or Server Name is a field error on that field alone,
    on create and on edit; nothing is stored or changed."""
    before = snapshot(app)
    wrong = []
    for field in TEXT_FIELDS:
        base = good_fields()[field] or ("Support" if "name" in field else "help@example.com")
        for bad in CONTROL_VALUES:
            for value in (f"{base}{bad}Bcc: victim@example.net", f"{base}{bad}"):
                for answer in (create_via_form(client, **{field: value}),
                               edit_via_form(client, sender_id, password="Case-Pa55word",
                                             **{field: value})):
                    found = errors(answer.data)
                    if answer.status_code != 422 or set(found) != {field}:
                        wrong.append((field, value, answer.status_code, found))
    assert not wrong, wrong
    assert snapshot(app) == before


def test_line_breaks_and_nul_through_the_api_raise_invalid_sender_data(app):
    """Case A1: the Python API refuses the same values with InvalidSenderData naming the
    field (the API's 400/422), for create and update, and stores nothing."""
    valid = {"username": "alice", "server_name": "smtp.example.com",
             "from_address": "noreply@example.com", "from_name": "Acme",
             "reply_to_name": "Support", "reply_to_address": "help@example.com"}
    with app.app_context():
        service = get_service(app)
        kept = service.create_sender(SenderSettings(**valid), "Case-Pa55word")
        for field in TEXT_FIELDS:
            for bad in CONTROL_VALUES:
                settings = SenderSettings(**{**valid, field: valid[field] + bad + "X-Evil: 1"})
                with pytest.raises(InvalidSenderData) as created:
                    service.create_sender(settings, "Case-Pa55word")
                with pytest.raises(InvalidSenderData) as updated:
                    service.update_sender(kept.id, kept.version, settings, "Case-Pa55word")
                assert set(created.value.errors) == set(updated.value.errors) == {field}
                assert created.value.errors[field] in (MSG_CONTROL, MSG_SERVER)
        assert service.list_senders() == [kept]


# -- A2 and A3: addresses ------------------------------------------------------------------


def test_invalid_and_tricky_addresses_are_refused_in_every_address_field(app, client,
                                                                         sender_id):
    """Cases A2, A3: Django's invalid addresses, parseaddr tricks, display names, lists and
    a non-ASCII local part are refused in From Address, Reply-To Address and the test
    email's Send to, each with a field error; nothing is stored and nothing is sent."""
    before = snapshot(app)
    token = token_of(client)
    accepted = []
    for address in INVALID_ADDRESSES:
        answer = create_via_form(client, from_address=address, reply_to_address=address)
        expected = {"from_address", "reply_to_address"} if address else {"from_address"}
        if answer.status_code != 422 or set(errors(answer.data)) != expected:
            accepted.append(("create", address, answer.status_code, errors(answer.data)))
        test = client.post(f"{PREFIX}/{sender_id}/test", data={
            "csrf_token": token, "recipient": address}, headers={"Accept": "application/json"})
        if test.status_code != 422 or test.json.get("field") != "recipient":
            accepted.append(("test email", address, test.status_code, test.get_data(True)))
    assert not accepted, accepted
    assert snapshot(app) == before


def test_non_ascii_local_part_is_refused_and_an_idn_domain_is_accepted(app, client):
    """Case A3: no SMTPUTF8, so nø@example.dk is a field error; an IDN domain and a
    non-ASCII From Name are accepted and stored as typed (the wire form is checked in
    test_cases_transport.py)."""
    refused = create_via_form(client, from_address="nø@example.dk")
    assert refused.status_code == 422
    assert "from_address" in errors(refused.data)
    assert snapshot(app) == []

    answer = create_via_form(client, from_address="noreply@bücher.example",
                             reply_to_address="hilfe@bücher.example", from_name="Chère équipe")
    assert answer.status_code == 302
    with app.app_context():
        [sender] = get_service(app).list_senders()
    assert sender.settings.from_address == "noreply@bücher.example"
    assert sender.settings.reply_to_address == "hilfe@bücher.example"
    assert sender.settings.from_name == "Chère équipe"


# -- A4: ports -------------------------------------------------------------------------


def test_port_accepts_1_to_65535_defaults_to_465_and_refuses_the_rest(app, client):
    """Case A4: blank means 465; 0, 65536, -1, 25abc, 1e3 (and other junk) are a field
    error with the fixed message; 1, 25 and 65535 are accepted and stored as numbers."""
    for bad in ["0", "65536", "-1", "25abc", "1e3", "+25", "0x19", "25.0", "２５", "99999999999"]:
        answer = create_via_form(client, port=bad)
        assert answer.status_code == 422, bad
        assert errors(answer.data) == {"port": MSG_PORT}, bad
        assert form_values(answer.data)["port"] == bad  # kept as typed
    assert snapshot(app) == []
    for typed, stored in [("", 465), ("1", 1), ("25", 25), ("65535", 65535), (" 587 ", 587)]:
        assert create_via_form(client, port=typed).status_code == 302, typed
        with app.app_context():
            assert get_service(app).list_senders()[-1].settings.port == stored


# -- A6: server names ---------------------------------------------------------------------


def test_server_name_with_scheme_port_spaces_or_overlong_is_a_field_error(app, client):
    """Case A6: smtp://host, host:587, spaces, 254+ characters and a trailing CR LF are a
    field error on Server Name, never stored."""
    for bad in INVALID_SERVER_NAMES:
        answer = create_via_form(client, server_name=bad)
        assert answer.status_code == 422, bad
        assert set(errors(answer.data)) == {"server_name"}, bad
    assert snapshot(app) == []


# -- A7: oversized values ---------------------------------------------------------------------


BIG_VALUES = {"letters": "x" * 10_240, "digits": "9" * 10_240}


def test_ten_kilobytes_in_every_create_field_is_a_field_error_not_a_500(app, client):
    """Case A7: 10 KB (letters, then digits) in every field of the create form, hidden
    version included, gets field errors with the fixed messages, no 500, and stores
    nothing."""
    wrong = []
    for kind, big in BIG_VALUES.items():
        fields = {name: big for name in good_fields()}
        answer = client.post(f"{PREFIX}/new/email/custom",
                             data={"csrf_token": token_of(client), **fields, "version": big})
        found = errors(answer.data)
        if answer.status_code != 422 or not {"username", "password", "server_name", "port",
                                             "from_address"} <= set(found):
            wrong.append((kind, answer.status_code, found))
        elif found["port"] != MSG_PORT or found["password"] != "Must be at most 1024 characters.":
            wrong.append((kind, "not the fixed message", found["port"], found["password"]))
    assert not wrong, wrong
    assert snapshot(app) == []


def test_ten_kilobytes_in_every_edit_field_is_refused_not_a_500(app, client, sender_id):
    """Case A7: the same on the edit form, hidden version included, and 10 KB in the
    hidden version alone beside valid fields: a refusal (field errors or a conflict),
    never a 500, and the sender is unchanged."""
    before = snapshot(app)
    wrong = []
    for kind, big in BIG_VALUES.items():
        page = client.get(f"{PREFIX}/{sender_id}")
        every_field = {name: big for name in good_fields()}
        version_only = {**form_values(page.data), "password": "Case-Pa55word"}
        for which, fields in (("every field", every_field), ("version only", version_only)):
            answer = client.post(f"{PREFIX}/{sender_id}",
                                 data={**fields, "csrf_token": csrf(page.data), "version": big})
            if answer.status_code not in (200, 422):
                wrong.append((kind, which, answer.status_code))
    assert not wrong, wrong
    assert snapshot(app) == before


def test_oversized_or_odd_version_on_delete_is_refused_not_a_500(app, client, sender_id):
    """Case A7: the delete form's hidden version with 10 KB of digits, a number past 64
    bits, or a character str.isdigit() accepts but int() does not ("²"): no 500, nothing
    deleted."""
    before = snapshot(app)
    wrong = []
    for version in ["9" * 10_240, "9" * 25, "²"]:
        confirm = client.get(f"{PREFIX}/{sender_id}/delete")
        answer = client.post(f"{PREFIX}/{sender_id}/delete",
                             data={"csrf_token": csrf(confirm.data), "version": version})
        if answer.status_code >= 500:
            wrong.append((version[:30], answer.status_code))
    assert not wrong, wrong
    assert snapshot(app) == before


def test_ten_kilobytes_in_the_test_email_and_plus_forms_is_refused_not_a_500(
        app, client, sender_id):
    """Case A7: 10 KB as Send to (JSON and HTML) and in the + step's selects: a field
    error, no 500, nothing sent or stored."""
    before = snapshot(app)
    token = token_of(client)
    big = "a" * 10_240 + "@example.com"
    as_json = client.post(f"{PREFIX}/{sender_id}/test", data={"csrf_token": token,
                                                               "recipient": big},
                          headers={"Accept": "application/json"})
    assert as_json.status_code == 422 and as_json.json["field"] == "recipient"
    as_html = client.post(f"{PREFIX}/{sender_id}/test", data={"csrf_token": token,
                                                               "recipient": big})
    assert as_html.status_code == 422 and "recipient" in errors(as_html.data)
    plus = client.post(f"{PREFIX}/new", data={"csrf_token": token, "sender_type": big,
                                              "provider_type": big})
    assert plus.status_code == 200 and errors(plus.data)
    assert snapshot(app) == before


def test_required_fields_left_blank_are_field_errors(app, client):
    """Cases A1, A7: blank or whitespace-only mandatory fields are field errors naming
    each field, and nothing is stored."""
    answer = create_via_form(client, username=" \t", password="", server_name=" ",
                             from_address="\t", port="")
    assert answer.status_code == 422
    found = errors(answer.data)
    assert found["username"] == found["password"] == MSG_REQUIRED
    assert set(found) == {"username", "password", "server_name", "from_address"}
    assert snapshot(app) == []
