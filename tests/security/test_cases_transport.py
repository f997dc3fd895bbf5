"""Security cases A (on the wire) and B: transport faults, against real SMTP and TCP servers
on loopback (aiosmtpd with trustme certificates, tests/support/smtp_servers.py).

The database plays no part here, so SQLite only. After every test, no form of the password
(literal, escaped or the base64 AUTH carries) may be in the app's log records at DEBUG.
"""

from __future__ import annotations

import dataclasses
import datetime
import email.utils
import logging
import re
import threading
import time

import pytest

from flask_smtp_senders import SenderSettings, get_service
from flask_smtp_senders.events import TestEmailFailed, TestEmailSent
from tests.support.cases import (
    CASE_CONFIG,
    PREFIX,
    RECIPIENT,
    Host,
    app_log_text,
    create_via_form,
    leaks,
    msg,
    outcome,
    secret_forms,
    stored_password,
    token_of,
)
from tests.support.smtp_servers import LOOPBACK, SERVER_NAME, RecordingServer, SilentServer

pytestmark = pytest.mark.sqlite_only

PASSWORD = "Case-Transport-Pa55"
USERS = {"alice": PASSWORD}
STAGE_MESSAGES = {"connect": msg("connect_failed"), "tls": msg("tls_failed"),
                  "timeout": msg("timeout"), "auth": msg("auth_failed"),
                  "sender": msg("sender_refused"), "recipient": msg("recipient_refused"),
                  "data": msg("data_failed"), "resolve": msg("resolve_failed")}
#: The short limits of apps that wait on purpose (T: one operation, D: the whole exchange).
QUICK = {"SMTP_SENDERS_OPERATION_TIMEOUT": 0.5, "SMTP_SENDERS_TIMEOUT": 2.0}


@pytest.fixture
def host() -> Host:
    return Host()


@pytest.fixture
def make_case_app(make_app, host):
    return lambda **config: make_app(plugins=[host], **{**CASE_CONFIG, **config})


@pytest.fixture
def app(make_case_app):
    return make_case_app()


@pytest.fixture(autouse=True)
def no_password_in_the_app_log(caplog):
    caplog.set_level(logging.DEBUG)
    yield
    assert not leaks(app_log_text(caplog.records), secret_forms(PASSWORD, "alice"))


def add(service, host, server, *, password=PASSWORD, username="alice", **fields):
    """Save a sender whose Server Name leads to ``server`` (anything with host and port)."""
    host.routes[SERVER_NAME] = [server.host]
    values = {"username": username, "server_name": SERVER_NAME, "port": server.port,
              "from_name": "Acme Notifications", "from_address": "noreply@example.com",
              **fields}
    return service.create_sender(SenderSettings(**values), password)


def timed(service, sender, recipient=RECIPIENT):
    started = time.monotonic()
    result = service.send_test_email(sender.id, recipient)
    return result, time.monotonic() - started


def assert_failed_at(stage, result, service, host, sender):
    """The fixed message of ``stage``, the failure recorded on the sender and audited."""
    assert (result.ok, result.stage, result.message) == (False, stage, STAGE_MESSAGES[stage])
    assert service.get_sender(sender.id).last_test_ok is False
    event = host.events[-1]
    assert isinstance(event, TestEmailFailed)
    assert (event.sender_id, event.stage, event.outcome, event.actor) == (
        sender.id, stage, "failure", "admin@portal")


def assert_no_credentials_or_envelope(server):
    """The server saw no AUTH, no MAIL and no RCPT, and accepted no message."""
    assert server.auth_attempts == [] and server.mail_from_seen == [] and server.rcpt_seen == []
    assert [c.verb for c in server.commands if c.verb in ("AUTH", "MAIL", "RCPT", "DATA")] == []
    assert server.messages == []


class HangUpWatch(SilentServer):
    """Accepts, never greets, and notes when the client hangs up (its worker let go)."""

    def __init__(self, port: int | None = None) -> None:
        super().__init__(port)
        self.hung_up = threading.Event()

    def _serve(self, conn) -> None:
        while not self._stopping.wait(0.02):
            if self._peer_closed(conn):
                self.hung_up.set()
                return


# -- A: input as it reaches the wire ------------------------------------------------------


def test_idn_domains_are_punycoded_in_the_envelope_and_names_rfc2047_encoded(
        service, host, smtp_server):
    """Case A3: an IDN domain in the From Address and the recipient is punycoded in MAIL
    FROM, RCPT TO and the headers (no SMTPUTF8 needed); a non-ASCII From Name and
    Reply-To Name are RFC 2047 encoded; every header byte is ASCII."""
    server = smtp_server("implicit", users=USERS)
    sender = add(service, host, server, from_name="Chère équipe",
                 from_address="noreply@bücher.example", reply_to_name="Søren Åberg",
                 reply_to_address="hilfe@bücher.example")

    result = service.send_test_email(sender.id, "to@漢字.example.com")

    assert result.ok, result
    assert result.message == msg("test_success", recipient="to@漢字.example.com")
    [received] = server.messages
    assert received.mail_from == "noreply@xn--bcher-kva.example"
    assert received.rcpt_tos == ["to@xn--p8s937b.example.com"]
    head = received.data.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    assert re.search(rb"^From: =\?utf-8\?[qb]\?.+<noreply@xn--bcher-kva\.example>\r?$", head,
                     re.MULTILINE | re.IGNORECASE), head
    message = received.message
    assert message["From"].addresses[0].display_name == "Chère équipe"
    assert message["Reply-To"].addresses[0].display_name == "Søren Åberg"
    assert message["Reply-To"].addresses[0].addr_spec == "hilfe@xn--bcher-kva.example"
    assert message["To"] == "to@xn--p8s937b.example.com"
    assert message["Message-ID"].endswith("@xn--bcher-kva.example>")


@pytest.mark.parametrize("separator", ["\x85", "\u2028", "\u2029"])
def test_unicode_line_separators_in_a_name_never_split_a_header(service, host, smtp_server,
                                                                separator):
    """Case A1: NEL, LINE SEPARATOR and PARAGRAPH SEPARATOR (str.splitlines() breaks on
    them) in From Name and Reply-To Name are refused, or sent encoded: one From header,
    no injected header, no extra recipient."""
    server = smtp_server("implicit", users=USERS)
    name = f"Acme{separator}Bcc: victim@evil.example"
    try:
        sender = add(service, host, server, from_name=name, reply_to_name=name,
                     reply_to_address="support@example.com")
    except ValueError:
        return  # refused at save: as good as encoded
    assert service.send_test_email(sender.id, RECIPIENT).ok
    [received] = server.messages
    assert received.rcpt_tos == [RECIPIENT]
    head = received.data.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    assert re.findall(rb"^([A-Za-z-]+):", head, re.MULTILINE).count(b"From") == 1
    assert not re.search(rb"^Bcc:", head, re.MULTILINE | re.IGNORECASE)
    assert received.message["From"].addresses[0].display_name == name


@pytest.mark.parametrize("port", [25, 587, 2525])
def test_starttls_ports_upgrade_before_credentials_against_a_starttls_server(
        service, host, smtp_server, port):
    """Case A5: ports 25, 587 and 2525 speak SMTP with STARTTLS: EHLO and STARTTLS in clear,
    then everything else (AUTH, MAIL, RCPT, DATA) encrypted."""
    server = smtp_server("starttls", port=port, users=USERS)
    sender = add(service, host, server)

    assert service.send_test_email(sender.id, RECIPIENT).ok
    seen = [(c.verb, c.tls) for c in server.commands]
    assert seen[:3] == [("EHLO", False), ("STARTTLS", False), ("EHLO", True)]
    assert all(tls for verb, tls in seen[3:]), seen
    assert server.messages[0].tls and server.auth_attempts[0].succeeded


@pytest.mark.parametrize("port", [465, 2465, 8025, 1])
def test_other_ports_use_implicit_tls_against_an_implicit_tls_server(service, host,
                                                                     smtp_server, port):
    """Case A5: ports 465, 2465, 8025 and 1 use SMTPS: TLS from the first byte, never a
    STARTTLS command."""
    server = smtp_server("implicit", port=port, users=USERS)
    sender = add(service, host, server)

    assert service.send_test_email(sender.id, RECIPIENT).ok
    assert server.commands and all(c.tls for c in server.commands)
    assert "STARTTLS" not in server.verbs
    assert server.messages[0].tls


def test_implicit_tls_server_on_port_2525_fails_and_is_never_adopted(make_case_app, host,
                                                                      smtp_server):
    """Cases A5, B11: port 2525 means STARTTLS; an implicit-TLS server there makes the send
    fail within the deadline, without falling back to TLS-first, before any credential."""
    server = smtp_server("implicit", port=2525, users=USERS)
    app = make_case_app(**QUICK)
    with app.app_context():
        service = get_service(app)
        sender = add(service, host, server)
        result, elapsed = timed(service, sender)
        assert_failed_at("timeout", result, service, host, sender)
    assert elapsed < QUICK["SMTP_SENDERS_TIMEOUT"], elapsed
    assert_no_credentials_or_envelope(server)


def test_starttls_server_on_port_465_fails_at_tls(service, host, smtp_server):
    """Case A5: port 465 means TLS from the first byte; a server that greets in clear
    (expecting STARTTLS) fails the TLS handshake, before any credential."""
    server = smtp_server("starttls", port=465, users=USERS)
    sender = add(service, host, server)
    result = service.send_test_email(sender.id, RECIPIENT)
    assert_failed_at("tls", result, service, host, sender)
    assert_no_credentials_or_envelope(server)


PASSWORDS = [
    "p#;'\"\\ ünï©ødé 漢字 🔑 " + "x" * 180,  # 200 characters
    "  leading and trailing spaces  ",
    "'''triple\"\"\"quoted'''",
    "%s %(name)s {0} ${HOME} `id` $(id) \\x00 \\r\\n",
    "tab\tand\x0bvertical\x0ctab",
    "line\r\nbreak and AUTH PLAIN in the middle",
]


def test_special_and_unicode_passwords_are_stored_and_used_exactly(app, host, smtp_server):
    """Case A8: passwords with #, ;, quotes, backslashes, format strings, whitespace at
    either end, control characters, unicode and 200 characters, typed in the form, are
    stored exactly and authenticate against the server."""
    assert len(PASSWORDS[0]) == 200
    users = {f"user{n}": password for n, password in enumerate(PASSWORDS)}
    server = smtp_server("implicit", users=users)
    host.routes[SERVER_NAME] = [server.host]
    client = app.test_client()
    for n, password in enumerate(PASSWORDS):
        created = create_via_form(client, username=f"user{n}", password=password,
                                  server_name=SERVER_NAME, port=str(server.port))
        assert created.status_code == 302, (password, created.status_code)
        sender_id = int(created.location.rsplit("/", 1)[1])
        assert stored_password(app, sender_id) == password
        answer = client.post(f"{PREFIX}/{sender_id}/test",
                             data={"csrf_token": token_of(client), "recipient": RECIPIENT},
                             headers={"Accept": "application/json"})
        assert outcome(answer) == {"ok": True, "message": msg("test_success", recipient=RECIPIENT)}
        attempt = server.auth_attempts[-1]
        assert (attempt.username, attempt.succeeded) == (f"user{n}", True), password
    assert len(server.messages) == len(PASSWORDS)


# -- B: transport faults --------------------------------------------------------------------


def test_closed_port_fails_in_under_a_second_with_the_connect_message(service, host,
                                                                       closed_port):
    """Case B1: nothing listens: the test email fails at once with the fixed "couldn't
    connect" message, and the audit trail records the failure."""

    class Closed:
        host, port = LOOPBACK, closed_port

    sender = add(service, host, Closed)
    result, elapsed = timed(service, sender)
    assert_failed_at("connect", result, service, host, sender)
    assert elapsed < 1.0, elapsed


def test_server_that_never_greets_fails_at_the_operation_timeout_and_lets_go(
        make_case_app, host):
    """Case B2: a server that accepts and never greets fails at the operation timeout T
    (not the deadline D), and the connection is closed: the worker is free."""
    app = make_case_app(SMTP_SENDERS_OPERATION_TIMEOUT=0.5, SMTP_SENDERS_TIMEOUT=5.0)
    with HangUpWatch() as server, app.app_context():
        service = get_service(app)
        sender = add(service, host, server)
        result, elapsed = timed(service, sender)
        assert_failed_at("timeout", result, service, host, sender)
        assert 0.45 <= elapsed < 1.0, elapsed
        assert server.hung_up.wait(1.0), "the client kept the connection open"


@pytest.mark.parametrize("drip_server", [2525], indirect=True)  # STARTTLS: plain greeting
def test_drip_server_fails_at_the_overall_deadline_not_per_byte(make_case_app, host,
                                                                 drip_server):
    """Case B3: one byte every 0.5 s never trips the 1 s operation timeout; the 2 s
    deadline ends the exchange, on time."""
    app = make_case_app(SMTP_SENDERS_OPERATION_TIMEOUT=1.0, SMTP_SENDERS_TIMEOUT=2.0)
    with app.app_context():
        service = get_service(app)
        sender = add(service, host, drip_server)
        result, elapsed = timed(service, sender)
        assert_failed_at("timeout", result, service, host, sender)
    assert 1.9 <= elapsed < 2.6, elapsed


@pytest.mark.parametrize("cert", ["unknown_ca", "wrong_host", "expired"])
@pytest.mark.parametrize("mode, port", [("starttls", 587), ("implicit", None)])
def test_untrusted_certificate_fails_before_auth_and_mail(service, host, smtp_server, cert,
                                                          mode, port):
    """Cases B5, B6, B7: a certificate from an unknown CA, for another host name, or
    expired, over STARTTLS and implicit TLS: the TLS message, and the server saw no AUTH
    and no MAIL."""
    server = smtp_server(mode, port=port, cert=cert, users=USERS)
    sender = add(service, host, server)
    result = service.send_test_email(sender.id, RECIPIENT)
    assert_failed_at("tls", result, service, host, sender)
    assert_no_credentials_or_envelope(server)


@pytest.mark.parametrize("mode, port", [("starttls", 587), ("implicit", None)])
def test_not_yet_valid_certificate_fails_before_auth_and_mail(service, host, tls_material,
                                                              mode, port):
    """Case B7: a certificate that only becomes valid tomorrow fails like an expired one."""
    now = datetime.datetime.now(datetime.timezone.utc)
    future = tls_material.ca.issue_cert("localhost", LOOPBACK, SERVER_NAME,
                                        not_before=now + datetime.timedelta(days=1),
                                        not_after=now + datetime.timedelta(days=30))
    material = dataclasses.replace(tls_material, good=future)
    with RecordingServer(mode, tls_material=material, users=USERS, port=port) as server:
        sender = add(service, host, server)
        result = service.send_test_email(sender.id, RECIPIENT)
        assert_failed_at("tls", result, service, host, sender)
        assert_no_credentials_or_envelope(server)


@pytest.mark.parametrize("port", [25, 587])
def test_starttls_port_without_starttls_sends_nothing_in_clear(service, host, smtp_server,
                                                               port):
    """Case B8: a server on a STARTTLS port that does not offer STARTTLS (and would take
    AUTH in clear) gets neither AUTH nor MAIL: the send fails at TLS."""
    server = smtp_server("plain", port=port, users=USERS)
    sender = add(service, host, server)
    result = service.send_test_email(sender.id, RECIPIENT)
    assert_failed_at("tls", result, service, host, sender)
    assert_no_credentials_or_envelope(server)
    assert not server.cleartext_seen and "STARTTLS" not in server.verbs


@pytest.mark.parametrize("reply", ["454 4.7.0 TLS not available due to temporary reason",
                                   "500 5.5.1 Command unrecognized"])
def test_starttls_answered_454_or_500_fails_without_falling_back(service, host, smtp_server,
                                                                 reply):
    """Case B9: STARTTLS advertised, then refused: the send fails at TLS and never goes on
    in clear (this server would accept AUTH and MAIL in clear)."""
    server = smtp_server("starttls_refused", port=587, starttls_reply=reply, users=USERS)
    sender = add(service, host, server)
    result = service.send_test_email(sender.id, RECIPIENT)
    assert_failed_at("tls", result, service, host, sender)
    assert_no_credentials_or_envelope(server)
    assert server.verbs.count("STARTTLS") == 1


def test_implicit_tls_port_pointed_at_a_plaintext_server_fails_at_tls(service, host,
                                                                       smtp_server):
    """Case B10: an SMTPS port (a free one) with a server that greets in clear: the TLS
    handshake fails with the TLS message; nothing sensitive is sent."""
    server = smtp_server("plain", users=USERS)
    sender = add(service, host, server)
    result = service.send_test_email(sender.id, RECIPIENT)
    assert_failed_at("tls", result, service, host, sender)
    assert_no_credentials_or_envelope(server)


def test_starttls_port_pointed_at_an_implicit_tls_server_fails_within_the_deadline(
        make_case_app, host, smtp_server):
    """Case B11: port 587 with a TLS-first server: fails within D, nothing sent."""
    server = smtp_server("implicit", port=587, users=USERS)
    app = make_case_app(**QUICK)
    with app.app_context():
        service = get_service(app)
        sender = add(service, host, server)
        result, elapsed = timed(service, sender)
        assert not result.ok and result.message in STAGE_MESSAGES.values()
    assert elapsed < QUICK["SMTP_SENDERS_TIMEOUT"], elapsed
    assert_no_credentials_or_envelope(server)


def test_rejected_credentials_give_the_exact_seed_message(service, host, smtp_server):
    """Case B12: AUTH answered 535: exactly "Using the credentials you provided, we
    couldn't authenticate with your email server.", one attempt, no MAIL."""
    server = smtp_server("implicit", users={"alice": "another-password"})
    sender = add(service, host, server)
    result = service.send_test_email(sender.id, RECIPIENT)
    assert_failed_at("auth", result, service, host, sender)
    assert result.message == ("Using the credentials you provided, we couldn't "
                              "authenticate with your email server.")
    assert [(a.username, a.succeeded) for a in server.auth_attempts] == [("alice", False)]
    assert server.mail_from_seen == [] and server.messages == []


def test_server_without_auth_is_never_used_unauthenticated(service, host, smtp_server):
    """Case B13: the server does not offer AUTH (and would relay without it) while a
    username is set: the send fails at auth and no MAIL is ever sent."""
    server = smtp_server("implicit", auth=False)
    sender = add(service, host, server)
    result = service.send_test_email(sender.id, RECIPIENT)
    assert_failed_at("auth", result, service, host, sender)
    assert "AUTH" not in server.verbs
    assert server.mail_from_seen == [] and server.messages == []


def test_refused_recipient_is_a_failure_naming_the_recipient(service, host, smtp_server):
    """Case B14: 550 at RCPT TO: the recipient message, not success; nothing delivered."""
    server = smtp_server("implicit", users=USERS, refuse_rcpt=[RECIPIENT])
    sender = add(service, host, server)
    result = service.send_test_email(sender.id, RECIPIENT)
    assert_failed_at("recipient", result, service, host, sender)
    assert server.rcpt_seen == [RECIPIENT] and server.messages == []
    assert "DATA" not in server.verbs


def test_refused_sender_is_a_failure_and_mail_from_is_the_from_address(service, host,
                                                                        smtp_server):
    """Case B16: 553 at MAIL FROM: the From Address message; the envelope sender was
    exactly the configured From Address; no RCPT followed."""
    server = smtp_server("implicit", users=USERS, refuse_mail=["noreply@example.com"])
    sender = add(service, host, server)
    result = service.send_test_email(sender.id, RECIPIENT)
    assert_failed_at("sender", result, service, host, sender)
    assert server.mail_from_seen == ["noreply@example.com"]
    assert server.rcpt_seen == [] and server.messages == []


DOTTED_BODY = "First line\n.\n.leading dot\n..two dots\n. dot and space\n.\r\nLast line\n"


def test_success_delivers_one_well_formed_message_with_dot_lines_intact(service, host,
                                                                         smtp_server):
    """Case B20: the exact seed message; per send exactly one message and one RCPT, with
    From, Reply-To only when set, Date, Message-ID, the fixed Subject, CRLF line endings
    only, and body lines starting with "." (one a lone ".") delivered intact."""
    server = smtp_server("implicit", users=USERS)

    def dotted(message, sender, purpose):
        assert purpose == "test"
        message.set_content(DOTTED_BODY)

    host.prepare = dotted
    with_reply = add(service, host, server, reply_to_name="Acme Support",
                     reply_to_address="support@example.com")
    without_reply = add(service, host, server)
    started = datetime.datetime.now(datetime.timezone.utc)

    for sender in (with_reply, without_reply):
        result = service.send_test_email(sender.id, RECIPIENT)
        assert (result.ok, result.stage) == (True, None)
        assert result.message == f"A test message was successfully sent to {RECIPIENT}."
    assert server.rcpt_seen == [RECIPIENT, RECIPIENT]
    assert server.mail_from_seen == ["noreply@example.com"] * 2
    assert len(server.messages) == 2

    for received, reply_to in zip(server.messages, ["Acme Support <support@example.com>",
                                                    None], strict=True):
        data = received.data
        assert b"\n" not in data.replace(b"\r\n", b"") and b"\r" not in data.replace(b"\r\n", b"")
        head, _, body = data.partition(b"\r\n\r\n")
        assert body == DOTTED_BODY.replace("\r\n", "\n").replace("\n", "\r\n").encode()
        message = received.message
        for name in ("From", "To", "Subject", "Date", "Message-ID"):
            assert len(message.get_all(name, [])) == 1, name
        assert message["From"] == "Acme Notifications <noreply@example.com>"
        assert message["To"] == RECIPIENT
        assert message["Subject"] == msg("test_subject")
        assert message.get("Reply-To") == reply_to
        sent_at = email.utils.parsedate_to_datetime(message["Date"])
        assert started - datetime.timedelta(seconds=5) <= sent_at <= (
            datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=5))
        assert re.fullmatch(r"<[^<>@\s]+@example\.com>", message["Message-ID"])
    assert server.messages[0].message["Message-ID"] != server.messages[1].message["Message-ID"]
    sent = [e for e in host.events if isinstance(e, TestEmailSent)]
    assert [(e.sender_id, e.recipient, e.outcome) for e in sent] == [
        (with_reply.id, RECIPIENT, "success"), (without_reply.id, RECIPIENT, "success")]
