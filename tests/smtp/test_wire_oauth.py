"""OAuth2 sign-in on the wire: XOAUTH2 and OAUTHBEARER (RFC 7628) with an access token.

Why: Microsoft 365 turns password SMTP AUTH off, and its replacement takes an access token
in a format of its own (XOAUTH2) or the standard one (OAUTHBEARER); a token that goes out
in the wrong shape, to a password mechanism, before TLS, or into a loop of error
challenges is a failed send or a leaked credential. Every assertion here is on the raw
lines a ScriptedServer recorded (it checks the token against its table as Google and
Microsoft do), over implicit TLS and over STARTTLS (port 2525), and each expected AUTH
line is written out here byte for byte, not built with the package's own functions.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from typing import TYPE_CHECKING

import pytest

from flask_smtp_senders import AccessToken
from flask_smtp_senders.errors import DeliveryError
from flask_smtp_senders.sealed import Credential, Secret
from flask_smtp_senders.settings import DEFAULTS
from flask_smtp_senders.smtp import transport
from flask_smtp_senders.smtp.auth import token_error_status
from flask_smtp_senders.smtp.trace import Trace
from tests.support.oauth_smtp import DEFAULT_TOKENS
from tests.support.scripted_smtp import client_options
from tests.support.smtp_servers import SERVER_NAME

if TYPE_CHECKING:
    from tests.support.scripted_smtp import ScriptedServer

TLS_MODES = ["implicit", "starttls"]
OAUTH = ["XOAUTH2", "OAUTHBEARER"]
TOKEN = DEFAULT_TOKENS["alice"]
#: What each mechanism answers the error challenge with: an empty line, base64 of %x01.
ERROR_ANSWERS = {"XOAUTH2": b"\r\n", "OAUTHBEARER": b"AQ==\r\n"}
DECODED_ERROR_ANSWERS = {"XOAUTH2": b"", "OAUTHBEARER": b"\x01"}
FROM, RECIPIENT = "noreply@example.com", "some.body@acme.example.com"


def connect(server: ScriptedServer, tls_material, credential: Credential | None = None,
            user: str = "alice", trace: Trace | None = None) -> transport.Connection:
    address = transport.ServerAddress(SERVER_NAME, server.port, user)
    return transport.connect(address, credential or AccessToken(TOKEN),
                             client_options(server, tls_material), trace=trace)


def sign_in(server: ScriptedServer, tls_material, **keywords) -> None:
    """transport.connect() (an access token by default), then close (QUIT)."""
    with connect(server, tls_material, **keywords):
        pass


def failed_sign_in(server: ScriptedServer, tls_material, **keywords) -> DeliveryError:
    with pytest.raises(DeliveryError) as failure:
        sign_in(server, tls_material, **keywords)
    return failure.value


def expected_payload(mechanism: str, server: ScriptedServer, user: str = "alice",
                     token: str = TOKEN, escaped: str | None = None) -> bytes:
    """The initial response as Google, Microsoft (XOAUTH2) and RFC 7628 (OAUTHBEARER)
    spell it, before base64."""
    if mechanism == "XOAUTH2":
        payload = f"user={user}\x01auth=Bearer {token}\x01\x01"
    else:
        payload = (f"n,a={escaped or user},\x01host={SERVER_NAME}\x01port={server.port}"
                   f"\x01auth=Bearer {token}\x01\x01")
    return payload.encode("utf-8")


def expected_auth_line(mechanism: str, server: ScriptedServer, **keywords: str) -> bytes:
    """The whole AUTH line, initial response included."""
    return (f"AUTH {mechanism} ".encode()
            + base64.b64encode(expected_payload(mechanism, server, **keywords)) + b"\r\n")


def decoded(line: bytes) -> bytes:
    """The initial response of an ``AUTH <mechanism> <base64>`` line, decoded."""
    verb, _mechanism, response = line.split(b" ")
    assert verb == b"AUTH" and response.endswith(b"\r\n")
    return base64.b64decode(response[:-2], validate=True)


def auth_commands(server: ScriptedServer) -> list[bytes]:
    return [line for line in server.wire if line[:5].upper() == b"AUTH "]


def verbs(server: ScriptedServer) -> list[bytes]:
    return [line.split()[0].upper() for line in server.wire if line.strip()]


def auth_facts(trace: Trace) -> dict[str, str]:
    return dict(next(s for s in trace.diagnosis({}).stages if s.name == "auth").facts)


def advice(name: str, **values: str) -> str:
    return DEFAULTS[f"SMTP_SENDERS_ADVICE_{name.upper()}"].format(**values)


# -- signing in -------------------------------------------------------------------------

#: Each offer lists its mechanisms least preferred first: the pick follows our preference.
OFFERS = [("XOAUTH2",), ("OAUTHBEARER",), ("OAUTHBEARER", "XOAUTH2"),
          ("LOGIN", "XOAUTH2"), ("PLAIN", "LOGIN", "CRAM-MD5", "OAUTHBEARER")]


@pytest.mark.parametrize("tls", TLS_MODES)
@pytest.mark.parametrize("offer", OFFERS, ids="+".join)
def test_one_exchange_with_the_preferred_oauth_mechanism(scripted_server, tls_material, tls,
                                                         offer):
    server = scripted_server(tls=tls, auth=offer)
    trace = Trace()

    sign_in(server, tls_material, trace=trace)

    chosen = "XOAUTH2" if "XOAUTH2" in offer else "OAUTHBEARER"
    assert server.auth_lines == [expected_auth_line(chosen, server)]  # one line, exact
    assert decoded(server.auth_lines[0]) == expected_payload(chosen, server)
    assert auth_commands(server) == server.auth_lines
    assert auth_facts(trace) == {"Mechanism": chosen, "Reply code": "235"}
    if tls == "starttls":  # the token only after the upgrade
        assert verbs(server).index(b"STARTTLS") < verbs(server).index(b"AUTH")


@pytest.mark.parametrize("tls", TLS_MODES)
def test_a_message_is_sent_after_xoauth2_sign_in(scripted_server, tls_material, tls):
    server = scripted_server(tls=tls, auth=("XOAUTH2",))
    data = b"From: <noreply@example.com>\r\nSubject: hi\r\n\r\nSigned in with a token.\r\n"

    with connect(server, tls_material) as connection:
        refused = connection.send(FROM, [RECIPIENT], data)

    assert refused == {}
    assert server.messages == [(FROM, [RECIPIENT], data)]
    assert server.auth_lines == [expected_auth_line("XOAUTH2", server)]
    order = verbs(server)
    assert order.index(b"AUTH") < order.index(b"MAIL") < order.index(b"DATA")


@pytest.mark.parametrize("user, escaped", [("a,b=c@example.com", "a=2Cb=3Dc@example.com"),
                                           ("x=2C@example.com", "x=3D2C@example.com")])
def test_oauthbearer_escapes_comma_and_equals_in_the_user(scripted_server, tls_material,
                                                          user, escaped):
    server = scripted_server(auth=("OAUTHBEARER",), tokens={user: TOKEN})

    sign_in(server, tls_material, user=user)  # the server unescaped it and found the user

    assert server.auth_lines == [expected_auth_line("OAUTHBEARER", server, user=user,
                                                    escaped=escaped)]
    assert decoded(server.auth_lines[0]).startswith(f"n,a={escaped},\x01".encode())


def test_a_504_moves_on_to_oauthbearer(scripted_server, tls_material):
    server = scripted_server(auth=("XOAUTH2", "OAUTHBEARER"), unrecognised=("XOAUTH2",))

    sign_in(server, tls_material)

    assert server.auth_lines == [expected_auth_line("XOAUTH2", server),
                                 expected_auth_line("OAUTHBEARER", server)]


@pytest.mark.parametrize("mechanism", OAUTH)
def test_a_token_as_long_as_microsofts_fits_one_auth_line(scripted_server, tls_material,
                                                          mechanism):
    token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9." + "x" * 3000 + ".sig-_nature"
    server = scripted_server(auth=(mechanism,), tokens={"alice": token})

    sign_in(server, tls_material, credential=AccessToken(token))

    assert server.auth_lines == [expected_auth_line(mechanism, server, token=token)]
    assert len(server.auth_lines[0]) > 4000


@pytest.mark.parametrize("token, user", [("two words", "alice"), ("tok\x01en", "alice"),
                                         ("", "alice"), ("x" * 8193, "alice"),
                                         (TOKEN, "ali\x01ce"), (TOKEN, "alice\r\n")])
def test_what_cannot_be_sent_as_a_bearer_token_never_leaves(scripted_server, tls_material,
                                                            token, user):
    """An access token that is not RFC 6750's b64token (or a user with a control character)
    would corrupt the fields XOAUTH2 and OAUTHBEARER separate with %x01: refused as the
    caller's mistake before any connection, naming neither."""
    server = scripted_server(auth=("XOAUTH2",))

    with pytest.raises(ValueError) as refused:
        sign_in(server, tls_material, credential=AccessToken(token), user=user)

    assert server.connections == 0
    assert (token or "\x01") not in str(refused.value) and "ali" not in str(refused.value)


def test_no_token_crosses_a_starttls_port_without_tls(scripted_server, tls_material):
    server = scripted_server(tls="starttls", auth=("XOAUTH2",), ehlo_drop=("STARTTLS",))

    failure = failed_sign_in(server, tls_material)

    assert failure.stage == "tls"
    assert b"AUTH" not in verbs(server) and server.auth_lines == []


# -- one credential, its own mechanisms -------------------------------------------------


@pytest.mark.parametrize("tls", TLS_MODES)
def test_a_token_never_goes_to_a_password_mechanism(scripted_server, tls_material, tls):
    server = scripted_server(tls=tls, auth=("PLAIN", "LOGIN", "CRAM-MD5"))
    trace = Trace()

    failure = failed_sign_in(server, tls_material, trace=trace)

    assert failure.stage == "auth" and not failure.token_refused
    assert auth_commands(server) == [] and server.auth_lines == []
    diagnosis = trace.diagnosis(DEFAULTS)
    assert diagnosis.stopped_at == "auth"
    assert diagnosis.advice == advice("auth_no_oauth", mechanisms="PLAIN, LOGIN, CRAM-MD5")
    assert "XOAUTH2, OAUTHBEARER" in diagnosis.advice
    assert server.mail_options == [] and server.messages == []


@pytest.mark.parametrize("tls", TLS_MODES)
def test_a_password_never_goes_to_an_oauth_mechanism(scripted_server, tls_material, tls):
    server = scripted_server(tls=tls, auth=("XOAUTH2", "OAUTHBEARER", "PLAIN"))

    sign_in(server, tls_material, credential=Secret("s3cret"))

    assert server.auth_lines == [b"AUTH PLAIN " + base64.b64encode(b"\0alice\0s3cret")
                                 + b"\r\n"]


def test_a_password_with_only_oauth_offered_sends_no_auth(scripted_server, tls_material):
    server = scripted_server(auth=("XOAUTH2", "OAUTHBEARER"))
    trace = Trace()

    failure = failed_sign_in(server, tls_material, credential=Secret("s3cret"), trace=trace)

    assert failure.stage == "auth" and auth_commands(server) == []
    assert trace.diagnosis(DEFAULTS).advice == advice("auth_no_common_method",
                                                      mechanisms="XOAUTH2, OAUTHBEARER")


# -- a refused token ----------------------------------------------------------------------


@pytest.mark.parametrize("tls", TLS_MODES)
@pytest.mark.parametrize("mechanism", OAUTH)
def test_the_error_challenge_is_answered_once_then_535_decides(scripted_server, tls_material,
                                                               tls, mechanism):
    server = scripted_server(tls=tls, auth=(mechanism,), tokens={"alice": "another.token"},
                             error_challenges=1)
    trace = Trace()

    failure = failed_sign_in(server, tls_material, trace=trace)

    assert (failure.stage, failure.user_message) == ("auth", "failed at auth")
    assert failure.token_refused  # what a token layer drops the token for, and retries
    assert server.auth_lines == [expected_auth_line(mechanism, server),
                                 ERROR_ANSWERS[mechanism]]
    assert server.error_answers == [DECODED_ERROR_ANSWERS[mechanism]]
    assert auth_facts(trace) == {"Mechanism": mechanism, "Problem": "token refused: 401",
                                 "Reply code": "535"}
    assert trace.diagnosis(DEFAULTS).advice == advice("auth_token_refused")
    assert server.mail_options == [] and server.messages == []


@pytest.mark.parametrize("mechanism", OAUTH)
def test_a_token_refused_without_a_challenge(scripted_server, tls_material, mechanism):
    server = scripted_server(auth=(mechanism,), tokens={"alice": "another.token"})
    trace = Trace()

    failure = failed_sign_in(server, tls_material, trace=trace)

    assert failure.stage == "auth" and failure.token_refused
    assert server.auth_lines == [expected_auth_line(mechanism, server)]
    assert auth_facts(trace) == {"Mechanism": mechanism, "Reply code": "535"}


@pytest.mark.parametrize("tls", TLS_MODES)
@pytest.mark.parametrize("mechanism", OAUTH)
def test_a_second_error_challenge_is_never_answered(scripted_server, tls_material, tls,
                                                    mechanism):
    """A server that challenges again and again gets one answer and a closed connection:
    the exchange ends at once, at the auth stage, not by a timeout."""
    server = scripted_server(tls=tls, auth=(mechanism,), tokens={}, error_challenges=50)
    started = time.monotonic()

    failure = failed_sign_in(server, tls_material)

    assert time.monotonic() - started < 2.0  # the client's timeouts are 5 s and 10 s
    assert failure.stage == "auth" and not failure.token_refused
    assert server.auth_lines == [expected_auth_line(mechanism, server),
                                 ERROR_ANSWERS[mechanism]]
    assert server.connections == 1


def test_the_final_reply_decides_a_temporary_failure_is_no_refused_token(scripted_server,
                                                                         tls_material):
    server = scripted_server(auth=("XOAUTH2",), tokens={}, error_challenges=1,
                             token_refusal="454 4.7.0 Temporary authentication failure")
    trace = Trace()

    failure = failed_sign_in(server, tls_material, trace=trace)

    assert failure.stage == "auth" and not failure.token_refused
    assert auth_facts(trace)["Reply code"] == "454"
    assert len(server.auth_lines) == 2


JUNK = {
    "not base64": b"{not base64}",
    "not JSON": base64.b64encode(b"status: 401"),
    "status as words": base64.b64encode(b'{"status": "401 <b>go to evil.example</b>"}'),
    "status in a list": base64.b64encode(b'{"status": ["401"]}'),
    "oversized": base64.b64encode(json.dumps({"status": "401", "pad": "x" * 3000}).encode()),
}


@pytest.mark.parametrize("case", sorted(JUNK))
def test_an_unreadable_error_challenge_still_gets_one_answer(scripted_server, tls_material,
                                                            case):
    server = scripted_server(auth=("OAUTHBEARER",), tokens={}, error_challenges=1,
                             error_challenge=JUNK[case])
    trace = Trace()

    failure = failed_sign_in(server, tls_material, trace=trace)

    assert failure.token_refused
    assert server.auth_lines[1:] == [b"AQ==\r\n"]
    assert auth_facts(trace)["Problem"] == "token refused"  # nothing of the server's text
    assert "evil" not in json.dumps(trace.diagnosis(DEFAULTS).as_dict())


def test_only_a_three_digit_status_is_read_from_the_error_challenge():
    def challenge(document: object) -> bytes:
        return base64.b64encode(json.dumps(document).encode())

    assert token_error_status(challenge({"status": "401", "schemes": "bearer"})) == "401"
    assert token_error_status(b"  " + challenge({"status": 400}) + b"\r\n") == "400"
    for junk in [{"status": "4011"}, {"status": "40"}, {"status": True}, {"status": 4.01},
                 {"status": "\u0664\u0660\u0661"}, {"schemes": "bearer"}, ["401"], "401",
                 {"status": None}]:
        assert token_error_status(challenge(junk)) is None, junk
    nested = base64.b64encode(b"[" * 1400)
    assert len(nested) <= 2048 and token_error_status(nested) is None
    assert token_error_status(challenge({"status": "401", "pad": "x" * 2048})) is None


# -- the token stays in the exchange ------------------------------------------------------


@pytest.mark.parametrize("mechanism", OAUTH)
@pytest.mark.parametrize("refused", [False, True], ids=["signed in", "refused"])
def test_the_token_is_in_no_log_record_result_or_repr(scripted_server, tls_material, caplog,
                                                      mechanism, refused):
    """At every level and in every logger (aiosmtpd's too), and in what a caller or a page
    gets (the DeliveryError, the diagnosis and its JSON), no token and none of the base64
    forms that carry it."""
    caplog.set_level(logging.DEBUG)
    server = scripted_server(auth=(mechanism,), error_challenges=1,
                             tokens={"alice": "another.token"} if refused else None)
    trace = Trace()
    shown: list[str] = [repr(AccessToken(TOKEN)), str(AccessToken(TOKEN))]
    try:
        sign_in(server, tls_material, trace=trace)
    except DeliveryError as failure:
        shown += [str(failure), repr(failure), failure.user_message]
    diagnosis = trace.diagnosis(DEFAULTS)
    shown += [str(diagnosis), repr(diagnosis), json.dumps(diagnosis.as_dict())]

    assert diagnosis.stopped_at == ("auth" if refused else None)
    line = expected_auth_line(mechanism, server).decode()
    needles = [TOKEN, base64.b64encode(TOKEN.encode()).decode(), line.split()[2]]
    records = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}"
                        for r in caplog.records)
    assert "flask_smtp_senders.transport" in records or not refused  # the log is live
    assert [n for n in needles if n in records] == []
    assert [n for n in needles if n in "\n".join(shown)] == []
