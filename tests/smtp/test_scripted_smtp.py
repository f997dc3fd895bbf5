"""The ScriptedServer test helper itself, driven by plain smtplib: its greeting, its
mechanism subsets and what it records are what the wire tests rely on."""

from __future__ import annotations

import base64
import hmac
import smtplib
import socket
import time
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.support.scripted_smtp import ScriptedServer



def client(server: ScriptedServer, tls_material) -> smtplib.SMTP:
    """smtplib talking to ``server``: SMTPS, or STARTTLS done here."""
    context = tls_material.client_context()
    if server.tls == "implicit":
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(server.host, server.port, timeout=5,
                                              context=context)
    else:
        smtp = smtplib.SMTP(server.host, server.port, timeout=5)
    smtp._host = "localhost"  # type: ignore[attr-defined]  # the name TLS verifies
    return smtp


def b64(text: str) -> bytes:
    return base64.b64encode(text.encode())


@pytest.mark.parametrize("greeting, text", [
    ("554 5.3.2 No SMTP service here", b"5.3.2 No SMTP service here"),
    ("554-5.3.2 No SMTP\r\n554 5.3.2 service here", b"5.3.2 No SMTP\n5.3.2 service here"),
])
def test_554_greeting_then_503_to_everything_but_quit(scripted_server, greeting, text):
    server = scripted_server(tls="starttls", greeting=greeting, port=0)
    smtp = smtplib.SMTP(timeout=5)
    assert smtp.connect(server.host, server.port) == (554, text)
    assert smtp.docmd("EHLO", "me.example") == (503, b"5.5.1 Bad sequence of commands")
    assert smtp.docmd("MAIL", "FROM:<a@example.com>")[0] == 503
    assert smtp.quit()[0] == 221
    assert server.wire == [b"EHLO me.example\r\n", b"MAIL FROM:<a@example.com>\r\n",
                           b"quit\r\n"]  # raw: smtplib writes it in lower case
    assert server.connections == 1


def test_421_greeting_closes_the_connection(scripted_server, tls_material):
    server = scripted_server(greeting="421 4.3.2 Busy")
    raw = socket.create_connection((server.host, server.port), timeout=5)
    with tls_material.client_context().wrap_socket(raw, server_hostname="localhost") as sock:
        received = b""
        while chunk := sock.recv(1024):  # until the server closes
            received += chunk
    assert received == b"421 4.3.2 Busy\r\n"
    assert server.connections == 1


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
@pytest.mark.parametrize("auth", [("CRAM-MD5",), ("LOGIN", "PLAIN"),
                                  ("PLAIN", "LOGIN", "CRAM-MD5")])
def test_offers_exactly_the_mechanisms_given_and_only_after_tls(scripted_server,
                                                                tls_material, tls, auth):
    server = scripted_server(tls=tls, auth=auth, port=0 if tls == "starttls" else None)
    smtp = client(server, tls_material)
    smtp.ehlo()
    if tls == "starttls":
        assert not smtp.has_extn("auth")
        assert smtp.docmd("AUTH", "PLAIN")[0] == 530
        smtp.starttls(context=tls_material.client_context())
        smtp.ehlo()
    assert smtp.esmtp_features["auth"].split() == list(auth)
    refused = ({"PLAIN", "LOGIN", "CRAM-MD5"} - set(auth)).pop() if len(auth) < 3 else None
    if refused:
        assert smtp.docmd("AUTH", refused)[0] == 504
    smtp.quit()


def test_records_auth_lines_mail_options_and_unstuffed_data(scripted_server, tls_material):
    server = scripted_server(auth=("CRAM-MD5", "LOGIN"), smtputf8=True, ehlo_drop=("SIZE",))
    smtp = client(server, tls_material)
    smtp.ehlo()
    assert smtp.docmd("AUTH", "LOGIN") == (334, b64("User Name\0"))
    assert smtp.docmd(b64("alice").decode()) == (334, b64("Password\0"))
    assert smtp.docmd(b64("wrong").decode())[0] == 535
    assert smtp.docmd("AUTH", "PLAIN " + b64("\0alice\0s3cret").decode())[0] == 504
    code, challenge = smtp.docmd("AUTH", "CRAM-MD5")
    assert code == 334
    digest = hmac.new(b"s3cret", base64.b64decode(challenge), "md5").hexdigest()
    assert smtp.docmd(b64(f"alice {digest}").decode())[0] == 235
    smtp.sendmail("a@example.com", ["b@example.com"], b"Subject: x\r\n\r\n.dot\r\nend\r\n",
                  mail_options=["BODY=8BITMIME", "SMTPUTF8"])
    smtp.quit()

    assert server.auth_lines == [b"AUTH LOGIN\r\n", b64("alice") + b"\r\n",
                                 b64("wrong") + b"\r\n",
                                 b"AUTH PLAIN " + b64("\0alice\0s3cret") + b"\r\n",
                                 b"AUTH CRAM-MD5\r\n",
                                 b64(f"alice {digest}") + b"\r\n"]
    assert server.mail_options == [["BODY=8BITMIME", "SMTPUTF8"]]
    assert server.messages == [("a@example.com", ["b@example.com"],
                                b"Subject: x\r\n\r\n.dot\r\nend\r\n")]
    assert b"..dot\r\n" in server.wire  # the stuffed line as it crossed the wire
    assert server.wire_text().startswith("ehlo ")
    assert server.wire[-1] == b"quit\r\n"


def test_ehlo_drop_and_add(scripted_server, tls_material):
    server = scripted_server(ehlo_drop=("8BITMIME",), ehlo_add=("SIZE 1000", "X-THING"),
                             pipelining=True)
    smtp = client(server, tls_material)
    smtp.ehlo()
    assert "8bitmime" not in smtp.esmtp_features
    assert {"pipelining", "x-thing", "auth"} <= set(smtp.esmtp_features)
    smtp.quit()


def test_starttls_server_sits_on_2525_and_delays_replies(scripted_server, tls_material):
    server = scripted_server(tls="starttls", reply_delay=0.3)
    assert server.port == 2525 and server.host != "127.0.0.1"  # port rule: STARTTLS
    smtp = client(server, tls_material)  # the greeting is not delayed
    started = time.monotonic()
    smtp.ehlo()
    assert time.monotonic() - started >= 0.3
    smtp.close()


def test_oauth_mechanisms_check_the_token_and_send_the_error_challenge(scripted_server,
                                                                       tls_material):
    """XOAUTH2 and OAUTHBEARER as Google answers them: 235 for a token of the table, a
    malformed initial response 501, a refused token the error challenge (its answer read
    and kept) then 535; an AUTH line of RFC 4954's 12,288 octets is read whole."""
    long_token = "t" * 9000
    server = scripted_server(auth=("XOAUTH2", "OAUTHBEARER"), error_challenges=1,
                             tokens={"alice": "good.token", "b,=ob": long_token})
    smtp = client(server, tls_material)
    smtp.ehlo()
    assert smtp.esmtp_features["auth"].split() == ["XOAUTH2", "OAUTHBEARER"]
    assert smtp.docmd("AUTH", "XOAUTH2 " + b64("user=alice\1auth=Bearer x\1").decode()
                      )[0] == 501
    code, challenge = smtp.docmd("AUTH", "XOAUTH2 " + b64(
        "user=alice\1auth=Bearer bad.token\1\1").decode())
    assert code == 334
    assert base64.b64decode(challenge) == (
        b'{"status": "401", "schemes": "bearer", "scope": "https://mail.google.com/"}')
    assert smtp.docmd("")[0] == 535
    assert smtp.docmd("AUTH", "OAUTHBEARER " + b64(
        f"n,a=b=2C=3Dob,\1host=mx\1port=465\1auth=Bearer {long_token}\1\1").decode()
    )[0] == 235
    smtp.quit()

    assert server.error_answers == [b""]
    assert server.auth_lines[2:] == [b"\r\n", b"AUTH OAUTHBEARER " + b64(
        f"n,a=b=2C=3Dob,\1host=mx\1port=465\1auth=Bearer {long_token}\1\1") + b"\r\n"]
    assert len(server.auth_lines[-1]) > 12000
