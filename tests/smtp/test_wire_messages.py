"""What the sending API and Send Test Email put on the wire, read back from a scripted
aiosmtpd server: the caller's message left alone (Bcc included), Resent- blocks (RFC 5322
§3.6.6), international addresses in headers (RFC 2047 §5, RFC 5890/5891), SMTPUTF8 (RFC
6531), 8-bit bodies (RFC 6152) and the per-message deadline."""

from __future__ import annotations

import email
import email.policy
import re
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.mime.text import MIMEText
from typing import TYPE_CHECKING

import pytest

from flask_smtp_senders import DeliveryError, InvalidSenderData, SenderSettings, hookimpl
from tests.support.smtp_servers import LOOPBACK, SERVER_NAME

if TYPE_CHECKING:
    from tests.support.scripted_smtp import ScriptedServer

pytestmark = pytest.mark.sqlite_only

SMTP = email.policy.SMTP
#: An RFC 2047 encoded word inside an address (RFC 2047 §5 forbids it).
ENCODED_WORD_IN_ADDRESS = re.compile(rb"<[^>\r\n]*=\?[^>\r\n]*>|=\?[^ \r\n]*\?=@")
#: IDNA 2008 A-labels whose U-labels hold a joiner in a valid CONTEXTJ context: Persian
#: with ZWNJ, Devanagari with ZWJ. The stdlib's IDNA 2003 codec gives other labels.
ZWNJ_DOMAIN = "xn--mgba3gch31f060k.example"
ZWJ_DOMAIN = "xn--11b2ezcw70k.example"


class Host:
    def __init__(self) -> None:
        self.prepared: list[EmailMessage] = []

    @hookimpl
    def smtp_senders_resolve(self, server_name, port):
        return [LOOPBACK]

    @hookimpl
    def smtp_senders_prepare_message(self, message, sender, purpose):
        message["X-Prepared-By"] = "host"  # changes the copy, never the caller's object
        self.prepared.append(message)


@pytest.fixture
def host() -> Host:
    return Host()


@pytest.fixture
def app(make_app, host):
    return make_app(plugins=[host])


def add(service, server: ScriptedServer, **fields: str):
    settings = {"from_name": "Acme", "from_address": "noreply@example.com", **fields}
    return service.create_sender(SenderSettings(
        username="alice", server_name=SERVER_NAME, port=server.port, **settings), "s3cret")


def note(to: str = "user@example.com", body: str = "Hello.\n", **headers: str) -> EmailMessage:
    message = EmailMessage()
    message["To"] = to
    message["Subject"] = "Notification"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)


def got(server: ScriptedServer) -> list[Received]:
    return [Received(*message) for message in server.messages]


def text(part: EmailMessage) -> str:
    """A text part's content with the wire's CRLF line endings read back as newlines."""
    return part.get_content().replace("\r\n", "\n")


def mail_lines(server: ScriptedServer) -> list[bytes]:
    return [line for line in server.wire if line[:10].upper() == b"MAIL FROM:"]


def rcpt_lines(server: ScriptedServer) -> list[bytes]:
    return [line for line in server.wire if line[:8].upper() == b"RCPT TO:"]


def header_block(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[0]


# -- 3. the caller's message is never changed -----------------------------------------------


def test_send_leaves_the_callers_message_as_it_was(service, scripted_server):
    server = scripted_server()
    sender = add(service, server)
    message = note(Cc="copy@example.com", Bcc="hidden@example.com")
    message.add_attachment(b"\x00\x01binary", maintype="application", subtype="octet-stream",
                           filename="data.bin")
    before = message.as_bytes(policy=SMTP)
    keys = message.keys()

    first = service.mailer.send(message, sender.id)
    second = service.mailer.send(message, sender.id)

    assert message.as_bytes(policy=SMTP) == before
    assert message.keys() == keys and "From" not in message and "X-Prepared-By" not in message
    assert first.message_id != second.message_id  # each send got its own copy's Message-ID
    for received in got(server):  # the same object reached its Bcc twice
        assert received.rcpt_tos == ["user@example.com", "copy@example.com",
                                     "hidden@example.com"]
        assert b"hidden@example.com" not in received.data
        assert b"X-Prepared-By: host" in received.data
    assert len(server.messages) == 2


def test_send_many_leaves_every_message_as_it_was(service, scripted_server):
    server = scripted_server()
    sender = add(service, server)
    messages = [note(f"user{n}@example.com", Bcc=f"audit{n}@example.com") for n in range(3)]
    before = [m.as_bytes(policy=SMTP) for m in messages]
    results = service.mailer.send_many(messages, sender.id)
    assert all(result.ok for result in results)
    assert [m.as_bytes(policy=SMTP) for m in messages] == before
    assert all(m["Bcc"] for m in messages)


def test_a_compat32_message_is_sent_and_left_as_it_was(service, scripted_server):
    """email.mime messages (and older Django's) use the compat32 policy: plain strings."""
    server = scripted_server()
    sender = add(service, server)
    message = MIMEText("Gr\u00fc\u00dfe\n", "plain", "utf-8")
    message["To"] = "user@example.com"
    message["Bcc"] = "hidden@example.com"
    message["Subject"] = "compat32"
    before = message.as_bytes()
    assert service.mailer.send(message, sender.id).ok
    assert message.as_bytes() == before
    received = got(server)[0]
    assert received.rcpt_tos == ["user@example.com", "hidden@example.com"]
    parsed = email.message_from_bytes(received.data, policy=email.policy.default)
    assert parsed.get_content() == "Gr\u00fc\u00dfe\n" and "Bcc" not in parsed


# -- 4. Resent- fields (RFC 5322 §3.6.6) -----------------------------------------------------


def resent(message: EmailMessage, to: str, cc: str = "", bcc: str = "") -> None:
    message["Resent-Date"] = "Thu, 03 Dec 2026 10:00:00 +0000"
    message["Resent-From"] = "noreply@example.com"
    message["Resent-To"] = to
    if cc:
        message["Resent-Cc"] = cc
    if bcc:
        message["Resent-Bcc"] = bcc


def test_a_resent_message_goes_to_its_resent_recipients(service, scripted_server):
    server = scripted_server()
    sender = add(service, server)
    message = note("original@example.com", Cc="original-cc@example.com",
                   Bcc="original-bcc@example.com")
    resent(message, "again@example.com", "again-cc@example.com", "again-bcc@example.com")

    result = service.mailer.send(message, sender.id)

    assert result.accepted == ("again@example.com", "again-cc@example.com",
                               "again-bcc@example.com")
    received = got(server)[0]
    assert received.rcpt_tos == list(result.accepted)
    head = header_block(received.data)
    assert b"Resent-To: again@example.com" in head
    assert b"To: original@example.com" in head  # the original fields stay as they were
    assert b"Resent-Bcc" not in head and b"again-bcc" not in received.data
    assert b"original-bcc" not in received.data and b"\r\nBcc:" not in head


def test_several_resent_blocks_fail_that_message_alone(service, scripted_server):
    server = scripted_server()
    sender = add(service, server)
    twice = note("original@example.com")
    resent(twice, "first@example.com")
    twice["Resent-Date"] = "Thu, 03 Dec 2026 11:00:00 +0000"
    twice["Resent-To"] = "second@example.com"

    results = service.mailer.send_many([note("a@example.com"), twice, note("b@example.com")],
                                       sender.id)

    assert [result.ok for result in results] == [True, False, True]
    error = results[1].error
    assert isinstance(error, InvalidSenderData) and "Resent-" in str(error)
    assert sorted(m.rcpt_tos for m in got(server)) == [["a@example.com"], ["b@example.com"]]


# -- 5. international addresses in headers ---------------------------------------------------


def test_idn_domains_go_into_headers_as_a_labels(service, scripted_server):
    server = scripted_server()
    sender = add(service, server, from_address="noreply@b\u00fccher.example",
                 reply_to_name="J\u00f6rg", reply_to_address="help@m\u00fcnchen.example")
    message = note("J\u00f6rg M\u00fcller <j@m\u00fcnchen.example>",
                   Cc="plain@example.com, x@\u00e9xample.example")

    result = service.mailer.send(message, sender.id)

    assert result.accepted == ("j@xn--mnchen-3ya.example", "plain@example.com",
                               "x@xn--xample-9ua.example")
    received = got(server)[0]
    head = header_block(received.data)
    assert head.isascii()
    assert ENCODED_WORD_IN_ADDRESS.search(head) is None, head
    assert b"<j@xn--mnchen-3ya.example>" in head
    assert b"Cc: plain@example.com, x@xn--xample-9ua.example" in head
    assert b"From: Acme <noreply@xn--bcher-kva.example>" in head
    assert b"<help@xn--mnchen-3ya.example>" in head
    parsed = received.message
    assert parsed["To"].addresses[0].display_name == "J\u00f6rg M\u00fcller"  # RFC 2047 phrase
    assert mail_lines(server) == [b"mail FROM:<noreply@xn--bcher-kva.example>\r\n"]


@pytest.mark.parametrize("domain", [ZWNJ_DOMAIN, ZWJ_DOMAIN, "XN--MNCHEN-3YA.Example"])
def test_a_labels_given_are_sent_exactly_as_given(service, scripted_server, domain):
    server = scripted_server()
    sender = add(service, server)
    message = note(f"Someone <someone@{domain}>")
    result = service.mailer.send(message, sender.id)
    assert result.accepted == (f"someone@{domain}",)
    assert rcpt_lines(server) == [f"rcpt TO:<someone@{domain}>\r\n".encode()]
    assert f"To: Someone <someone@{domain}>\r\n".encode() in got(server)[0].data


def test_a_non_ascii_local_part_is_refused_without_the_setting(service, scripted_server):
    server = scripted_server(smtputf8=True)
    sender = add(service, server)
    results = service.mailer.send_many([note("j\u00f6rg@example.com"), note()], sender.id)
    assert [result.ok for result in results] == [False, True]
    assert isinstance(results[0].error, InvalidSenderData)
    assert "SMTP_SENDERS_SMTPUTF8" in str(results[0].error)
    assert len(server.messages) == 1


# -- 6. SMTPUTF8 (RFC 6531), opt-in -----------------------------------------------------------


@pytest.fixture
def utf8_app(make_app, host):
    return make_app(plugins=[host], SMTP_SENDERS_SMTPUTF8=True)


@pytest.fixture
def utf8_service(utf8_app):
    from flask_smtp_senders.extension import get_service

    with utf8_app.app_context():
        yield get_service(utf8_app)


def test_smtputf8_is_used_when_the_server_offers_it(utf8_service, scripted_server):
    server = scripted_server(smtputf8=True)
    sender = add(utf8_service, server)
    result = utf8_service.mailer.send(note("J\u00f6rg <j\u00f6rg@example.com>"), sender.id)
    assert result.accepted == ("j\u00f6rg@example.com",)
    # UTF-8 headers are 8-bit octets: SMTPUTF8 comes with BODY=8BITMIME (RFC 6531 §3.4)
    assert mail_lines(server) == [
        b"mail FROM:<noreply@example.com> SMTPUTF8 BODY=8BITMIME\r\n"]
    assert rcpt_lines(server) == ["rcpt TO:<j\u00f6rg@example.com>\r\n".encode()]
    head = header_block(got(server)[0].data)
    assert "To: J\u00f6rg <j\u00f6rg@example.com>".encode() in head  # UTF-8, RFC 6532
    assert b"=?" not in head


def test_without_smtputf8_that_message_fails_and_the_others_go_on(utf8_service,
                                                                    scripted_server):
    server = scripted_server(smtputf8=False)
    sender = add(utf8_service, server)
    results = utf8_service.mailer.send_many(
        [note("a@example.com"), note("j\u00f6rg@example.com"), note("b@example.com")],
        sender.id)
    assert [result.ok for result in results] == [True, False, True]
    error = results[1].error
    assert isinstance(error, DeliveryError) and "SMTPUTF8" in error.user_message
    assert sorted(m.rcpt_tos for m in got(server)) == [["a@example.com"], ["b@example.com"]]
    assert not any("j\u00f6rg".encode() in line for line in server.wire)


def test_a_from_address_with_a_non_ascii_local_part(utf8_service, scripted_server):
    server = scripted_server(smtputf8=True)
    sender = add(utf8_service, server, from_address="b\u00fcro@example.com")
    assert utf8_service.mailer.send(note(), sender.id).ok
    assert mail_lines(server) == [
        "mail FROM:<b\u00fcro@example.com> SMTPUTF8 BODY=8BITMIME\r\n".encode()]
    assert "From: Acme <b\u00fcro@example.com>".encode() in got(server)[0].data


def test_send_test_email_to_a_non_ascii_recipient(utf8_service, scripted_server):
    with_utf8 = scripted_server(smtputf8=True)
    sender = add(utf8_service, with_utf8)
    result = utf8_service.send_test_email(sender.id, "j\u00f6rg@example.com")
    assert result.ok, result.message
    assert mail_lines(with_utf8)[0].endswith(b" SMTPUTF8 BODY=8BITMIME\r\n")

    without = scripted_server(smtputf8=False)
    other = add(utf8_service, without)
    failed = utf8_service.send_test_email(other.id, "j\u00f6rg@example.com")
    assert not failed.ok and "SMTPUTF8" in failed.message
    stages = {stage.name: dict(stage.facts) for stage in failed.diagnosis.stages}
    assert stages["ehlo"]["SMTPUTF8"] == "no" and "SMTPUTF8" in stages["mail"]["Problem"]
    assert mail_lines(without) == [] and without.messages == []


# -- 7. 8-bit bodies (RFC 6152) ------------------------------------------------------------


def test_an_8bit_body_is_declared_when_the_server_offers_8bitmime(service, scripted_server):
    server = scripted_server()
    sender = add(service, server)
    assert service.mailer.send(note(body="Gr\u00fc\u00dfe aus M\u00fcnchen\n"), sender.id).ok
    assert mail_lines(server) == [b"mail FROM:<noreply@example.com> BODY=8BITMIME\r\n"]
    data = got(server)[0].data
    assert "Gr\u00fc\u00dfe".encode() in data
    assert b"Content-Transfer-Encoding: 8bit" in data


def test_an_ascii_body_declares_nothing(service, scripted_server):
    server = scripted_server()
    sender = add(service, server)
    assert service.mailer.send(note(), sender.id).ok
    assert mail_lines(server) == [b"mail FROM:<noreply@example.com>\r\n"]


def test_without_8bitmime_the_body_is_re_encoded_to_7bit(service, scripted_server):
    server = scripted_server(ehlo_drop=("8BITMIME",))
    sender = add(service, server)
    message = note(body="Gr\u00fc\u00dfe aus M\u00fcnchen\n")
    message.add_alternative("<p>Gr\u00fc\u00dfe</p>\n", subtype="html")
    message.add_attachment("caf\u00e9\n".encode(), maintype="application",
                           subtype="octet-stream", cte="8bit")
    before = message.as_bytes(policy=SMTP)

    assert service.mailer.send(message, sender.id).ok

    assert mail_lines(server) == [b"mail FROM:<noreply@example.com>\r\n"]
    data = got(server)[0].data
    assert data.isascii(), "raw 8-bit octets went to a server without 8BITMIME"
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    plain, html, attachment = (part for part in parsed.walk() if not part.is_multipart())
    assert plain["Content-Transfer-Encoding"] == "quoted-printable"
    assert text(plain) == "Gr\u00fc\u00dfe aus M\u00fcnchen\n"
    assert text(html) == "<p>Gr\u00fc\u00dfe</p>\n"
    assert attachment["Content-Transfer-Encoding"] == "base64"
    assert attachment.get_content() == "caf\u00e9\n".encode()
    assert message.as_bytes(policy=SMTP) == before


def test_the_test_email_body_is_re_encoded_for_a_7bit_server(make_app, host,
                                                             scripted_server):
    from flask_smtp_senders.extension import get_service

    app = make_app(plugins=[host], SMTP_SENDERS_MSG_TEST_BODY="Gr\u00fc\u00dfe!\n")
    server = scripted_server(ehlo_drop=("8BITMIME",))
    with app.app_context():
        service = get_service(app)
        sender = add(service, server)
        result = service.send_test_email(sender.id, "user@example.com")
    assert result.ok, result.message
    data = got(server)[0].data
    assert data.isascii()
    assert text(email.message_from_bytes(data, policy=email.policy.default)) == (
        "Gr\u00fc\u00dfe!\n")


# -- 8. SMTP_SENDERS_TIMEOUT bounds each message, its connect included -------------------------


def test_a_slow_server_fails_the_message_at_the_deadline(make_app, host, scripted_server):
    """Every reply 0.4 s late: connecting (greeting, EHLO, AUTH) takes 1.2 s and the
    message (MAIL, RCPT, DATA, body) 1.6 s more; each alone fits in 2 s, together not."""
    from flask_smtp_senders.extension import get_service

    app = make_app(plugins=[host], SMTP_SENDERS_TIMEOUT=2.0,
                   SMTP_SENDERS_OPERATION_TIMEOUT=2.0)
    server = scripted_server(reply_delay=0.4)
    with app.app_context():
        service = get_service(app)
        sender = add(service, server)
        started = time.monotonic()
        result = service.mailer.send_many([note()], sender.id)[0]
        elapsed = time.monotonic() - started
    assert isinstance(result.error, DeliveryError) and result.error.stage == "timeout"
    assert elapsed < 2.0 + 0.6, f"failed after {elapsed:.2f} s, past the 2 s deadline"
    assert server.messages == []
