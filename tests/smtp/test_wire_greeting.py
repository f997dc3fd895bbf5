"""The server's greeting counts (RFC 5321 s3.1): anything but 220 ends the session.

Why: a server that greets 554 ("no SMTP service here") or 421 ("busy") is telling us not
to go on; a client that sends EHLO anyway, let alone the password, talks to something
that said it is not our mail service. What the ScriptedServer read proves that nothing
but QUIT (after a 554) crossed the wire, over implicit TLS and over STARTTLS (port 2525).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import pytest

from flask_smtp_senders import SenderSettings, hookimpl
from flask_smtp_senders.errors import DeliveryError
from flask_smtp_senders.sealed import Secret
from flask_smtp_senders.settings import DEFAULTS
from flask_smtp_senders.smtp import transport
from flask_smtp_senders.smtp.trace import Trace
from tests.support.scripted_smtp import client_options
from tests.support.smtp_servers import SERVER_NAME

if TYPE_CHECKING:
    from tests.support.scripted_smtp import ScriptedServer

pytestmark = pytest.mark.sqlite_only  # the service test's app; the database plays no part

TLS_MODES = ["implicit", "starttls"]
REFUSALS = ["554 5.3.2 No SMTP service here", "421 4.3.2 Busy, try later"]
PASSWORD = "Greeting-Pa55word"


def connect(server: ScriptedServer, tls_material, trace: Trace | None = None,
            **timeouts: float) -> None:
    """transport.connect() as alice, then close (QUIT)."""
    address = transport.ServerAddress(SERVER_NAME, server.port, "alice")
    options = client_options(server, tls_material, **timeouts)
    with transport.connect(address, Secret(PASSWORD), options, trace=trace):
        pass


def verbs(server: ScriptedServer) -> list[str]:
    return [line.split()[0].decode().upper() for line in server.wire]


@pytest.mark.parametrize("tls", TLS_MODES)
@pytest.mark.parametrize("greeting", REFUSALS, ids=lambda g: g[:3])
def test_refused_greeting_gets_no_ehlo_no_credentials_no_message(
        scripted_server, tls_material, caplog, tls, greeting):
    server = scripted_server(tls=tls, greeting=greeting, users={"alice": PASSWORD})
    trace = Trace()
    caplog.set_level(logging.DEBUG, logger="flask_smtp_senders")

    with pytest.raises(DeliveryError) as failure:
        connect(server, tls_material, trace)

    assert (failure.value.stage, failure.value.user_message) == ("connect",
                                                                 "failed at connect")
    code = greeting[:3]
    # After a 554 the client says QUIT (and waits for the 221); after a 421 it just leaves.
    assert server.wire == ([b"QUIT\r\n"] if code == "554" else [])
    assert not {"EHLO", "HELO", "STARTTLS", "AUTH", "MAIL"} & set(verbs(server))
    assert server.auth_lines == [] and server.mail_options == [] and server.messages == []
    assert server.connections == 1  # and no second try
    assert trace.greeting == int(code)
    diagnosis = trace.diagnosis(DEFAULTS)
    assert diagnosis.stopped_at == "ehlo"  # the stage that reads the greeting
    [ehlo] = [stage for stage in diagnosis.stages if stage.name == "ehlo"]
    assert not ehlo.ok
    assert dict(ehlo.facts) == {
        "Greeting reply code": code,
        "Problem": f"The server refused the session in its greeting ({code})"}
    assert code in caplog.text and PASSWORD not in caplog.text


def test_quit_after_a_554_is_bounded_by_the_deadline(scripted_server, tls_material):
    """A 554 greeter that takes its time over QUIT: the send still fails at connect (not
    timeout: the greeting was the failure), within the deadline."""
    server = scripted_server(greeting="554 5.3.2 No SMTP service here", reply_delay=5.0)
    started = time.monotonic()

    with pytest.raises(DeliveryError) as failure:
        connect(server, tls_material, operation_timeout=0.5, deadline=1.0)

    assert failure.value.stage == "connect"
    assert time.monotonic() - started < 1.5
    assert server.wire == [b"QUIT\r\n"]


@pytest.mark.parametrize("tls", TLS_MODES)
def test_multi_line_220_greeting_still_works(scripted_server, tls_material, tls):
    server = scripted_server(tls=tls, users={"alice": PASSWORD},
                             greeting="220-mx.smtp-senders.test ESMTP\r\n220-no UCE\r\n"
                                      "220 ready")
    trace = Trace()

    connect(server, tls_material, trace)

    assert trace.greeting == 220
    assert verbs(server)[0] == "EHLO" and "AUTH" in verbs(server)


class Routes:
    """Host plugin standing in for DNS: the test server name points at the server."""

    def __init__(self, address: str) -> None:
        self.address = address

    @hookimpl
    def smtp_senders_resolve(self, server_name, port):
        return [self.address] if server_name == SERVER_NAME else []


@pytest.mark.parametrize("greeting, advice", [
    ("554 5.3.2 No SMTP service here", "connect_failed"),
    ("421 4.3.2 Busy, try later", "temporary"),
])
def test_send_test_email_shows_the_connect_message_and_advice(
        make_app, scripted_server, greeting, advice):
    server = scripted_server(tls="starttls", greeting=greeting)
    app = make_app(plugins=[Routes(server.host)])
    with app.app_context():
        service = app.extensions["smtp_senders"]
        sender = service.create_sender(SenderSettings(
            username="alice", server_name=SERVER_NAME, port=server.port,
            from_address="noreply@example.com"), PASSWORD)
        result = service.send_test_email(sender.id, "some.body@example.com")

    assert (result.ok, result.stage) == (False, "connect")
    assert result.message == DEFAULTS["SMTP_SENDERS_MSG_CONNECT_FAILED"]
    assert result.diagnosis.stopped_at == "ehlo"
    assert result.diagnosis.advice == DEFAULTS[f"SMTP_SENDERS_ADVICE_{advice.upper()}"].format(
        port=server.port, stage="EHLO")
    assert not {"EHLO", "AUTH", "MAIL"} & set(verbs(server))
