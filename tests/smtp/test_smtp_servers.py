"""Self-check of tests/support/smtp_servers.py, driven by plain stdlib smtplib.

Why: the extension's tests trust these servers to tell the truth about TLS, credentials
and bytes on the wire; these tests prove that truth with a client we did not write.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import threading
import time

import pytest

from tests.support.smtp_servers import DRIP_GREETING, LOOPBACK, AuthAttempt, SeenCommand

pytest_plugins = ["tests.support.smtp_servers"]

SENDER = "portal@example.org"
RCPT = "carol@example.org"
# CRLF line ends and a leading dot (dot-stuffed on the wire) must come back unchanged.
RAW = (
    b"From: Portal <portal@example.org>\r\n"
    b"To: carol@example.org\r\n"
    b"Subject: Quarterly report\r\n"
    b"\r\n"
    b"Hello Carol,\r\n"
    b".leading dot survives\r\n"
)


def test_starttls_accepts_alice_and_keeps_crlf(smtp_server, tls_material):
    server = smtp_server("starttls")
    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        assert not client.has_extn("auth")  # never offered in clear
        client.starttls(context=tls_material.client_context())
        client.ehlo()
        assert client.has_extn("auth")
        client.login("alice", "s3cret")
        assert client.sendmail(SENDER, [RCPT], RAW) == {}

    assert server.auth_attempts == [("PLAIN", "alice", True)]
    assert [m.data for m in server.messages] == [RAW]
    msg = server.messages[0]
    assert (msg.mail_from, msg.rcpt_tos, msg.tls, msg.username) == (
        SENDER,
        [RCPT],
        True,
        "alice",
    )
    assert msg.message["Subject"] == "Quarterly report"
    assert server.tls_seen and not server.cleartext_seen
    assert server.connections == 1


def test_starttls_server_refuses_but_records_mail_before_tls(smtp_server):
    server = smtp_server("starttls")
    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        client.ehlo()
        assert client.mail(SENDER) == (530, b"Must issue a STARTTLS command first")
        code, _ = client.docmd("AUTH", "PLAIN AGFsaWNlAHMzY3JldA==")  # \0alice\0s3cret
        assert code == 530

    assert server.mail_from_seen == [SENDER]
    assert server.auth_attempts == [AuthAttempt("PLAIN", "alice", False)]
    assert server.cleartext_seen and not server.tls_seen
    assert server.messages == []


def test_implicit_tls_accepts_alice(smtp_server, tls_material):
    server = smtp_server("implicit")
    with smtplib.SMTP_SSL(
        server.host, server.port, context=tls_material.client_context(), timeout=5
    ) as client:
        client.ehlo()
        assert not client.has_extn("starttls")
        client.login("alice", "s3cret")
        client.sendmail(SENDER, [RCPT], RAW)

    assert server.auth_attempts == [("PLAIN", "alice", True)]
    assert [(m.data, m.tls) for m in server.messages] == [(RAW, True)]
    assert server.commands[1:] == [
        SeenCommand("AUTH", "PLAIN", True),
        SeenCommand("MAIL", SENDER, True),
        SeenCommand("RCPT", RCPT, True),
        SeenCommand("DATA", "", True),
        SeenCommand("QUIT", "", True),
    ]


def test_wrong_password_is_recorded_as_failed_attempt(smtp_server, tls_material):
    server = smtp_server("implicit")
    with smtplib.SMTP_SSL(
        server.host, server.port, context=tls_material.client_context(), timeout=5
    ) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as info:
            client.login("alice", "wrong")
        assert info.value.smtp_code == 535
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:  # AUTH still required
            client.sendmail(SENDER, [RCPT], RAW)
        assert refused.value.smtp_code == 530
        client.user, client.password = "alice", "s3cret"
        client.auth("LOGIN", client.auth_login)

    # smtplib.login() falls back from PLAIN to LOGIN on 535; the server saw both tries.
    assert server.auth_attempts == [
        ("PLAIN", "alice", False),
        ("LOGIN", "alice", False),
        ("LOGIN", "alice", True),
    ]
    assert server.messages == []


def test_plain_server_records_auth_sent_in_clear(smtp_server):
    server = smtp_server("plain")
    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        client.ehlo()
        assert not client.has_extn("starttls")
        assert client.has_extn("auth")
        client.login("alice", "s3cret")
        client.sendmail(SENDER, [RCPT], RAW)

    assert server.auth_attempts == [("PLAIN", "alice", True)]
    assert server.cleartext_seen and not server.tls_seen
    assert [(m.data, m.tls) for m in server.messages] == [(RAW, False)]


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (None, (454, b"4.7.0 TLS not available")),
        ((421, "4.3.0 Try later"), (421, b"4.3.0 Try later")),
    ],
)
def test_starttls_refused_answers_configured_reply(smtp_server, reply, expected):
    server = smtp_server("starttls_refused", starttls_reply=reply)
    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        client.ehlo()
        assert client.has_extn("starttls") and client.has_extn("auth")
        assert client.docmd("STARTTLS") == expected

    assert server.verbs == ["EHLO", "STARTTLS", "QUIT"]
    assert server.auth_attempts == [] and server.mail_from_seen == []


def test_refused_recipient_and_sender(smtp_server):
    server = smtp_server(
        "plain", auth=False, refuse_rcpt=["ghost@example.org"], refuse_mail=["spam@example.org"]
    )
    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        client.ehlo()
        assert not client.has_extn("auth")
        refused = client.sendmail(SENDER, [RCPT, "ghost@example.org"], RAW)
        assert refused == {"ghost@example.org": (550, b"5.1.1 No such user")}
        with pytest.raises(smtplib.SMTPSenderRefused) as info:
            client.sendmail("spam@example.org", [RCPT], RAW)
        assert (info.value.smtp_code, info.value.smtp_error) == (553, b"5.7.1 Sender not allowed")

    assert server.mail_from_seen == [SENDER, "spam@example.org"]
    assert server.rcpt_seen == [RCPT, "ghost@example.org"]
    assert [m.rcpt_tos for m in server.messages] == [[RCPT]]


@pytest.mark.parametrize(
    ("cert", "reason"),
    [
        ("unknown_ca", "unable to get local issuer certificate"),
        ("wrong_host", "IP address mismatch"),
        ("expired", "certificate has expired"),
    ],
)
def test_bad_certificates_fail_verification(smtp_server, tls_material, cert, reason):
    server = smtp_server("starttls", cert=cert)
    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        client.ehlo()
        with pytest.raises(ssl.SSLCertVerificationError, match=reason):
            client.starttls(context=tls_material.client_context())

    assert server.auth_attempts == [] and server.mail_from_seen == []


def test_hanging_data_times_out_client_and_stop_is_prompt(smtp_server):
    server = smtp_server("plain", auth=False, hang_after_data=30)
    client = smtplib.SMTP(server.host, server.port, timeout=5)
    client.ehlo()
    client.mail(SENDER)
    client.rcpt(RCPT)
    client.sock.settimeout(0.3)
    try:
        with pytest.raises(smtplib.SMTPServerDisconnected, match="timed out"):
            client.data(RAW)
        # The first client gave up; a second one sits in DATA while the server stops.
        waiting = smtplib.SMTP(server.host, server.port, timeout=5)
        waiting.ehlo()
        waiting.mail(SENDER)
        waiting.rcpt(RCPT)
        outcome: list[object] = []
        thread = threading.Thread(target=lambda: outcome.append(_data_or_error(waiting, RAW)))
        thread.start()
        time.sleep(0.2)
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 2.0
        thread.join(2.0)
        assert isinstance(outcome[0], smtplib.SMTPServerDisconnected)
        waiting.close()
    finally:
        client.close()
    assert server.messages == []


def _data_or_error(client: smtplib.SMTP, raw: bytes) -> object:
    try:
        return client.data(raw)
    except smtplib.SMTPException as exc:
        return exc


def test_fixed_port_can_be_reused_by_consecutive_servers(smtp_server):
    """The port rule makes some tests need e.g. 2525; TIME_WAIT must not block a rebind."""
    for _ in range(2):
        server = smtp_server("plain", auth=False, port=2525)
        assert server.port == 2525
        with smtplib.SMTP(server.host, server.port, timeout=5) as client:
            assert client.noop()[0] == 250
        server.stop()  # server side closes first, leaving TIME_WAIT on 2525


def test_closed_port_refuses(closed_port):
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((LOOPBACK, closed_port), timeout=1).close()


@pytest.mark.parametrize("silent_server", [None, 2525], indirect=True)
def test_silent_server_accepts_but_never_greets(silent_server, request):
    if request.node.callspec.params["silent_server"]:
        assert silent_server.port == 2525
    started = time.monotonic()
    with pytest.raises((TimeoutError, smtplib.SMTPServerDisconnected)):
        smtplib.SMTP(silent_server.host, silent_server.port, timeout=0.3)
    assert time.monotonic() - started < 2.0
    assert silent_server.wait_for_connections(1)


def test_drip_server_sends_one_byte_per_half_second(drip_server):
    with socket.create_connection((drip_server.host, drip_server.port), timeout=1.0) as sock:
        started = time.monotonic()
        received = b"".join(sock.recv(1) for _ in range(3))  # each recv beats the 1 s timeout
        elapsed = time.monotonic() - started
    assert received == DRIP_GREETING[:3]
    assert 0.8 < elapsed < 3.0  # paced, yet no single recv hit the 1 s timeout
    assert drip_server.connections == 1
