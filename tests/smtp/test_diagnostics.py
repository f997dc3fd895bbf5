"""Staged diagnostics of Send Test Email and of the connection check (the dry run), against
real SMTP and TCP servers on loopback: which stages ran and in what order, the facts we
show, where it stopped, the advice, and that no server text or secret ever gets in.

No mocking of smtplib, sockets or ssl: every failure here is the real one.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import socket
import time
from collections.abc import Iterator

import pytest
from cryptography.fernet import Fernet

from flask_smtp_senders import InvalidSenderData, SenderSettings, get_service, hookimpl
from flask_smtp_senders.events import ConnectionChecked
from flask_smtp_senders.oauth import ADVICE_KEYS as TOKEN_ADVICE_KEYS
from flask_smtp_senders.settings import DEFAULTS
from flask_smtp_senders.smtp.advice import ADVICE_NAMES
from flask_smtp_senders.smtp.diagnosis import LABELS, Diagnosis
from tests.support.cases import (
    CASE_CONFIG,
    HARNESS_LOGGERS,
    RECIPIENT,
    Host,
    msg,
    secret_forms,
)
from tests.support.smtp_servers import (
    LOOPBACK,
    SERVER_NAME,
    RawTCPServer,
    RecordingServer,
    SilentServer,
)

#: Diagnostics do not depend on the database: SQLite is enough.
pytestmark = pytest.mark.sqlite_only

PASSWORD = "Diag-Pa55word"
USERS = {"alice": PASSWORD}
FROM = "noreply@example.com"
QUICK = {"SMTP_SENDERS_OPERATION_TIMEOUT": 0.5, "SMTP_SENDERS_TIMEOUT": 2.0}
SEND_STAGES = ["resolve", "connect", "tls", "ehlo", "auth", "mail", "rcpt", "data"]
CHECK_STAGES = ["resolve", "connect", "tls", "ehlo", "auth", "mail", "rcpt", "reset"]
EXPIRES = datetime.datetime(2031, 5, 17, 12, 0, tzinfo=datetime.timezone.utc)


def advice(name: str, **values: object) -> str:
    """The default text of ``SMTP_SENDERS_ADVICE_<NAME>``."""
    return DEFAULTS[f"SMTP_SENDERS_ADVICE_{name.upper()}"].format(**values)


@pytest.fixture
def host() -> Host:
    return Host()


@pytest.fixture
def make_diag_app(make_app, host):
    return lambda *plugins, **config: make_app(plugins=[host, *plugins],
                                               **{**CASE_CONFIG, **config})


@pytest.fixture
def app(make_diag_app):
    return make_diag_app()


@pytest.fixture
def named_material(tls_material):
    """TLS material whose good certificate has a subject CN and a known expiry date."""
    cert = tls_material.ca.issue_cert("localhost", LOOPBACK, SERVER_NAME,
                                      common_name=SERVER_NAME, not_after=EXPIRES)
    return dataclasses.replace(tls_material, good=cert)


@pytest.fixture
def named_server(named_material) -> Iterator:
    """Factory: a RecordingServer with the named certificate, stopped at teardown."""
    started: list[RecordingServer] = []

    def start(mode: str, **options: object) -> RecordingServer:
        server = RecordingServer(mode, tls_material=named_material, users=USERS, **options)
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.stop()


def add(service, host, server, *, password=PASSWORD, addresses=None, **fields):
    """Save a sender whose Server Name leads to ``server`` (anything with host and port)."""
    host.routes[SERVER_NAME] = list(addresses or [server.host])
    values = {"username": "alice", "server_name": SERVER_NAME, "port": server.port,
              "from_name": "Acme Notifications", "from_address": FROM, **fields}
    return service.create_sender(SenderSettings(**values), password)


def names(diagnosis: Diagnosis) -> list[str]:
    return [stage.name for stage in diagnosis.stages]


def facts(diagnosis: Diagnosis, name: str) -> dict[str, str]:
    [stage] = [stage for stage in diagnosis.stages if stage.name == name]
    return dict(stage.facts)


def failed_stages(diagnosis: Diagnosis) -> list[str]:
    return [stage.name for stage in diagnosis.stages if not stage.ok]


def assert_well_formed(diagnosis: Diagnosis) -> None:
    """Labels match names, times are sane, and as_dict() survives JSON."""
    for stage in diagnosis.stages:
        assert stage.label == LABELS[stage.name]
        assert stage.ms >= 0
        assert all(isinstance(label, str) and isinstance(value, str)
                   for label, value in stage.facts)
    assert diagnosis.total_ms >= sum(stage.ms for stage in diagnosis.stages) - 0.01
    as_json = json.loads(json.dumps(diagnosis.as_dict()))
    assert [s["name"] for s in as_json["stages"]] == names(diagnosis)
    assert as_json["stopped_at"] == diagnosis.stopped_at
    assert as_json["advice"] == diagnosis.advice


def assert_stopped(diagnosis: Diagnosis, stage: str, advice_text: str | None) -> None:
    """Failed at ``stage`` (the last stage that ran, the only one failed) with the advice."""
    assert_well_formed(diagnosis)
    assert diagnosis.stopped_at == stage
    assert names(diagnosis)[-1] == stage and failed_stages(diagnosis) == [stage]
    assert diagnosis.advice == advice_text


# -- success ----------------------------------------------------------------------------


def test_implicit_tls_success_records_every_stage_in_order(service, host, named_server):
    server = named_server("implicit", pipelining=True)
    sender = add(service, host, server)

    result = service.send_test_email(sender.id, RECIPIENT)

    assert result.ok and result.message == msg("test_success", recipient=RECIPIENT)
    diagnosis = result.diagnosis
    assert_well_formed(diagnosis)
    assert names(diagnosis) == SEND_STAGES
    assert failed_stages(diagnosis) == [] and diagnosis.stopped_at is None
    assert diagnosis.advice is None
    assert facts(diagnosis, "resolve") == {"Addresses found": "1", "Connected to": LOOPBACK}
    assert facts(diagnosis, "connect") == {"Address": LOOPBACK, "Port": str(server.port)}
    tls = facts(diagnosis, "tls")
    assert tls["Protocol"] in ("TLSv1.2", "TLSv1.3") and tls["Cipher"]
    assert tls["Certificate name"] == SERVER_NAME
    assert tls["Certificate expires"] == "2031-05-17"
    assert tls["Issued by"].startswith("trustme")  # the test CA's name: it has no CN
    ehlo = facts(diagnosis, "ehlo")
    assert ehlo["AUTH mechanisms offered"] == "LOGIN, PLAIN"
    assert ehlo["SIZE"].isdigit() and ehlo["PIPELINING"] == "yes"
    assert "STARTTLS offered" not in ehlo  # an SMTPS port never asks
    assert facts(diagnosis, "auth") == {"Mechanism": "PLAIN", "Reply code": "235"}
    assert [facts(diagnosis, name) for name in ("mail", "rcpt", "data")] == [
        {"Reply code": "250"}] * 3
    assert len(server.messages) == 1


def test_starttls_success_records_the_ehlo_before_tls(service, host, named_server):
    server = named_server("starttls", port=587)
    sender = add(service, host, server)

    result = service.send_test_email(sender.id, RECIPIENT)

    assert result.ok, result
    diagnosis = result.diagnosis
    assert_well_formed(diagnosis)
    assert names(diagnosis) == ["resolve", "connect", "ehlo", "tls", "auth", "mail", "rcpt",
                                "data"]
    assert failed_stages(diagnosis) == [] and diagnosis.stopped_at is None
    ehlo = facts(diagnosis, "ehlo")
    assert ehlo["STARTTLS offered"] == "yes"
    assert ehlo["AUTH mechanisms offered"] == "LOGIN, PLAIN"  # offered only after TLS
    assert ehlo["PIPELINING"] == "no"
    tls = facts(diagnosis, "tls")
    assert tls["Protocol"].startswith("TLSv1.") and tls["Certificate name"] == SERVER_NAME
    assert [c.verb for c in server.commands][:3] == ["EHLO", "STARTTLS", "EHLO"]


def test_a_refused_first_address_is_retried_and_shown_as_passed(service, host, named_server):
    """127.0.0.2 refuses (the server listens on LOOPBACK only); the next address works."""
    server = named_server("implicit")
    sender = add(service, host, server, addresses=["127.0.0.2", LOOPBACK])

    diagnosis = service.send_test_email(sender.id, RECIPIENT).diagnosis

    assert names(diagnosis) == SEND_STAGES and failed_stages(diagnosis) == []
    assert facts(diagnosis, "resolve") == {"Addresses found": "2", "Connected to": LOOPBACK}
    assert facts(diagnosis, "connect")["Address"] == LOOPBACK


# -- the dry run ------------------------------------------------------------------------


def test_check_passes_without_delivering_anything(service, host, named_server):
    server = named_server("implicit")
    sender = add(service, host, server)

    result = service.check_connection(sender.id)

    assert (result.ok, result.stage) == (True, None)
    assert result.message == DEFAULTS["SMTP_SENDERS_MSG_CHECK_SUCCESS"]
    assert_well_formed(result.diagnosis)
    assert names(result.diagnosis) == CHECK_STAGES
    assert failed_stages(result.diagnosis) == [] and result.diagnosis.stopped_at is None
    assert facts(result.diagnosis, "reset") == {"RSET reply code": "250",
                                                "QUIT reply code": "221"}
    assert server.messages == []
    assert server.mail_from_seen == [FROM] and server.rcpt_seen == [FROM]
    assert server.verbs[-4:] == ["MAIL", "RCPT", "RSET", "QUIT"]
    assert "DATA" not in server.verbs
    stored = service.get_sender(sender.id)
    assert (stored.last_test_ok, stored.last_test_at, stored.version) == (
        None, None, sender.version)
    event = host.events[-1]
    assert isinstance(event, ConnectionChecked)
    assert (event.action, event.sender_id, event.outcome, event.stage, event.actor) == (
        "connection_checked", sender.id, "success", "", "admin@portal")


def test_check_uses_the_recipient_given_and_a_blank_one_means_the_from_address(
        service, host, named_server):
    server = named_server("starttls", port=587)
    sender = add(service, host, server)

    assert service.check_connection(sender.id, " " + RECIPIENT).ok
    assert service.check_connection(sender.id, "  ").ok

    assert server.rcpt_seen == [RECIPIENT, FROM]
    assert server.messages == [] and "DATA" not in server.verbs


def test_check_refuses_a_bad_recipient_before_connecting(service, host, named_server):
    server = named_server("implicit")
    sender = add(service, host, server)

    with pytest.raises(InvalidSenderData):
        service.check_connection(sender.id, "a@example.com, b@example.com")
    assert server.connections == 0


def test_check_refused_recipient_is_reported_at_rcpt(service, host, named_server):
    server = named_server("implicit", refuse_rcpt=[RECIPIENT])
    sender = add(service, host, server)

    result = service.check_connection(sender.id, RECIPIENT)

    assert (result.ok, result.stage, result.message) == (False, "recipient",
                                                        msg("recipient_refused"))
    assert_stopped(result.diagnosis, "rcpt", advice("recipient_refused"))
    assert names(result.diagnosis) == CHECK_STAGES[:-1]
    assert facts(result.diagnosis, "rcpt") == {"Reply code": "550"}
    assert "DATA" not in server.verbs and server.messages == []
    event = host.events[-1]
    assert isinstance(event, ConnectionChecked)
    assert (event.outcome, event.stage) == ("failure", "recipient")


def test_check_refused_sender_is_reported_at_mail(service, host, named_server):
    server = named_server("implicit", refuse_mail=[FROM])
    sender = add(service, host, server)

    result = service.check_connection(sender.id)

    assert (result.ok, result.stage) == (False, "sender")
    assert_stopped(result.diagnosis, "mail", advice("sender_refused"))
    assert facts(result.diagnosis, "mail") == {"Reply code": "553"}
    assert server.rcpt_seen == []


# -- failures, stage by stage -----------------------------------------------------------


@pytest.mark.parametrize("mode", ["starttls", "plain"])
def test_smtps_port_with_a_plain_smtp_server_advises_starttls(service, host, smtp_server,
                                                              mode):
    server = smtp_server(mode, users=USERS)  # a free port: the port rule says SMTPS
    sender = add(service, host, server)

    result = service.send_test_email(sender.id, RECIPIENT)

    assert (result.ok, result.stage, result.message) == (False, "tls", msg("tls_failed"))
    assert_stopped(result.diagnosis, "tls", advice("expects_starttls", port=server.port))
    assert names(result.diagnosis) == ["resolve", "connect", "tls"]
    assert facts(result.diagnosis, "tls") == {
        "Problem": "wrong version number (the server is not speaking TLS)"}


def test_starttls_port_without_starttls_says_so(service, host, smtp_server):
    server = smtp_server("plain", port=587, users=USERS)
    sender = add(service, host, server)

    result = service.check_connection(sender.id)

    assert (result.ok, result.stage) == (False, "tls")
    assert_stopped(result.diagnosis, "tls", advice("starttls_not_offered", port=587))
    assert facts(result.diagnosis, "ehlo") == {"STARTTLS offered": "no"}
    assert facts(result.diagnosis, "tls") == {"Problem": "STARTTLS not offered"}
    assert server.auth_attempts == [] and server.mail_from_seen == []


def test_starttls_refused_when_asked(service, host, smtp_server):
    server = smtp_server("starttls_refused", port=587, users=USERS)
    sender = add(service, host, server)

    result = service.check_connection(sender.id)

    assert_stopped(result.diagnosis, "tls", advice("starttls_refused", port=587))
    assert facts(result.diagnosis, "tls") == {"Problem": "STARTTLS refused"}


def test_starttls_port_with_an_implicit_tls_server_advises_port_465(make_diag_app, host,
                                                                    smtp_server):
    """The server waits for a TLS hello and never greets: on a STARTTLS port that means
    the port is wrong, not that the server is slow."""
    server = smtp_server("implicit", port=2525, users=USERS)
    app = make_diag_app(**QUICK)
    with app.app_context():
        service = get_service(app)
        sender = add(service, host, server)
        result = service.check_connection(sender.id)

    assert (result.ok, result.stage) == (False, "timeout")
    assert_stopped(result.diagnosis, "ehlo", advice("expects_tls", port=2525))
    assert names(result.diagnosis) == ["resolve", "connect", "ehlo"]


class TLSAlertServer(RawTCPServer):
    """Answers a connection at once with a TLS alert record instead of an SMTP greeting."""

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.sendall(b"\x15\x03\x03\x00\x02\x02\x46")
        except OSError:
            return
        self._stopping.wait()


def test_starttls_port_greeted_with_tls_bytes_advises_port_465(make_diag_app, host):
    """TLS bytes hold no line end: the greeting never completes."""
    app = make_diag_app(**QUICK)
    with TLSAlertServer(2525) as server, app.app_context():
        service = get_service(app)
        sender = add(service, host, server)
        result = service.check_connection(sender.id)

    assert (result.ok, result.stage) == (False, "timeout")
    assert_stopped(result.diagnosis, "ehlo", advice("expects_tls", port=2525))


@pytest.mark.parametrize("cert, problem, name", [
    ("unknown_ca", "certificate not trusted", "tls_untrusted"),
    ("wrong_host", "certificate for another name", "tls_wrong_name"),
    ("expired", "certificate expired", "tls_expired"),
])
@pytest.mark.parametrize("mode, port", [("implicit", None), ("starttls", 587)])
def test_certificate_problems_are_named(service, host, smtp_server, cert, problem, name,
                                        mode, port):
    server = smtp_server(mode, port=port, cert=cert, users=USERS)
    sender = add(service, host, server)

    result = service.send_test_email(sender.id, RECIPIENT)

    assert (result.ok, result.stage, result.message) == (False, "tls", msg("tls_failed"))
    assert_stopped(result.diagnosis, "tls", advice(name))
    assert facts(result.diagnosis, "tls") == {"Problem": problem}
    assert server.auth_attempts == [] and server.mail_from_seen == []


def test_private_ca_advice_names_the_setting(service, host, smtp_server):
    server = smtp_server("implicit", cert="unknown_ca", users=USERS)
    sender = add(service, host, server)
    assert "SMTP_SENDERS_CA_FILE" in service.check_connection(sender.id).diagnosis.advice


def test_refused_credentials_list_the_mechanisms_offered(service, host, smtp_server):
    junk = "lowercase x" + "Y" * 21 + " XOAUTH2 LOGIN"  # only XOAUTH2 is new and plain
    server = smtp_server("implicit", users={"alice": "another-password"},
                         ehlo_lines=[f"AUTH {junk}"])
    sender = add(service, host, server)

    result = service.send_test_email(sender.id, RECIPIENT)

    assert (result.ok, result.stage, result.message) == (False, "auth", msg("auth_failed"))
    assert_stopped(result.diagnosis, "auth",
                   advice("auth_refused", mechanisms="LOGIN, PLAIN, XOAUTH2"))
    assert result.diagnosis.advice == ("The server refused the Username or Password. It "
                                       "offered these sign-in methods: LOGIN, PLAIN, XOAUTH2.")
    assert facts(result.diagnosis, "auth") == {"Mechanism": "PLAIN", "Reply code": "535"}
    assert facts(result.diagnosis, "ehlo")["AUTH mechanisms offered"] == "LOGIN, PLAIN, XOAUTH2"


def test_at_most_ten_mechanisms_are_shown(service, host, smtp_server):
    many = " ".join(f"M{n}" for n in range(20))
    server = smtp_server("implicit", users={"alice": "another-password"},
                         ehlo_lines=[f"AUTH {many}"])
    sender = add(service, host, server)

    diagnosis = service.check_connection(sender.id).diagnosis

    shown = facts(diagnosis, "ehlo")["AUTH mechanisms offered"].split(", ")
    assert shown == ["LOGIN", "PLAIN", *[f"M{n}" for n in range(8)]]


def test_server_without_auth(service, host, smtp_server):
    server = smtp_server("implicit", auth=False)
    sender = add(service, host, server)

    result = service.check_connection(sender.id)

    assert (result.ok, result.stage) == (False, "auth")
    assert_stopped(result.diagnosis, "auth", advice("auth_not_offered"))
    assert facts(result.diagnosis, "ehlo")["AUTH mechanisms offered"] == "none"


def test_closed_port_advises_checking_the_port(service, host, closed_port):
    class Closed:
        host, port = LOOPBACK, closed_port

    sender = add(service, host, Closed)
    result = service.check_connection(sender.id)

    assert (result.ok, result.stage, result.message) == (False, "connect",
                                                        msg("connect_failed"))
    assert_stopped(result.diagnosis, "connect",
                   advice("connection_refused", port=closed_port))
    assert str(closed_port) in result.diagnosis.advice


class FullBacklog:
    """A listener whose accept queue is full, so a new connection gets no answer at all
    (Linux drops the SYN): what a firewall that drops packets looks like."""

    host = LOOPBACK

    def __enter__(self) -> FullBacklog:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind((self.host, 0))
        self._listener.listen(0)
        self.port = self._listener.getsockname()[1]
        self._filler = socket.create_connection((self.host, self.port), timeout=1.0)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._filler.close()
        self._listener.close()


def test_connect_timeout_suggests_a_firewall(make_diag_app, host):
    app = make_diag_app(**QUICK)
    with FullBacklog() as server, app.app_context():
        service = get_service(app)
        sender = add(service, host, server)
        started = time.monotonic()
        result = service.check_connection(sender.id)
        elapsed = time.monotonic() - started

    assert (result.ok, result.stage) == (False, "timeout")
    assert_stopped(result.diagnosis, "connect", advice("connect_timeout", port=server.port))
    assert elapsed < 1.5, elapsed


def test_unresolvable_name_advises_checking_the_server_name(service, host, smtp_server):
    server = smtp_server("implicit", users=USERS)
    sender = add(service, host, server)
    host.routes.clear()  # the resolver hook returns nothing

    result = service.check_connection(sender.id)

    assert (result.ok, result.stage, result.message) == (False, "resolve",
                                                        msg("resolve_failed"))
    assert_stopped(result.diagnosis, "resolve", advice("resolve_failed"))
    assert server.connections == 0


class BrokenResolver:
    @hookimpl
    def smtp_senders_resolve(self, server_name, port):
        raise OSError("no such name")


def test_a_resolver_that_raises_is_a_resolve_failure(make_diag_app, host, smtp_server):
    server = smtp_server("implicit", users=USERS)
    app = make_diag_app(BrokenResolver())
    with app.app_context():
        service = get_service(app)
        sender = add(service, host, server)
        result = service.send_test_email(sender.id, RECIPIENT)

    assert_stopped(result.diagnosis, "resolve", advice("resolve_failed"))
    assert names(result.diagnosis) == ["resolve"]


def test_refused_destination_names_the_settings(make_diag_app, host, smtp_server):
    server = smtp_server("implicit", users=USERS)
    app = make_diag_app(SMTP_SENDERS_ALLOW_LOOPBACK=False)
    with app.app_context():
        service = get_service(app)
        sender = add(service, host, server)
        result = service.check_connection(sender.id)

    assert (result.ok, result.message) == (False, msg("destination_refused"))
    assert_stopped(result.diagnosis, "connect", advice("destination_refused"))
    assert "SMTP_SENDERS_ALLOW_PRIVATE" in result.diagnosis.advice
    assert "SMTP_SENDERS_DENIED_NETWORKS" in result.diagnosis.advice
    assert facts(result.diagnosis, "connect") == {"Refused address": LOOPBACK}
    assert server.connections == 0


def test_refused_from_address_in_a_test_email(service, host, smtp_server):
    server = smtp_server("implicit", users=USERS, refuse_mail=[FROM])
    sender = add(service, host, server)

    result = service.send_test_email(sender.id, RECIPIENT)

    assert (result.ok, result.stage, result.message) == (False, "sender",
                                                        msg("sender_refused"))
    assert_stopped(result.diagnosis, "mail", advice("sender_refused"))
    assert "own address" in result.diagnosis.advice


def test_refused_recipient_in_a_test_email(service, host, smtp_server):
    server = smtp_server("implicit", users=USERS, refuse_rcpt=[RECIPIENT])
    sender = add(service, host, server)

    result = service.send_test_email(sender.id, RECIPIENT)

    assert (result.ok, result.stage) == (False, "recipient")
    assert_stopped(result.diagnosis, "rcpt", advice("recipient_refused"))
    assert facts(result.diagnosis, "mail") == {"Reply code": "250"}


def test_refused_message_is_reported_at_data(service, host, smtp_server):
    server = smtp_server("implicit", users=USERS, reject_content=[b"This is a test message"])
    sender = add(service, host, server)

    result = service.send_test_email(sender.id, RECIPIENT)

    assert (result.ok, result.stage, result.message) == (False, "data", msg("data_failed"))
    assert_stopped(result.diagnosis, "data", advice("data_refused"))
    assert facts(result.diagnosis, "data") == {"Reply code": "554"}


def test_temporary_refusal_names_the_stage(service, host, smtp_server):
    server = smtp_server("implicit", users=USERS, tempfail_mail=1)
    sender = add(service, host, server)

    result = service.check_connection(sender.id)

    assert_stopped(result.diagnosis, "mail", advice("temporary", stage="MAIL FROM"))
    assert facts(result.diagnosis, "mail") == {"Reply code": "451"}


def test_silent_server_times_out_during_tls(make_diag_app, host):
    app = make_diag_app(**QUICK)
    with SilentServer() as server, app.app_context():
        service = get_service(app)
        sender = add(service, host, server)
        result = service.check_connection(sender.id)

    assert (result.ok, result.stage, result.message) == (False, "timeout", msg("timeout"))
    assert_stopped(result.diagnosis, "tls", "The server stopped answering during TLS.")


def test_server_hanging_after_data_times_out_during_data(make_diag_app, host, smtp_server):
    server = smtp_server("implicit", users=USERS, hang_after_data=4.0)
    app = make_diag_app(**QUICK)
    with app.app_context():
        service = get_service(app)
        sender = add(service, host, server)
        result = service.send_test_email(sender.id, RECIPIENT)

    assert (result.ok, result.stage) == (False, "timeout")
    assert_stopped(result.diagnosis, "data", "The server stopped answering during DATA.")


def test_unreadable_password_has_a_diagnosis_without_stages(make_diag_app, host,
                                                            smtp_server):
    server = smtp_server("implicit", users=USERS)
    with make_diag_app().app_context():
        sender_id = add(get_service(), host, server).id
    other_key = Fernet.generate_key().decode()
    with make_diag_app(SMTP_SENDERS_ENCRYPTION_KEYS=[other_key]).app_context():
        service = get_service()
        tested = service.send_test_email(sender_id, RECIPIENT)
        checked = service.check_connection(sender_id)

    for result in (tested, checked):
        assert (result.ok, result.stage) == (False, "password")
        assert result.diagnosis == Diagnosis((), "password", None, 0.0)
        assert result.message in (msg("password_reentry"), msg("password_unbound"))
    assert server.connections == 0
    event = host.events[-1]
    assert isinstance(event, ConnectionChecked) and event.stage == "password"


# -- the catalogue ----------------------------------------------------------------------


def test_every_advice_has_a_setting_and_every_setting_is_used():
    keys = {k.removeprefix("SMTP_SENDERS_ADVICE_").lower() for k in DEFAULTS
            if k.startswith("SMTP_SENDERS_ADVICE_")}
    assert keys == ADVICE_NAMES | {key.lower() for key in TOKEN_ADVICE_KEYS}


def test_the_host_may_reword_advice(make_diag_app, host, closed_port):
    class Closed:
        host, port = LOOPBACK, closed_port

    app = make_diag_app(SMTP_SENDERS_ADVICE_CONNECTION_REFUSED="Port {port} is shut.")
    with app.app_context():
        sender = add(get_service(app), host, Closed)
        result = get_service(app).check_connection(sender.id)
    assert result.diagnosis.advice == f"Port {closed_port} is shut."


def test_the_contract_sentences_are_unchanged():
    assert DEFAULTS["SMTP_SENDERS_MSG_TEST_SUCCESS"] == (
        "A test message was successfully sent to {recipient}.")
    assert DEFAULTS["SMTP_SENDERS_MSG_AUTH_FAILED"] == (
        "Using the credentials you provided, we couldn't authenticate with your email server.")


# -- nothing verbatim, nothing secret ---------------------------------------------------

MARKER = "zq-verbatim.marker-7f3a9c"
ECHO = f"{MARKER} {PASSWORD}"

#: Server options, and the reply carrying the marker and the password that it sends.
SWEEP_CASES = {
    "success": ({}, f"220 {SERVER_NAME} {ECHO}"),
    "wrong password": ({"users": {"alice": "another-password"}}, f"535 5.7.8 {ECHO}"),
    "mail refused": ({"refuse_mail": [FROM]}, f"553 5.7.1 {ECHO}"),
    "rcpt refused": ({"refuse_rcpt": [RECIPIENT]}, f"550 5.1.1 {ECHO}"),
    "data refused": ({"reject_content": [b"This is a test message"]}, f"554 5.6.0 {ECHO}"),
}


@pytest.mark.parametrize("case", sorted(SWEEP_CASES))
def test_no_server_text_or_secret_reaches_a_diagnosis(service, host, smtp_server, caplog,
                                                      case):
    """The server greets, answers EHLO and refuses with a marker and the password; none of
    it may show in a diagnosis, its JSON, a result message or our own log records (the
    transport's documented failure line carries server replies, password scrubbed)."""
    caplog.set_level(logging.DEBUG)
    extra, echoed = SWEEP_CASES[case]
    options = {"users": USERS, **extra}
    server = smtp_server("implicit", reply_text=ECHO,
                         ehlo_lines=[f"AUTH {MARKER} {PASSWORD}", f"SIZE {MARKER}",
                                     f"X-{MARKER}"], **options)
    sender = add(service, host, server)

    results = [service.send_test_email(sender.id, RECIPIENT),
               service.check_connection(sender.id, RECIPIENT)]

    needles = [MARKER, *secret_forms(PASSWORD, "alice")]
    passes = [case == "success", case in ("success", "data refused")]  # a check sends no DATA
    assert [result.ok for result in results] == passes
    for result in results:
        hay = "\n".join([str(result.diagnosis), json.dumps(result.diagnosis.as_dict()),
                         result.message, repr(result)])
        assert [needle for needle in needles if needle in hay] == [], case
        assert "SIZE" not in facts(result.diagnosis, "ehlo")
    app_records = [r for r in caplog.records if not r.name.startswith(HARNESS_LOGGERS)]
    text = "\n".join(r.getMessage() + str(r.exc_text or "") for r in app_records)
    assert [n for n in secret_forms(PASSWORD, "alice") if n in text] == []
    sent = [r.getMessage() for r in caplog.records if r.name == "mail.log"]
    assert any(echoed in line for line in sent)  # the server did echo: the sweep is live
    for record in app_records:
        if MARKER in record.getMessage():
            assert (record.name, record.msg) == (
                "flask_smtp_senders.transport", "SMTP %s failed at stage %s for %s:%s: %s")
