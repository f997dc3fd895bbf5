"""Advice for a refused sign-in picked by its enhanced status code (RFC 3463), against a
ScriptedServer answering AUTH as Microsoft 365 and Google do.

Why: from the end of December 2026 Microsoft 365 refuses password sign-in for SMTP by
default (5.7.139, 5.7.30), and Google refuses account passwords (5.7.8, 5.7.9); "the
server refused the Username or Password" sends administrators after the wrong fix. Only
the code's digits may count: the reply's words are the server's and never shown.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from flask_smtp_senders import AccessToken, SenderSettings, get_service
from flask_smtp_senders.errors import DeliveryError
from flask_smtp_senders.sealed import Secret
from flask_smtp_senders.settings import DEFAULTS
from flask_smtp_senders.smtp import transport
from flask_smtp_senders.smtp.diagnosis import Diagnosis
from flask_smtp_senders.smtp.trace import Trace
from tests.support.cases import CASE_CONFIG, RECIPIENT, Host, msg
from tests.support.scripted_smtp import ScriptedServer, client_options
from tests.support.smtp_servers import LOOPBACK, SERVER_NAME

pytestmark = pytest.mark.sqlite_only

MARKER = "zq-verbatim.marker-5e1b"
OFFICE365, GMAIL = "smtp.office365.com", "smtp.gmail.com"
NAMES = (OFFICE365, GMAIL, "smtp-relay.gmail.com", "smtp.googlemail.com", SERVER_NAME)

#: (Server Name, the server's AUTH reply, advice, the Enhanced code fact or None).
CASES = {
    "m365 basic off": (OFFICE365, "535 5.7.139 Authentication unsuccessful, basic "
                       "authentication is disabled", "auth_basic_disabled", "5.7.139"),
    "m365 basic off, other name": (SERVER_NAME, "535 5.7.139 Authentication unsuccessful",
                                   "auth_basic_disabled", "5.7.139"),
    "m365 client submission 550": (OFFICE365, "550 5.7.30 Basic authentication is not "
                                   "supported for Client Submission",
                                   "auth_basic_disabled", "5.7.30"),
    "m365 client submission 530": (OFFICE365, "530 5.7.30 Basic authentication is not "
                                   "supported", "auth_basic_disabled", "5.7.30"),
    "m365 smtp auth off": (OFFICE365, "535 5.7.3 Authentication unsuccessful",
                           "auth_smtp_disabled", "5.7.3"),
    "gmail password": (GMAIL, "535 5.7.8 Username and Password not accepted",
                       "auth_app_password", "5.7.8"),
    "gmail relay password": ("smtp-relay.gmail.com", "535 5.7.8 Username and Password not "
                             "accepted", "auth_app_password", "5.7.8"),
    "googlemail app password": ("smtp.googlemail.com", "534 5.7.9 Application-specific "
                                "password required", "auth_app_password", "5.7.9"),
    # today's advice: generic codes elsewhere, no code, or not a code read strictly
    "5.7.8 elsewhere": (SERVER_NAME, "535 5.7.8 Username and Password not accepted",
                        "auth_refused", None),
    "5.7.9 elsewhere": (SERVER_NAME, "534 5.7.9 Authentication mechanism is too weak",
                        "auth_failed", None),
    "plain 535 at gmail": (GMAIL, "535 Authentication failed", "auth_refused", None),
    "plain 535 at m365": (OFFICE365, "535 Authentication failed", "auth_refused", None),
    "code not first": (OFFICE365, "535 Failed 5.7.139", "auth_refused", None),
    "code run on": (OFFICE365, "535 5.7.1390 Authentication unsuccessful", "auth_refused",
                    None),
    "code glued to words": (OFFICE365, "535 5.7.139,basic", "auth_refused", None),
    "class not the reply's": (OFFICE365, "535 4.7.139 Authentication unsuccessful",
                              "auth_refused", None),
    "reply code not m365's": (OFFICE365, "554 5.7.139 Authentication unsuccessful",
                              "auth_failed", None),
}


@pytest.fixture(scope="module")
def provider_material(tls_material):
    """The session's TLS material, its good certificate also naming the providers."""
    cert = tls_material.ca.issue_cert("localhost", LOOPBACK, *NAMES)
    return dataclasses.replace(tls_material, good=cert)


@pytest.fixture
def provider_server(provider_material):
    """Factory: a started ScriptedServer that passes for every name of NAMES."""
    started: list[ScriptedServer] = []

    def start(**keywords) -> ScriptedServer:
        server = ScriptedServer(tls_material=provider_material, **keywords)
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.stop()


def refused_sign_in(server: ScriptedServer, name: str, material,
                    credential=None) -> tuple[Diagnosis, DeliveryError]:
    """transport.connect() to ``server`` under the Server Name ``name``: it must fail."""
    options = dataclasses.replace(
        client_options(server, material),
        resolver=lambda asked, _port: [server.host] if asked == name else [])
    trace = Trace()
    address = transport.ServerAddress(name, server.port, "alice")
    with pytest.raises(DeliveryError) as caught:
        transport.connect(address, credential or Secret("Pa55-word"), options, trace=trace)
    return trace.diagnosis(DEFAULTS), caught.value


def auth_facts(diagnosis: Diagnosis) -> dict[str, str]:
    [stage] = [stage for stage in diagnosis.stages if stage.name == "auth"]
    return dict(stage.facts)


def shown(diagnosis: Diagnosis, error: BaseException) -> str:
    return "\n".join([str(diagnosis), json.dumps(diagnosis.as_dict()), str(error),
                      repr(error)])


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_advice_follows_the_enhanced_code(provider_server, provider_material, case):
    name, reply, advice, enhanced = CASES[case]
    server = provider_server(auth=("LOGIN",), auth_reply=f"{reply} {MARKER}")

    diagnosis, error = refused_sign_in(server, name, provider_material)

    assert (error.stage, diagnosis.stopped_at) == ("auth", "auth")
    assert diagnosis.advice == DEFAULTS[f"SMTP_SENDERS_ADVICE_{advice.upper()}"].format(
        mechanisms="LOGIN")
    expected = {"Mechanism": "LOGIN", "Reply code": reply[:3]}
    if enhanced is not None:
        expected["Enhanced code"] = enhanced
    assert auth_facts(diagnosis) == expected
    assert len(server.auth_lines) == 3  # AUTH LOGIN, username, password: the reply came
    assert MARKER not in shown(diagnosis, error)


def test_the_provider_names_are_compared_in_any_case(provider_server, provider_material):
    server = provider_server(auth=("PLAIN",), auth_reply="534 5.7.9 Application-specific "
                                                         "password required")
    diagnosis, _ = refused_sign_in(server, "SMTP.Gmail.COM", provider_material)
    assert diagnosis.advice == DEFAULTS["SMTP_SENDERS_ADVICE_AUTH_APP_PASSWORD"]
    assert auth_facts(diagnosis)["Enhanced code"] == "5.7.9"


def test_a_refused_access_token_keeps_its_own_advice(provider_server, provider_material):
    """Google's refusal of a token is its 5.7.8 too: the token's advice, not the password's."""
    server = provider_server(auth=("XOAUTH2",))
    wrong = AccessToken("ya29.not-alices-token")

    diagnosis, error = refused_sign_in(server, GMAIL, provider_material, wrong)

    assert error.token_refused
    assert diagnosis.advice == DEFAULTS["SMTP_SENDERS_ADVICE_AUTH_TOKEN_REFUSED"]
    assert "Enhanced code" not in auth_facts(diagnosis)


def test_send_test_email_tells_microsoft_365s_refusal(make_app, provider_server):
    """Through the service, as the edit page's Send Test Email: the contract's failure
    message is unchanged, the diagnosis has the new advice and the code."""
    host = Host()
    app = make_app(plugins=[host], **CASE_CONFIG)
    server = provider_server(auth=("LOGIN",), auth_reply=f"535 5.7.139 {MARKER}")
    host.routes[OFFICE365] = [server.host]
    with app.app_context():
        service = get_service(app)
        sender = service.create_sender(SenderSettings(
            username="alice@example.com", server_name=OFFICE365, port=server.port,
            from_name="Acme", from_address="alice@example.com"), "Pa55-word")

        result = service.send_test_email(sender.id, RECIPIENT)

    assert (result.ok, result.stage, result.message) == (False, "auth", msg("auth_failed"))
    assert result.diagnosis.advice == DEFAULTS["SMTP_SENDERS_ADVICE_AUTH_BASIC_DISABLED"]
    assert auth_facts(result.diagnosis)["Enhanced code"] == "5.7.139"
    assert MARKER not in shown(result.diagnosis, Exception(result.message))
