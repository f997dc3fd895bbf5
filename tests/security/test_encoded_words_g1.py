"""Case G1: a From Name or Reply-To Name holding an RFC 2047 encoded word that decodes to
CR, LF or another control character. It is refused on save (form, API, Python API); a row
saved behind the application's back (an SQL UPDATE) is neutralised by the sending API, and
a host's own header hiding a line break refuses that message. What reaches the server is
read back from a scripted aiosmtpd server, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import email
import email.policy
import re
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import update

from flask_smtp_senders import InvalidSenderData, SenderSettings, get_service
from flask_smtp_senders.addresses import AddressRules
from flask_smtp_senders.mail.headers import (
    SenderHeaders,
    address_header,
    build_test_message,
    checked_fold,
)
from flask_smtp_senders.mail.outgoing import refuse_hidden_line_breaks, wire_bytes
from flask_smtp_senders.storage.models import SenderRow
from flask_smtp_senders.text_checks import MSG_ENCODED_CONTROL, check_name, hides_control
from flask_smtp_senders.validation import validate_settings
from tests.support.hosts import LoopbackAdmin
from tests.support.smtp_servers import SERVER_NAME

INJECTED = "Acme\r\nBcc: victim@evil.example\r\n\r\nInjected body"
#: The same injection as a q and a b encoded word, and variants readers decode leniently.
Q_WORD = "=?utf-8?q?Acme=0D=0ABcc:_victim@evil.example?="
B_WORD = "=?utf-8?b?QWNtZQ0KQmNjOiB2aWN0aW1AZXZpbC5leGFtcGxl?="
HIDING = [
    Q_WORD,
    B_WORD,
    "=?UTF-8?Q?Acme=0D=0A=0D=0AInjected_body?=",
    "=?iso-8859-1?q?a=0Ab?=",
    "Acme =?utf-8?q?=00?=",
    "Acme=?utf-8?q?=0A?=x",  # no space before the word: lenient decoders still decode it
    '"=?utf-8?q?a=0Db?="',  # inside a quoted string: the stdlib decodes it there too
    "=?utf-8?q?tab=09?=",
    "=?utf-8?q?nel=C2=85?=",  # C1 NEL: str.splitlines breaks on it
    "=?utf-8?b?4oCo?=",  # U+2028 LINE SEPARATOR
    "=?no-such-charset?q?abc?=",  # undecodable: readers disagree on what it says
    "=?utf-8?b?QWNtZQ0K",  # unterminated: harmless
]
HIDING_REFUSED = HIDING[:-1]
WIRE_WORDS = [pytest.param(Q_WORD, id="q"), pytest.param(B_WORD, id="b")]



Host = LoopbackAdmin


@pytest.fixture
def host() -> Host:
    return Host()


@pytest.fixture
def app(make_app, host) -> Flask:
    return make_app(plugins=[host],
                    SMTP_SENDERS_TEST_EMAIL_RATE_LIMIT="10000 per minute")


def add(service, server, **fields: str):
    settings = {"from_name": "Acme", "from_address": "noreply@example.com",
                "reply_to_address": "help@example.com", **fields}
    return service.create_sender(SenderSettings(
        username="alice", server_name=SERVER_NAME, port=server.port, **settings), "s3cret")


def tamper(app: Flask, sender_id: int, **columns: Any) -> None:
    """An SQL UPDATE behind the application's back (no validation, no version bump)."""
    table = SenderRow.__table__
    with app.extensions["sqlalchemy"].engine.begin() as connection:
        assert connection.execute(
            update(table).where(table.c.id == sender_id).values(**columns)).rowcount == 1


def note(number: int = 0) -> EmailMessage:
    message = EmailMessage()
    message["To"] = "user@example.com"
    message["Subject"] = f"Notification {number}"
    message.set_content(f"Body {number}.\n")
    return message


def assert_nothing_injected(server, recipients: list[list[str]]) -> None:
    """No header line an attacker wrote, no body of theirs, no recipient of theirs."""
    assert [message[1] for message in server.messages] == recipients
    assert not any(b"evil.example" in line.lower() for line in server.wire
                   if line[:8].upper() == b"RCPT TO:")
    for _mail_from, _rcpt, data in server.messages:
        head, _, _body = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert not any(re.match(rb"(?i)bcc\s*:", line) for line in lines), head
        assert b"Injected body" not in data
        for line in lines[1:]:  # every line is a header or the continuation of one
            assert re.match(rb"[A-Za-z0-9-]+: |[ \t]\S", line), line
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        assert "Bcc" not in parsed
        for name in ("From", "Reply-To"):
            for address in parsed[name].addresses:
                assert not re.search(r"[\r\n]", address.display_name)


# -- (a) refused on save ------------------------------------------------------------------


@pytest.mark.parametrize("name", HIDING_REFUSED)
def test_a_name_hiding_a_control_character_is_refused_by_the_rules(name) -> None:
    """Case G1: check_name and validate_settings refuse the name, for both name fields,
    with one message; the addresses are checked the same way (=?...?= is atext)."""
    assert hides_control(name)
    assert check_name(name, 200) == MSG_ENCODED_CONTROL
    with pytest.raises(InvalidSenderData) as refused:
        validate_settings(username="u", server_name="smtp.example.com",
                          from_address="a@example.com", from_name=name,
                          reply_to_name=name, reply_to_address="r@example.com")
    assert refused.value.errors == {"from_name": MSG_ENCODED_CONTROL,
                                    "reply_to_name": MSG_ENCODED_CONTROL}


@pytest.mark.parametrize("name", ["Acme", "=?utf-8?q?caf=C3=A9?=", "x =? y", "Say \"hi\"",
                                  "=?utf-8?b?QWNtZQ0K"])
def test_a_harmless_name_is_kept(name) -> None:
    """An encoded word that decodes to printable text, and text that only looks like the
    start of one, are accepted as typed."""
    settings = validate_settings(username="u", server_name="smtp.example.com",
                                 from_address="a@example.com", from_name=name)
    assert settings.from_name == name


def test_an_address_hiding_a_line_break_is_refused() -> None:
    with pytest.raises(InvalidSenderData) as refused:
        validate_settings(username="u", server_name="smtp.example.com",
                          from_address="=?utf-8?q?a=0D=0Ab?=@example.com")
    assert refused.value.errors == {"from_address": MSG_ENCODED_CONTROL}


@pytest.mark.parametrize("field", ["from_name", "reply_to_name"])
@pytest.mark.parametrize("name", WIRE_WORDS)
def test_the_page_refuses_it_and_keeps_what_was_typed(app, field, name) -> None:
    """Case G1 (a): the form is re-rendered (422) with a field error and every value typed
    but the password; nothing is stored."""
    client = app.test_client()
    page = client.get("/settings/senders/new/email/custom")
    token = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', page.data)
    values = {"username": "alice", "password": "Pa55-word", "server_name": "smtp.example.com",
              "port": "587", "from_name": "Acme", "from_address": "noreply@example.com",
              "reply_to_name": "Help", "reply_to_address": "help@example.com", field: name}
    answer = client.post("/settings/senders/new/email/custom",
                         data={"csrf_token": token.group(1).decode(), **values})
    assert answer.status_code == 422
    html = answer.get_data(as_text=True)
    assert f'id="{field}-error">{MSG_ENCODED_CONTROL}' in html
    shown = dict(re.findall(r'<input[^>]*? name="([a-z_]+)"[^>]*? value="([^"]*)"', html))
    assert {key: shown.get(key) for key in values if key != "password"} == {
        key: value for key, value in values.items() if key != "password"}
    assert "Pa55-word" not in html
    with app.app_context():
        assert get_service(app).list_senders() == []


@pytest.mark.parametrize("field", ["from_name", "reply_to_name"])
@pytest.mark.parametrize("name", WIRE_WORDS)
def test_the_api_refuses_it_with_the_field(app, field, name) -> None:
    """Case G1 (a): API create and PATCH answer 422 naming the field."""
    client = app.test_client()
    headers = {"Authorization": "Bearer script"}
    body = {"username": "alice", "password": "Pa55-word", "server_name": SERVER_NAME,
            "port": 587, "from_address": "noreply@example.com",
            "reply_to_address": "help@example.com"}
    refused = client.post("/settings/senders/api/senders", json={**body, field: name},
                          headers=headers)
    assert refused.status_code == 422 and refused.json["errors"] == {
        field: MSG_ENCODED_CONTROL}
    created = client.post("/settings/senders/api/senders", json=body, headers=headers)
    assert created.status_code == 201
    patched = client.patch(f"/settings/senders/api/senders/{created.json['id']}",
                           json={"password": "Pa55-word", field: name},
                           headers={**headers, "If-Match": created.headers["ETag"]})
    assert patched.status_code == 422 and patched.json["errors"] == {
        field: MSG_ENCODED_CONTROL}


# -- (b) neutralised when sending ----------------------------------------------------------


@pytest.mark.parametrize("name", WIRE_WORDS)
def test_a_tampered_name_is_neutralised_in_the_test_email(app, service, scripted_server,
                                                          name) -> None:
    """Case G1 (b): a row whose names were set behind the application's back to an
    encoded word hiding CR LF: the test email goes out with From and Reply-To holding the
    text as typed, never a Bcc header line, an injected body or another recipient."""
    server = scripted_server()
    sender = add(service, server)
    tamper(app, sender.id, from_name=name, reply_to_name=name)
    result = service.send_test_email(sender.id, "to@example.com")
    assert result.ok, result.message
    assert_nothing_injected(server, [["to@example.com"]])


@pytest.mark.parametrize("name", WIRE_WORDS)
def test_a_tampered_name_is_neutralised_in_a_send_many_batch(app, service, scripted_server,
                                                              name) -> None:
    """Case G1 (b): the same through the sending API, a batch of three."""
    server = scripted_server()
    sender = add(service, server)
    tamper(app, sender.id, from_name=name, reply_to_name=name)
    results = service.mailer.send_many([note(n) for n in range(3)], sender.id)
    assert [result.ok for result in results] == [True, True, True]
    assert_nothing_injected(server, [["user@example.com"]] * 3)
    for _mail_from, _rcpt, data in server.messages:
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        shown = parsed["From"].addresses[0].display_name.replace("\u2060", "").replace(" ", "")
        assert shown == name  # one level of decoding: the text as typed


def test_a_tampered_name_with_a_raw_line_break_sends_nothing(app, service,
                                                              scripted_server) -> None:
    """Case G1/G7: a raw CR LF in a name (SQL UPDATE) cannot be written: the batch fails
    with InvalidSenderData and the test email at stage "sender"; the server gets nothing."""
    server = scripted_server()
    sender = add(service, server)
    tamper(app, sender.id, from_name=INJECTED)
    results = service.mailer.send_many([note(1), note(2)], sender.id)
    assert all(isinstance(result.error, InvalidSenderData) for result in results)
    test = service.send_test_email(sender.id, "to@example.com")
    assert not test.ok and test.stage == "sender"
    assert server.messages == []


@pytest.mark.parametrize("word", WIRE_WORDS)
@pytest.mark.parametrize("header", ["Subject", "X-Note", "To", "Reply-To"])
def test_a_hosts_header_hiding_a_line_break_fails_that_message_alone(
        service, scripted_server, word, header) -> None:
    """Case G1 (b): the host's own message with a header whose decoded value holds CR LF
    is refused (InvalidSenderData naming the header); the rest of the batch goes."""
    server = scripted_server()
    sender = add(service, server)
    address = header in ("To", "Reply-To")
    value = f"{word} <user@example.com>" if address else word
    bad = []
    if not address:  # the stdlib refuses to build an address header holding CR LF
        message = note(1)
        del message[header]
        message[header] = value  # a header object, its value decoded
        bad.append(message)
    raw = note(2)
    del raw[header]
    raw.set_raw(header, value)  # the string as given, decoded only when written
    bad.append(raw)
    results = service.mailer.send_many([note(0), *bad, note(3)], sender.id)
    assert [result.ok for result in results] == [True, *[False] * len(bad), True]
    for result in results[1:-1]:
        assert isinstance(result.error, InvalidSenderData)
        # To is read for the envelope first: refused there, as a bad recipient list
        assert list(result.error.errors) in ([header.lower()], ["recipients"])
    assert_nothing_injected(server, [["user@example.com"]] * 2)


def test_a_prepare_hook_adding_such_a_header_fails_the_test_email(host, service,
                                                                  scripted_server) -> None:
    """Case G1 (b): what the host's hook adds to the test email is checked too."""
    server = scripted_server()
    sender = add(service, server)
    host.prepare = lambda message: message.__setitem__("X-Campaign", B_WORD)
    result = service.send_test_email(sender.id, "to@example.com")
    assert not result.ok and result.stage == "data"
    assert server.messages == []


def test_a_rewritten_display_name_is_defused(service, scripted_server) -> None:
    """Case G1 (b): a header rebuilt for an IDN address keeps its display names, but one
    that decodes to an encoded word (double encoding) is written so that no reader decodes
    it a second time into CR LF."""
    server = scripted_server()
    sender = add(service, server)
    message = note()
    del message["To"]
    # decodes once to Q_WORD, which would decode again to CR LF
    double = base64.b64encode(Q_WORD.encode()).decode()
    message.set_raw("To", f"=?utf-8?b?{double}?= <user@b\u00fccher.example>")
    assert service.mailer.send_many([message], sender.id)[0].ok
    assert_nothing_injected(server, [["user@xn--bcher-kva.example"]])
    data = server.messages[0][2]
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert "=?" not in parsed["To"].addresses[0].display_name
    assert b"xn--bcher-kva.example" in data


# -- the building blocks, whatever the stdlib does ----------------------------------------


@pytest.mark.parametrize("name", [Q_WORD, B_WORD, "a =?x?q?y?= b =?", "Jos\u00e9 =?u?q?=0A?="])
def test_no_encoded_word_reaches_the_stdlib_from_a_display_name(name) -> None:
    """The display name handed to the stdlib has no "=?", so no Python version decodes
    it; the reader sees the text as typed (a WORD JOINER is invisible)."""
    address = address_header(name, "a@example.com")
    assert "=?" not in address.display_name
    assert address.display_name.replace("\u2060", "") == name


@pytest.mark.parametrize("name", ["A\r\nBcc: x@evil.example", "A\nB", "A\rB", "A\x00B",
                                  "A\x7fB", "\ud800"])
def test_a_name_that_no_header_may_carry_is_refused(name) -> None:
    with pytest.raises(ValueError):
        address_header(name, "a@example.com")
    with pytest.raises(ValueError, match="^From Name: "):
        SenderHeaders(SenderSettings(username="u", server_name="s.example.com",
                                     from_address="a@example.com", from_name=name))


@pytest.mark.parametrize("folded", [
    "From: a\r\nBcc: x\r\n", "From: a\r\n\r\nbody\r\n", "From: a\nb\r\n", "From: a\r\n \r\n",
    "From: a", "To: a\r\n"])
def test_a_fold_that_is_not_one_header_is_refused(folded) -> None:
    """checked_fold refuses whatever the folder gives that is not exactly one header: a
    new line, an empty line, a bare LF, a blank continuation, no CRLF, another name."""
    with pytest.raises(ValueError):
        checked_fold("From", folded)


def test_a_folded_header_passes() -> None:
    assert checked_fold("From", "From: =?utf-8?q?a?=\r\n =?utf-8?q?b?= <a@b.c>\r\n")


@pytest.mark.parametrize("name", [Q_WORD, B_WORD])
def test_the_test_message_carries_no_raw_line_break(name) -> None:
    settings = SenderSettings(username="u", server_name="s.example.com",
                              from_address="a@example.com", from_name=name,
                              reply_to_name=name, reply_to_address="r@example.com")
    message = build_test_message(settings, "to@example.com", "Test", "Body")
    data, _utf8 = wire_bytes(message, ("a@example.com", "to@example.com"), AddressRules())
    head = data.partition(b"\r\n\r\n")[0]
    assert not re.search(rb"(?im)^bcc", head)
    assert all(line[:1] in (b" ", b"\t") or b": " in line for line in head.split(b"\r\n"))


def test_refuse_hidden_line_breaks_looks_at_every_part() -> None:
    message = note()
    message.add_attachment(b"x", maintype="application", subtype="octet-stream",
                           filename="a.bin")
    part = message.get_payload()[1]
    part.set_raw("Content-Description", Q_WORD)
    with pytest.raises(InvalidSenderData) as refused:
        refuse_hidden_line_breaks(message)
    assert list(refused.value.errors) == ["content-description"]


def test_a_plain_host_header_is_untouched() -> None:
    message = note()
    message["From"] = Address("=?utf-8?q?caf=C3=A9?=", addr_spec="a@example.com")
    refuse_hidden_line_breaks(message)  # decodes to café: nothing to refuse
