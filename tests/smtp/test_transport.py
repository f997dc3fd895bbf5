"""Send Test Email against real SMTP servers on loopback: the port rule, verified TLS,
credentials only over encryption, exact contract messages, and time limits that hold."""

from __future__ import annotations

import email.policy
import logging
import time

import pytest

from flask_smtp_senders import SenderSettings, hookimpl
from flask_smtp_senders.settings import DEFAULTS
from tests.support.smtp_servers import LOOPBACK, SERVER_NAME

#: Transport behaviour does not depend on the database: SQLite is enough here.
pytestmark = pytest.mark.sqlite_only

SUCCESS = "A test message was successfully sent to {}."
AUTH_FAILED = ("Using the credentials you provided, we couldn't authenticate with your "
               "email server.")
TLS_FAILED = DEFAULTS["SMTP_SENDERS_MSG_TLS_FAILED"]
RECIPIENT = "some.body@acme.example.com"


class Routes:
    """Host plugin standing in for DNS: the test server name points at a loopback server."""

    def __init__(self) -> None:
        self.table: dict[str, list[str]] = {}

    @hookimpl
    def smtp_senders_resolve(self, server_name, port):
        return self.table.get(server_name, [])


@pytest.fixture
def routes() -> Routes:
    return Routes()


@pytest.fixture
def app(make_app, routes):
    return make_app(plugins=[routes])


@pytest.fixture
def add_sender(service, routes):
    """Save a sender pointing at ``server`` under the test server name."""

    def add(server, *, password="s3cret", username="alice", **fields):
        routes.table[SERVER_NAME] = [server.host]
        settings = {"username": username, "server_name": SERVER_NAME, "port": server.port,
                    "from_name": "Acme Notifications", "from_address": "noreply@example.com",
                    **fields}
        return service.create_sender(SenderSettings(**settings), password)

    return add


def assert_nothing_sensitive_reached(server):
    assert server.auth_attempts == []
    assert server.mail_from_seen == []
    assert server.messages == []


@pytest.mark.parametrize("mode, port", [("starttls", 587), ("implicit", None)])
def test_success_sends_exactly_one_well_formed_message(service, smtp_server, add_sender,
                                                       mode, port):
    server = smtp_server(mode, port=port)
    sender = add_sender(server, reply_to_name="Acme Support",
                        reply_to_address="support@example.com")

    result = service.send_test_email(sender.id, RECIPIENT)

    assert result.ok and result.stage is None
    assert result.message == SUCCESS.format(RECIPIENT)
    assert len(server.messages) == 1
    received = server.messages[0]
    assert received.tls and received.username == "alice"
    assert received.mail_from == "noreply@example.com"
    assert received.rcpt_tos == [RECIPIENT]
    message = received.message
    assert message["From"] == "Acme Notifications <noreply@example.com>"
    assert message["Reply-To"] == "Acme Support <support@example.com>"
    assert message["To"] == RECIPIENT
    assert message["Subject"] == DEFAULTS["SMTP_SENDERS_MSG_TEST_SUBJECT"]
    assert message["Date"] is not None
    assert message["Message-ID"].endswith("@example.com>")
    assert b"\r\n" in received.data and b"\n" not in received.data.replace(b"\r\n", b"")
    assert [attempt.succeeded for attempt in server.auth_attempts] == [True]
    stored = service.get_sender(sender.id)
    assert stored.last_test_ok is True and stored.last_test_at is not None
    assert stored.version == sender.version


def test_reply_to_is_only_set_when_configured(service, smtp_server, add_sender):
    server = smtp_server("implicit")
    sender = add_sender(server)
    assert service.send_test_email(sender.id, RECIPIENT).ok
    assert "Reply-To" not in server.messages[0].message


def test_wrong_password_gives_the_exact_contract_message(service, smtp_server, add_sender):
    server = smtp_server("implicit")
    sender = add_sender(server, password="wrong-password")

    result = service.send_test_email(sender.id, RECIPIENT)

    assert not result.ok
    assert result.message == AUTH_FAILED
    assert result.stage == "auth"
    assert server.messages == [] and server.mail_from_seen == []
    assert len(server.auth_attempts) == 1  # no retry of the same password with LOGIN
    assert service.get_sender(sender.id).last_test_ok is False


@pytest.mark.parametrize("cert", ["unknown_ca", "wrong_host", "expired"])
@pytest.mark.parametrize("mode, port", [("starttls", 587), ("implicit", None)])
def test_untrusted_certificate_fails_before_any_credential(service, smtp_server, add_sender,
                                                           cert, mode, port):
    server = smtp_server(mode, port=port, cert=cert)
    sender = add_sender(server)

    result = service.send_test_email(sender.id, RECIPIENT)

    assert (result.ok, result.stage, result.message) == (False, "tls", TLS_FAILED)
    assert_nothing_sensitive_reached(server)


@pytest.mark.parametrize("port", [25, 587, 2525])
def test_starttls_port_without_starttls_never_sends_credentials(service, smtp_server,
                                                                add_sender, port):
    server = smtp_server("plain", port=port)
    sender = add_sender(server)

    result = service.send_test_email(sender.id, RECIPIENT)

    assert (result.ok, result.stage, result.message) == (False, "tls", TLS_FAILED)
    assert_nothing_sensitive_reached(server)
    assert [c.verb for c in server.commands if c.verb in {"AUTH", "MAIL", "RCPT"}] == []


def test_refused_starttls_fails_without_fallback(service, smtp_server, add_sender):
    server = smtp_server("starttls_refused", port=587)
    sender = add_sender(server)

    result = service.send_test_email(sender.id, RECIPIENT)

    assert (result.ok, result.stage) == (False, "tls")
    assert_nothing_sensitive_reached(server)


def test_smtps_port_pointed_at_a_plaintext_server_fails(service, smtp_server, add_sender):
    server = smtp_server("plain")
    sender = add_sender(server)

    result = service.send_test_email(sender.id, RECIPIENT)

    assert (result.ok, result.stage, result.message) == (False, "tls", TLS_FAILED)
    assert_nothing_sensitive_reached(server)


def test_starttls_port_pointed_at_an_implicit_tls_server_fails(service, smtp_server,
                                                               add_sender):
    """Port 2525 means STARTTLS: an implicit-TLS server there must fail, not be adopted."""
    server = smtp_server("implicit", port=2525)
    sender = add_sender(server)

    started = time.monotonic()
    result = service.send_test_email(sender.id, RECIPIENT)

    assert not result.ok and result.stage == "timeout"
    assert time.monotonic() - started < DEFAULTS["SMTP_SENDERS_TIMEOUT"]
    assert_nothing_sensitive_reached(server)


def test_closed_port_fails_in_well_under_a_second(service, add_sender, closed_port):
    class Closed:
        host, port = LOOPBACK, closed_port

    sender = add_sender(Closed)
    started = time.monotonic()
    result = service.send_test_email(sender.id, RECIPIENT)
    elapsed = time.monotonic() - started

    assert (result.ok, result.stage) == (False, "connect")
    assert result.message == DEFAULTS["SMTP_SENDERS_MSG_CONNECT_FAILED"]
    assert elapsed < 0.5, elapsed


def test_server_that_never_greets_fails_at_the_operation_timeout(service, add_sender,
                                                                  silent_server):
    sender = add_sender(silent_server)  # the app's operation timeout is 2 s
    started = time.monotonic()
    result = service.send_test_email(sender.id, RECIPIENT)
    elapsed = time.monotonic() - started

    assert (result.ok, result.stage) == (False, "timeout")
    assert result.message == DEFAULTS["SMTP_SENDERS_MSG_TIMEOUT"]
    assert 1.9 <= elapsed < 3.0, elapsed


def timed_test_email(make_app, routes, server, **config):
    """Send a test email through ``server`` from an app with ``config``; (result, seconds)."""
    app = make_app(plugins=[routes], **config)
    routes.table[SERVER_NAME] = [server.host]
    with app.app_context():
        service = app.extensions["smtp_senders"]
        sender = service.create_sender(SenderSettings(
            username="alice", server_name=SERVER_NAME, port=server.port,
            from_address="noreply@example.com"), "s3cret")
        started = time.monotonic()
        result = service.send_test_email(sender.id, RECIPIENT)
        return result, time.monotonic() - started


@pytest.mark.parametrize("drip_server", [2525], indirect=True)  # STARTTLS: plain greeting
def test_drip_server_fails_at_the_overall_deadline(make_app, routes, drip_server):
    """Each byte arrives well inside the 2 s operation timeout; only the 3 s deadline
    can stop the exchange."""
    result, elapsed = timed_test_email(make_app, routes, drip_server, SMTP_SENDERS_TIMEOUT=3.0)

    assert (result.ok, result.stage) == (False, "timeout")
    assert 2.9 <= elapsed < 3.6, elapsed


def test_server_hanging_after_data_fails_by_the_deadline(make_app, routes, smtp_server):
    server = smtp_server("implicit", hang_after_data=6.0)
    result, elapsed = timed_test_email(make_app, routes, server,
                                       SMTP_SENDERS_OPERATION_TIMEOUT=1.0,
                                       SMTP_SENDERS_TIMEOUT=2.0)

    assert (result.ok, result.stage) == (False, "timeout")
    assert elapsed < 2.5, elapsed


def test_refused_recipient_is_a_failure_naming_the_recipient_problem(service, smtp_server,
                                                                     add_sender):
    server = smtp_server("implicit", refuse_rcpt=[RECIPIENT])
    sender = add_sender(server)

    result = service.send_test_email(sender.id, RECIPIENT)

    assert (result.ok, result.stage) == (False, "recipient")
    assert result.message == DEFAULTS["SMTP_SENDERS_MSG_RECIPIENT_REFUSED"]
    assert server.messages == []


def test_refused_sender_is_a_failure_and_the_envelope_used_the_from_address(
        service, smtp_server, add_sender):
    server = smtp_server("implicit", refuse_mail=["noreply@example.com"])
    sender = add_sender(server)

    result = service.send_test_email(sender.id, RECIPIENT)

    assert (result.ok, result.stage) == (False, "sender")
    assert result.message == DEFAULTS["SMTP_SENDERS_MSG_SENDER_REFUSED"]
    assert server.mail_from_seen == ["noreply@example.com"]


def test_server_without_auth_is_refused_rather_than_used_unauthenticated(
        service, smtp_server, add_sender):
    server = smtp_server("implicit", auth=False)
    sender = add_sender(server)

    result = service.send_test_email(sender.id, RECIPIENT)

    assert (result.ok, result.stage, result.message) == (False, "auth", AUTH_FAILED)
    assert server.mail_from_seen == [] and server.messages == []


def test_password_with_special_and_unicode_characters_authenticates(service, smtp_server,
                                                                    add_sender):
    password = "p#;'\"\\ünï©ødé " + "x" * 180
    server = smtp_server("starttls", port=587, users={"bob": password})
    sender = add_sender(server, username="bob", password=password)

    assert service.send_test_email(sender.id, RECIPIENT).ok
    assert [(a.username, a.succeeded) for a in server.auth_attempts] == [("bob", True)]


def test_unicode_names_are_encoded_and_idn_domains_punycoded(service, smtp_server,
                                                             add_sender):
    server = smtp_server("implicit")
    sender = add_sender(server, from_name="Chère équipe")

    result = service.send_test_email(sender.id, "to@漢字.example.com")

    assert result.ok
    received = server.messages[0]
    assert received.rcpt_tos == ["to@xn--p8s937b.example.com"]
    assert b"=?utf-8?" in received.data.split(b"\r\n\r\n")[0]
    parsed = email.message_from_bytes(received.data, policy=email.policy.default)
    assert parsed["From"].addresses[0].display_name == "Chère équipe"


def test_unresolvable_server_name_fails_at_resolve(service, smtp_server, add_sender, routes):
    server = smtp_server("implicit")
    sender = add_sender(server)
    routes.table.clear()

    result = service.send_test_email(sender.id, RECIPIENT)

    assert (result.ok, result.stage) == (False, "resolve")
    assert result.message == DEFAULTS["SMTP_SENDERS_MSG_RESOLVE_FAILED"]
    assert server.connections == 0


def test_failure_logs_details_but_never_the_password(service, smtp_server, add_sender,
                                                     caplog):
    server = smtp_server("implicit")
    sender = add_sender(server, password="Distinctive-Pa55word")
    caplog.set_level(logging.DEBUG)

    result = service.send_test_email(sender.id, RECIPIENT)

    assert result.message == AUTH_FAILED
    assert "535" in caplog.text  # the server's reply went to the log...
    assert "Distinctive-Pa55word" not in caplog.text  # ...the password did not
    assert "Distinctive-Pa55word" not in result.message
