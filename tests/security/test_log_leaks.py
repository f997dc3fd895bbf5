"""Case G8: the transport's log is not a leak, whatever encoding a hostile server uses.

A server that learnt the password (AUTH sends it) echoes it back in its replies in forms
no scrubbing recognises: hex, spaced out, base64 split over two lines, reversed, as well
as plainly in a 535. At WARNING and above only reply codes, enhanced status codes, the
stage, the server's name and port and exception types may be logged; the server's text
goes to DEBUG alone (scrubbed of the exact forms, as documented in
docs/configuration.md). The same holds for an OAuth2 access token, which a server learns
from XOAUTH2 or OAUTHBEARER and can echo in its 535 or in error challenges.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import ssl

import pytest

from flask_smtp_senders import SenderSettings, get_service
from flask_smtp_senders.errors import DeliveryError
from flask_smtp_senders.sealed import AccessToken, Secret
from flask_smtp_senders.smtp import transport
from flask_smtp_senders.smtp.failures import describe
from tests.support.cases import (
    CASE_CONFIG,
    HARNESS_LOGGERS,
    RECIPIENT,
    Host,
    secret_forms,
)
from tests.support.smtp_servers import SERVER_NAME, RawTCPServer, server_context

pytestmark = pytest.mark.sqlite_only

PASSWORD = "G8-Leak-Pa55w0rd"
USERNAME = "alice"
_B64 = base64.b64encode(PASSWORD.encode()).decode()
#: The password as the hostile server writes it; none may reach a WARNING record.
ECHOES = {
    "hex": PASSWORD.encode().hex(),
    "spaced": " ".join(PASSWORD),
    "base64, first half": _B64[:len(_B64) // 2],
    "base64, second half": _B64[len(_B64) // 2:],
    "reversed": PASSWORD[::-1],
    "plain": PASSWORD,
}
FORBIDDEN = sorted({*ECHOES.values(), *secret_forms(PASSWORD, USERNAME)})


def refusal(code: str, enhanced: str) -> bytes:
    """A multi-line reply carrying every echo, the base64 split over two lines."""
    return (f"{code}-{enhanced} hex {ECHOES['hex']}\r\n"
            f"{code}-{enhanced} spaced {ECHOES['spaced']}\r\n"
            f"{code}-{enhanced} b64 {ECHOES['base64, first half']}\r\n"
            f"{code}-{ECHOES['base64, second half']}\r\n"
            f"{code} {enhanced} {ECHOES['reversed']} or, plainly, {PASSWORD}\r\n").encode()


#: Where the server refuses -> (its reply, the stage we fail at, the codes WARNING shows).
REFUSALS = {
    "greeting": (refusal("554", "5.3.2"), "connect", "554 5.3.2"),
    "AUTH": (refusal("535", "5.7.8"), "auth", "535 5.7.8"),
    "MAIL": (refusal("550", "5.7.1"), "sender", "550 5.7.1"),
    "RCPT": (refusal("550", "5.1.1"), "recipient", "550"),  # all refused: the code alone
    "body": (refusal("554", "5.6.0"), "data", "554 5.6.0"),
}


class EchoServer(RawTCPServer):
    """Implicit-TLS SMTP that accepts everything but refuses at ``refuse_at`` with a reply
    that echoes the password in many forms."""

    def __init__(self, context: ssl.SSLContext, refuse_at: str) -> None:
        super().__init__()
        self.context = context
        self.refuse_at = refuse_at
        self.reply = REFUSALS[refuse_at][0]

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(5.0)
            with self.context.wrap_socket(conn, server_side=True) as tls:
                self._converse(tls)
        except OSError:
            pass

    def _answer(self, step: str, ok: bytes) -> bytes:
        return self.reply if step == self.refuse_at else ok

    def _converse(self, tls: ssl.SSLSocket) -> None:
        tls.sendall(self._answer("greeting", b"220 echo.test ESMTP\r\n"))
        buffer, in_data = b"", False
        while not self._stopping.is_set():
            chunk = tls.recv(65536)
            if not chunk:
                return
            buffer += chunk
            if in_data:
                if b"\r\n.\r\n" not in buffer:
                    continue
                buffer = buffer.split(b"\r\n.\r\n", 1)[1]
                in_data = False
                tls.sendall(self._answer("body", b"250 2.0.0 queued\r\n"))
            while b"\r\n" in buffer and not in_data:
                line, buffer = buffer.split(b"\r\n", 1)
                verb = line.split(b" ", 1)[0].upper().decode("ascii", "replace")
                if verb == "QUIT":
                    tls.sendall(b"221 bye\r\n")
                    return
                if verb == "DATA":
                    in_data = True
                    buffer = b"\r\n" + buffer  # the terminator may follow at once
                tls.sendall(self._answer(verb, {
                    "EHLO": b"250-echo.test\r\n250 AUTH PLAIN LOGIN\r\n",
                    "AUTH": b"235 2.7.0 Authenticated\r\n",
                    "DATA": b"354 go ahead\r\n",
                }.get(verb, b"250 2.0.0 ok\r\n")))


def echo_options(server: RawTCPServer, tls_material) -> transport.TransportOptions:
    """The transport's options for a test that connects to ``server`` (and nowhere else)."""
    return transport.TransportOptions(
        ssl_context=tls_material.client_context(), operation_timeout=5.0, deadline=10.0,
        ehlo_name="client.example.org",
        messages={name: f"failed at {name}" for name in transport.STAGES},
        resolver=lambda _name, _port: [server.host],
        destination_allowed=lambda _name, _port, address: address == server.host)


def app_records(caplog, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records
            if r.levelno >= level and not r.name.startswith(HARNESS_LOGGERS)]


def text_of(records: list[logging.LogRecord]) -> str:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(formatter.format(record) for record in records)


@pytest.fixture
def host() -> Host:
    return Host()


@pytest.fixture
def service(make_app, host):
    app = make_app(plugins=[host], **CASE_CONFIG)
    with app.app_context():
        yield get_service(app)


@pytest.mark.parametrize("refuse_at", sorted(REFUSALS))
def test_warnings_carry_codes_never_the_servers_text(tls_material, caplog, refuse_at):
    """Case G8, at the transport: connect() and send() against a server refusing at
    ``refuse_at`` with the password in hex, spaced out, split base64, reversed and plain:
    no WARNING+ record holds any of those forms, nor the password's exact forms; it does
    hold the stage and the reply codes (e.g. ``535 5.7.8``). The server's text did reach
    the DEBUG records (the echo is live; not for RCPT, whose refusal texts go to the
    caller), scrubbed of the password's exact forms."""
    caplog.set_level(logging.DEBUG)
    reply, stage, codes = REFUSALS[refuse_at]
    with EchoServer(server_context(tls_material.good), refuse_at) as server:
        options = echo_options(server, tls_material)
        with pytest.raises(DeliveryError) as failure:
            with transport.connect(transport.ServerAddress(SERVER_NAME, server.port, USERNAME),
                                   Secret(PASSWORD), options) as connection:
                connection.send("noreply@example.com", [RECIPIENT],
                                b"Subject: hi\r\n\r\nhello\r\n")

    assert failure.value.stage == stage
    warnings = text_of(app_records(caplog, logging.WARNING))
    assert [form for form in FORBIDDEN if form in warnings] == []
    assert f"SMTP exchange failed at stage {stage} for {SERVER_NAME}:{server.port}" in warnings
    assert codes in warnings
    debug = text_of(app_records(caplog, logging.DEBUG))
    if refuse_at != "RCPT":  # (refused recipients' texts go to the caller, not the log)
        assert ECHOES["reversed"] in debug and ECHOES["hex"] in debug  # server text: DEBUG
    assert PASSWORD not in debug and _B64 not in debug  # ...scrubbed of the exact forms


@pytest.mark.parametrize("refuse_at", sorted(REFUSALS))
def test_send_test_email_and_check_log_no_echo_at_warning(service, host, tls_material, caplog,
                                                          refuse_at):
    """Case G8, through the service: Send Test Email and the connection check against the
    same servers; no WARNING+ record of any logger of ours holds an echo or the password,
    and the reply codes are there."""
    caplog.set_level(logging.WARNING)
    _reply, stage, codes = REFUSALS[refuse_at]
    with EchoServer(server_context(tls_material.good), refuse_at) as server:
        host.routes[SERVER_NAME] = [server.host]
        sender = service.create_sender(SenderSettings(
            username=USERNAME, server_name=SERVER_NAME, port=server.port,
            from_address="noreply@example.com"), PASSWORD)
        sent = service.send_test_email(sender.id, RECIPIENT)
        checked = service.check_connection(sender.id, RECIPIENT)

    assert (sent.ok, sent.stage) == (False, stage)
    assert checked.ok is (refuse_at == "body")  # a check sends no DATA
    warnings = text_of(app_records(caplog, logging.WARNING))
    assert [form for form in FORBIDDEN if form in warnings] == []
    assert codes in warnings


def test_describe_names_types_and_codes_only():
    """Case G8: describe() (the WARNING's summary) keeps the type, the reply code, an
    enhanced code of the reply's class at the start of its text, an SSL reason code and
    an errno name; nothing of any text."""
    import errno
    import smtplib

    assert describe(smtplib.SMTPResponseException(
        535, b"5.7.8 secret-text\n5.7.8 more")) == "SMTPResponseException 535 5.7.8"
    assert describe(smtplib.SMTPResponseException(535, b"4.7.8 wrong class")) == (
        "SMTPResponseException 535")
    assert describe(smtplib.SMTPResponseException(550, b"5.1.1234 x")) == (
        "SMTPResponseException 550")
    assert describe(smtplib.SMTPSenderRefused(553, b"5.7.1 no", "a@b")) == (
        "SMTPSenderRefused 553 5.7.1")
    assert describe(smtplib.SMTPRecipientsRefused({"a@b": (550, b"x"), "c@d": (451, b"y")})
                    ) == "SMTPRecipientsRefused 451 550"
    assert describe(ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")) == (
        "ConnectionRefusedError ECONNREFUSED")
    assert describe(smtplib.SMTPServerDisconnected("text of the server")) == (
        "SMTPServerDisconnected")
    error = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    error.reason = "WRONG_VERSION_NUMBER"
    assert describe(error) == "SSLError WRONG_VERSION_NUMBER"
    error.reason = "server's words"
    assert describe(error) == "SSLError"


# -- an OAuth2 access token -----------------------------------------------------------

TOKEN = "ya29.G8-Leak-Token_0123456789abcdefghijklmnopqrstuvwxyz"
_TOKEN_B64 = base64.b64encode(TOKEN.encode()).decode()


def base64_carrying_token() -> list[str]:
    """The stretches any base64 holding the token contains, at each of the 3 alignments
    (the groups made of the token's bytes alone)."""
    return [base64.b64encode(b"\0" * shift + TOKEN.encode()).decode()[4:-4]
            for shift in range(3)]


class TokenEchoServer(EchoServer):
    """Implicit-TLS SMTP offering XOAUTH2 and OAUTHBEARER that refuses the token and echoes
    it. ``"refusal"``: a 535 quoting the client's initial response, its decoded text, and
    the token in hex, base64 (aligned and shifted) and plainly. ``"challenge"``: error
    challenges (334, base64 JSON quoting the decoded initial response and the token), one
    after every line the client sends, until it gives up."""

    def __init__(self, context: ssl.SSLContext, mode: str, mechanisms: bytes) -> None:
        super().__init__(context, "AUTH")
        self.mode = mode
        self.mechanisms = mechanisms

    def _converse(self, tls: ssl.SSLSocket) -> None:
        tls.sendall(b"220 echo.test ESMTP\r\n")
        initial = b""  # the client's initial response, once it sent AUTH
        for line in tls.makefile("rb"):
            verb = line.split(b" ", 1)[0].strip().upper()
            if verb == b"QUIT":
                tls.sendall(b"221 bye\r\n")
                return
            if verb == b"EHLO":
                tls.sendall(b"250-echo.test\r\n250 AUTH " + self.mechanisms + b"\r\n")
                continue
            if verb != b"AUTH" and not initial:
                tls.sendall(b"250 2.0.0 ok\r\n")
                continue
            initial = line.split()[-1] if verb == b"AUTH" else initial
            decoded = base64.b64decode(initial).decode()
            if self.mode == "refusal":
                tls.sendall(self.refusal(initial, decoded))
                continue
            challenge = json.dumps({"status": "401", "echo": decoded, "token": TOKEN})
            tls.sendall(b"334 " + base64.b64encode(challenge.encode()) + b"\r\n")

    @staticmethod
    def refusal(initial: bytes, decoded: str) -> bytes:
        shifted = base64.b64encode(b"xy" + TOKEN.encode())
        return (b"535-5.7.8 initial " + initial + b"\r\n"
                + f"535-5.7.8 decoded {decoded}\r\n".encode()
                + f"535-5.7.8 hex {TOKEN.encode().hex()}\r\n".encode()
                + f"535-5.7.8 b64 {_TOKEN_B64} shifted ".encode() + shifted + b"\r\n"
                + f"535 5.7.8 plainly {TOKEN}\r\n".encode())


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
@pytest.mark.parametrize("mode", ["refusal", "challenge"])
def test_an_echoed_access_token_stays_out_of_the_log(tls_material, caplog, mechanism, mode):
    """Case G8, with an access token: a server echoing the token (plain, hex, base64 at any
    alignment, the whole initial response, decoded or not) in a 535 or in error challenges
    that never end. WARNING carries the stage and codes only; DEBUG carries the server's
    text (the echo is live) with the token and every base64 stretch that holds it
    scrubbed out."""
    caplog.set_level(logging.DEBUG)
    with TokenEchoServer(server_context(tls_material.good), mode,
                         mechanism.encode()) as server:
        options = echo_options(server, tls_material)
        with pytest.raises(DeliveryError) as failure:
            transport.connect(transport.ServerAddress(SERVER_NAME, server.port, USERNAME),
                              AccessToken(TOKEN), options)

    assert failure.value.stage == "auth"
    assert failure.value.token_refused is (mode == "refusal")
    forbidden = [TOKEN, _TOKEN_B64, TOKEN.encode().hex(), *base64_carrying_token()]
    warnings = text_of(app_records(caplog, logging.WARNING))
    assert [form for form in forbidden if form in warnings] == []
    assert ("535 5.7.8" if mode == "refusal" else "SMTPAuthenticationError 334") in warnings
    debug = text_of(app_records(caplog, logging.DEBUG))
    echo = TOKEN.encode().hex() if mode == "refusal" else "eyJzdGF0dXMiOiAiNDAxIiwg"
    assert echo in debug  # the server's text reached DEBUG...
    assert [form for form in forbidden[:2] + forbidden[3:] if form in debug] == []
