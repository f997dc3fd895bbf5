"""AUTH on the wire: which mechanism the transport picks, and exactly what it sends.

Why: smtplib's own AUTH helpers answered LOGIN's password challenge with the username
once our loop replaced smtplib's, and smtplib's login() retries a refused password with
every other mechanism. Only the bytes the server read show which credential went on which
line and how many sign-in attempts a send makes, so every assertion here is on the raw
lines a ScriptedServer recorded, over implicit TLS and over STARTTLS (port 2525).
"""

from __future__ import annotations

import base64
import hmac
import re
from typing import TYPE_CHECKING

import pytest

from flask_smtp_senders.errors import DeliveryError
from flask_smtp_senders.sealed import Secret
from flask_smtp_senders.smtp import transport
from flask_smtp_senders.smtp.auth import answer as _auth_answer
from flask_smtp_senders.smtp.trace import Trace
from tests.support.scripted_smtp import client_options
from tests.support.smtp_servers import SERVER_NAME

if TYPE_CHECKING:
    from tests.support.scripted_smtp import ScriptedServer


TLS_MODES = ["implicit", "starttls"]
PREFERENCE = ("CRAM-MD5", "PLAIN", "LOGIN")
#: Each offer is listed least preferred first: the pick must follow our preference, not
#: the server's order.
OFFERS = [("LOGIN",), ("PLAIN",), ("CRAM-MD5",), ("LOGIN", "PLAIN"), ("LOGIN", "CRAM-MD5"),
          ("PLAIN", "CRAM-MD5"), ("LOGIN", "PLAIN", "CRAM-MD5")]
NON_ASCII = "pässwörd✓"


def sign_in(server: ScriptedServer, tls_material, password: str = "s3cret",
            trace: Trace | None = None) -> None:
    """transport.connect() as alice, then close (QUIT)."""
    address = transport.ServerAddress(SERVER_NAME, server.port, "alice")
    with transport.connect(address, Secret(password), client_options(server, tls_material),
                           trace=trace):
        pass


def b64(line: bytes) -> str:
    """A continuation line's (or initial response's) base64, decoded as UTF-8."""
    return base64.b64decode(line.strip(), validate=True).decode("utf-8")


def auth_commands(server: ScriptedServer) -> list[bytes]:
    return [line for line in server.wire if line[:5].upper() == b"AUTH "]


def assert_exchange(lines: list[bytes], mechanism: str, password: str) -> None:
    """``lines`` are one AUTH exchange with ``mechanism``, carrying alice's credentials."""
    assert all(line.endswith(b"\r\n") for line in lines), lines
    if mechanism == "PLAIN":
        (line,) = lines
        assert line.startswith(b"AUTH PLAIN ")
        assert b64(line[len(b"AUTH PLAIN "):]) == f"\0alice\0{password}"
    elif mechanism == "LOGIN":
        command, username, secret = lines
        assert command == b"AUTH LOGIN\r\n"
        assert (b64(username), b64(secret)) == ("alice", password)
    else:
        command, answer = lines
        assert command == b"AUTH CRAM-MD5\r\n"
        # The digest depends on the server's one-time challenge; the server checked it.
        assert re.fullmatch(r"alice [0-9a-f]{32}", b64(answer))


@pytest.mark.parametrize("tls", TLS_MODES)
@pytest.mark.parametrize("offer", OFFERS, ids="+".join)
def test_one_exchange_with_the_preferred_mechanism(scripted_server, tls_material, tls,
                                                   offer):
    server = scripted_server(tls=tls, auth=offer)
    trace = Trace()

    sign_in(server, tls_material, trace=trace)

    chosen = next(m for m in PREFERENCE if m in offer)
    assert auth_commands(server) == server.auth_lines[:1]  # exactly one AUTH command
    assert_exchange(server.auth_lines, chosen, "s3cret")
    auth = dict(next(s for s in trace.diagnosis({}).stages if s.name == "auth").facts)
    assert auth == {"Mechanism": chosen, "Reply code": "235"}
    if tls == "starttls":  # credentials only after the upgrade
        verbs = [line.split()[0].upper() for line in server.wire]
        assert verbs.index(b"STARTTLS") < verbs.index(b"AUTH")


@pytest.mark.parametrize("tls", TLS_MODES)
@pytest.mark.parametrize("mechanism", PREFERENCE)
def test_non_ascii_password_signs_in_with_every_mechanism(scripted_server, tls_material,
                                                          tls, mechanism):
    server = scripted_server(tls=tls, auth=(mechanism,), users={"alice": NON_ASCII})

    sign_in(server, tls_material, password=NON_ASCII)

    assert_exchange(server.auth_lines, mechanism, NON_ASCII)


@pytest.mark.parametrize("tls", TLS_MODES)
@pytest.mark.parametrize("offer", [("LOGIN",), ("PLAIN",), ("CRAM-MD5",),
                                   ("LOGIN", "PLAIN", "CRAM-MD5")], ids="+".join)
def test_wrong_password_fails_at_auth_after_one_exchange(scripted_server, tls_material,
                                                         tls, offer):
    server = scripted_server(tls=tls, auth=offer)

    with pytest.raises(DeliveryError) as failure:
        sign_in(server, tls_material, password="wrong")

    assert (failure.value.stage, failure.value.user_message) == ("auth", "failed at auth")
    chosen = next(m for m in PREFERENCE if m in offer)
    assert len(auth_commands(server)) == 1  # no retry with another mechanism
    assert_exchange(server.auth_lines, chosen, "wrong")
    assert server.mail_options == [] and server.messages == []


def test_only_a_504_moves_on_to_the_next_mechanism(scripted_server, tls_material):
    server = scripted_server(auth=("LOGIN", "PLAIN", "CRAM-MD5"), unrecognised=("CRAM-MD5",))

    sign_in(server, tls_material)

    assert server.auth_lines[0] == b"AUTH CRAM-MD5\r\n"
    assert_exchange(server.auth_lines[1:], "PLAIN", "s3cret")


def test_no_supported_mechanism_fails_at_auth_without_auth(scripted_server, tls_material):
    server = scripted_server(auth=(), ehlo_add=("AUTH XOAUTH2 GSSAPI",))

    with pytest.raises(DeliveryError) as failure:
        sign_in(server, tls_material)

    assert failure.value.stage == "auth"
    assert auth_commands(server) == []


def test_challenges_are_answered_by_count_and_a_spare_one_is_a_failure():
    assert _auth_answer("LOGIN", 1, b"UGFzc3dvcmQ6", "alice", "pw") == "YWxpY2U="
    assert _auth_answer("LOGIN", 2, b"VXNlcm5hbWU6", "alice", "pw") == "cHc="
    assert _auth_answer("LOGIN", 3, b"", "alice", "pw") is None
    assert _auth_answer("PLAIN", 1, b"", "alice", "pw") is None
    challenge = b"<1.2@mx.example>"
    digest = hmac.new(b"pw", challenge, "md5").hexdigest()
    answer = _auth_answer("CRAM-MD5", 1, base64.b64encode(challenge), "alice", "pw")
    assert answer is not None and b64(answer.encode()) == f"alice {digest}"
    assert _auth_answer("CRAM-MD5", 2, base64.b64encode(challenge), "alice", "pw") is None
