"""schemathesis against the example portal's JSON API, over real HTTP, on both databases.

The portal runs on a loopback werkzeug server with its API token; schemathesis loads the
OpenAPI document the portal serves and sends what it generates from it: valid and invalid
data for every operation, then chains of calls through the document's links (create, then
read, change, test and delete the sender just made, its ETag in If-Match). Every answer
must be documented (status, content type, headers, body schema), never a 5xx, and never
hold a password any request of the run sent, a Fernet token or a ``password`` member.

Nothing leaves the machine: a plugin resolves every Server Name to LOOPBACK and allows a
connection only to the port of the test's own SMTP server, so the generated senders cost
no DNS query and no stray connection, while a sender naming that server and its user
really delivers its test emails there.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from cryptography.fernet import Fernet
from flask import Flask
from hypothesis import HealthCheck
from hypothesis.errors import Flaky, Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ensure_resource_availability,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    use_after_free,
)
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from example_app import create_app, db
from flask_smtp_senders import hookimpl
from flask_smtp_senders.web.api import openapi_document
from tests.support.databases import Database
from tests.support.smtp_servers import LOOPBACK, SERVER_NAME, RecordingServer

API = "/settings/senders/api"
TOKEN = "schemathesis-" + secrets.token_urlsafe(16)
SMTP_USER = "alice"
#: The real sender's password: long and distinctive, so finding it in an answer means
#: it leaked (the generated ones are checked too, see ``Secrets``).
SMTP_PASSWORD = "Real-Pa55-" + secrets.token_hex(12)
RECIPIENT = "admin@example.com"
#: Shorter generated passwords are left out of the check: "0" or "ab" is in many answers.
MIN_CHECKED_PASSWORD = 8
FERNET_PREFIX = "gAAAAA"  # every Fernet token starts with these (version byte, timestamp)

#: Examples per operation and generation mode; with the stateful scenarios below, one
#: database takes about 15 s (both about 30 s) on a laptop.
EXAMPLES = 30
STATEFUL_SCENARIOS = 40
STATEFUL_STEPS = 10
FUZZ_SETTINGS = hypothesis.settings(
    max_examples=EXAMPLES, deadline=None, database=None,
    suppress_health_check=list(HealthCheck),
    phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate, hypothesis.Phase.shrink])
#: No shrinking: a replay against a database that has moved on would not be the same run.
STATEFUL_SETTINGS = hypothesis.settings(
    max_examples=STATEFUL_SCENARIOS, stateful_step_count=STATEFUL_STEPS, deadline=None,
    database=None, suppress_health_check=list(HealthCheck),
    phases=[hypothesis.Phase.generate])
#: Checked for every answer (plus ``no_secret_in_answer``); negative cases must also be
#: refused, and the chains must find what they created and not what they deleted.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]
NEGATIVE_CHECKS = [negative_data_rejection]
STATEFUL_CHECKS = [use_after_free, ensure_resource_availability]


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        """No access log line per request on the test's output."""


class LoopbackOnly:
    """Every Server Name is LOOPBACK, and only the test's SMTP server may be reached."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.allowed: list[tuple[str, int]] = []
        self.refused: list[tuple[str, int]] = []

    @hookimpl
    def smtp_senders_resolve(self, server_name: str, port: int) -> list[str]:
        return [LOOPBACK]

    @hookimpl
    def smtp_senders_destination_allowed(self, server_name: str, port: int,
                                         address: str) -> bool:
        allowed = address == LOOPBACK and port == self.port
        (self.allowed if allowed else self.refused).append((server_name, port))
        return allowed


def _strings(value: object) -> Iterator[str]:
    """Every string of a JSON document, member names included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _password_members(value: object, *, in_errors: bool = False) -> Iterator[object]:
    """``password`` members, but for the keys of a problem's ``errors`` map (they name a
    field; their values are the server's messages, never what was sent)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "password" and not in_errors:
                yield item
            yield from _password_members(item, in_errors=key == "errors")
    elif isinstance(value, list):
        for item in value:
            yield from _password_members(item)


@dataclass
class Secrets:
    """Every password the run sent, and the check that no answer gives one back.

    schemathesis draws values from the document (its examples, enums) and from earlier
    answers ("about:blank", "conflict"...), for a password too: such a password comes
    back as that value, not as a leak, so it is not watched; nor is one also sent in
    another field (a username), nor a short one ("0" is in many answers).
    """

    #: The OpenAPI document, case-folded.
    document: str = ""
    #: The passwords watched.
    passwords: set[str] = field(default_factory=lambda: {SMTP_PASSWORD})
    #: Every other string sent, and every string heard in an answer (case-folded).
    other_values: set[str] = field(default_factory=set)
    heard: set[str] = field(default_factory=set)

    def record(self, body: object) -> None:
        if not isinstance(body, dict):
            return
        for name, value in body.items():
            if isinstance(value, str) and name != "password":
                self.other_values.add(value.casefold())
        password = body.get("password")
        if isinstance(password, str) and len(password.strip()) >= MIN_CHECKED_PASSWORD:
            folded = password.casefold()
            if folded not in self.document and not any(
                    folded in value for value in self.heard | self.other_values):
                self.passwords.add(password)

    def check(self, response: schemathesis.Response, case: schemathesis.Case) -> None:
        text = response.content.decode("utf-8", "replace")
        headers = [f"{name}: {value}" for name, values in response.headers.items()
                   for value in values]
        found = [text, *headers]
        if text and "json" in response.headers.get("content-type", [""])[0]:
            document = json.loads(text)
            found += _strings(document)
            if case.operation.path != "/openapi.json":  # it describes the field
                assert not list(_password_members(document)), (
                    "the answer has a password member")
        self.heard.update(value.casefold() for value in found[1:])
        if not any(FERNET_PREFIX.casefold() in value for value in self.other_values):
            assert not any(FERNET_PREFIX in value for value in found), (
                "a Fernet token is in the answer")
        leaked = [password for password in self.passwords
                  if not any(password.casefold() in value for value in self.other_values)
                  and any(password in value for value in found)]
        assert not leaked, f"the answer holds a password a request sent: {leaked!r}"


@dataclass
class Portal:
    """The example portal on a live loopback server, and what the run saw."""

    app: Flask
    root: str
    session: requests.Session
    smtp: RecordingServer
    plugin: LoopbackOnly
    secrets: Secrets = field(default_factory=Secrets)
    #: (operation, status) -> how many answers
    answers: Counter[tuple[str, int]] = field(default_factory=Counter)
    #: one report per distinct failure (operation and failed checks)
    failures: dict[tuple[str, ...], str] = field(default_factory=dict)
    flaky_runs: int = 0

    def url(self, path: str) -> str:
        return f"{self.root}{API}{path}"

    def checks(self, extra: list[Callable[..., Any]] = ()) -> list[Callable[..., Any]]:
        def no_secret_in_answer(ctx: Any, response: schemathesis.Response,
                                case: schemathesis.Case) -> None:
            self.secrets.check(response, case)

        return [*CHECKS, *extra, no_secret_in_answer]

    def sent(self, case: schemathesis.Case, response: schemathesis.Response) -> None:
        self.answers[case.operation.label, response.status_code] += 1

    def validate(self, case: schemathesis.Case, response: schemathesis.Response,
                 extra: list[Callable[..., Any]] = (), **kwargs: Any) -> None:
        """Run the checks; a failure is kept (hypothesis may not get to re-raise it)."""
        try:
            case.validate_response(response, checks=self.checks(extra), **kwargs)
        except FailureGroup as group:
            key = (case.operation.label, *sorted({type(f).__name__ + ":" + f.title
                                                  for f in group.exceptions}))
            self.failures[key] = str(group)
            raise

    def call(self, case: schemathesis.Case, extra: list[Callable[..., Any]] = ()
             ) -> schemathesis.Response:
        self.secrets.record(case.body)
        response = case.call(session=self.session, timeout=30)
        self.sent(case, response)
        self.validate(case, response, extra)
        return response

    def call_quietly(self, case: schemathesis.Case) -> schemathesis.Response:
        """``call``, its failures kept for the end of the test instead of raised."""
        self.secrets.record(case.body)
        response = case.call(session=self.session, timeout=30)
        self.sent(case, response)
        with contextlib.suppress(FailureGroup):
            self.validate(case, response)
        return response


@pytest.fixture
def portal(database: Database, tls_material, smtp_server, tmp_path) -> Iterator[Portal]:
    smtp = smtp_server("implicit", users={SMTP_USER: SMTP_PASSWORD})
    app = create_app({
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "SECRET_KEY": "test-secret-key",
        "SQLALCHEMY_DATABASE_URI": database.url,
        "SQLALCHEMY_ENGINE_OPTIONS": database.engine_options,
        "SMTP_SENDERS_ENCRYPTION_KEYS": [Fernet.generate_key().decode()],
        "SMTP_SENDERS_CA_FILE": tls_material.ca_file,
        "SMTP_SENDERS_TIMEOUT": 5.0,
        "SMTP_SENDERS_OPERATION_TIMEOUT": 2.0,
        "SMTP_SENDERS_EHLO_NAME": "client.test",
        "SMTP_SENDERS_TEST_EMAIL_RATE_LIMIT": "100000 per minute",
        "SMTP_SENDERS_WRITE_RATE_LIMIT": "100000 per minute",
        "EXAMPLE_API_TOKEN": TOKEN,
        "EXAMPLE_ADMIN_PASSWORD": "unused-" + secrets.token_hex(8),
    })
    plugin = LoopbackOnly(smtp.port)
    app.extensions["smtp_senders"].plugin_manager.register(plugin)
    server: BaseWSGIServer = make_server(LOOPBACK, 0, app, threaded=True,
                                         request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    session = requests.Session()
    session.trust_env = False  # no proxy from the environment: straight to loopback
    session.headers["Authorization"] = f"Bearer {TOKEN}"
    try:
        yield Portal(app, f"http://{LOOPBACK}:{server.server_port}", session, smtp, plugin)
    finally:
        session.close()
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        with app.app_context():
            db.engine.dispose()


def load_schema(portal: Portal) -> Any:
    """The document the portal serves, aimed at the portal."""
    served = portal.session.get(portal.url("/openapi.json"), timeout=30)
    assert served.status_code == 200, served.text
    document = served.json()
    assert document["servers"] == [{"url": API}]
    portal.secrets.document = json.dumps(document, ensure_ascii=False).casefold()
    config = schemathesis.Config.from_dict({
        "base-url": portal.root + document["servers"][0]["url"],
        # Only the document's links: links inferred from GET /senders depend on what the
        # database holds, which changes between hypothesis' runs (a "flaky" strategy).
        "phases": {"stateful": {"inference": {"algorithms": []}}},
        "checks": {"negative_data_rejection": {
            # If-Match is checked before the body is read, and a body too large is not read
            "expected-statuses": ["400", "404", "412", "413", "415", "422", "428"]}},
    })
    return schemathesis.openapi.from_dict(document, config=config)


def fuzz(portal: Portal, operation: Any, mode: GenerationMode, **fixed: Any) -> None:
    extra = NEGATIVE_CHECKS if mode.is_negative else []

    @FUZZ_SETTINGS
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode, **fixed))
    def run(case: schemathesis.Case) -> None:
        portal.call(case, extra)

    try:
        run()
    except FailureGroup:
        pass  # kept by Portal.validate
    except Unsatisfiable:
        assert mode.is_negative  # nothing can be invalid (GET /senders takes no input)


def run_state_machine(portal: Portal, schema: Any) -> None:
    class Chains(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"session": portal.session, "timeout": 30}

        def before_call(self, case: schemathesis.Case) -> None:
            portal.secrets.record(case.body)

        def after_call(self, response: schemathesis.Response,
                       case: schemathesis.Case) -> None:
            super().after_call(response, case)
            portal.sent(case, response)

        def validate_response(self, response: schemathesis.Response, case: schemathesis.Case,
                              additional_checks: Any = None, **kwargs: Any) -> None:
            portal.validate(case, response, STATEFUL_CHECKS, transport_kwargs=kwargs or None,
                            recorder=self.recorder)

    try:
        Chains.run(settings=STATEFUL_SETTINGS)
    except FailureGroup:
        pass  # kept by Portal.validate
    except Flaky:
        # A replay went differently because the database moved on (an id now taken);
        # any failure on the way was kept by Portal.validate.
        portal.flaky_runs += 1


def example_case(schema: Any, path: str, method: str, **parts: Any) -> schemathesis.Case:
    return schema[path][method].Case(**parts)


def _create_example() -> dict[str, Any]:
    """The document's first example of a new sender (on smtp.example.com, port 587)."""
    content = openapi_document()["paths"]["/senders"]["post"]["requestBody"]["content"]
    return dict(next(iter(content["application/json"]["examples"].values()))["value"])


def test_schemathesis_finds_nothing_the_document_does_not_say(portal: Portal):
    started = time.monotonic()
    schema = load_schema(portal)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 9

    # A sender that reaches the test's SMTP server as its user: generated bodies for the
    # operations on it (test and check first, change and delete last) deliver for real.
    created = portal.call(example_case(schema, "/senders", "POST", body={
        "username": SMTP_USER, "password": SMTP_PASSWORD, "server_name": SERVER_NAME,
        "port": portal.smtp.port, "from_address": "portal@example.com"}))
    assert created.status_code == 201
    real = created.json()["id"]
    sent = portal.call(example_case(schema, "/senders/{sender_id}/test", "POST",
                                    path_parameters={"sender_id": real},
                                    body={"recipient": RECIPIENT}))
    assert sent.status_code == 200 and sent.json()["ok"] is True
    assert [m.rcpt_tos for m in portal.smtp.messages] == [[RECIPIENT]]
    assert portal.smtp.auth_attempts[0][1:] == (SMTP_USER, True)
    # Found by this test (a 500): blanks as the recipient. The test needs one (422); the
    # check goes to the From Address instead.
    blank = {path: portal.call_quietly(example_case(
        schema, path, "POST", path_parameters={"sender_id": real}, body={"recipient": " \t"}))
        for path in ("/senders/{sender_id}/test", "/senders/{sender_id}/check")}
    # A sender as the document's example makes it: the plugin refuses its port, and nothing
    # is attempted (no DNS query, no connection).
    example = portal.call(example_case(schema, "/senders", "POST", body=_create_example()))
    checked = portal.call(example_case(schema, "/senders/{sender_id}/check", "POST",
                                       path_parameters={"sender_id": example.json()["id"]},
                                       body={}))
    assert checked.json()["stage"] == "destination"
    assert portal.plugin.refused == [("smtp.example.com", 587)]
    on_real = sorted((op for op in operations if op.path_parameters.get("sender_id")),
                     key=lambda op: ["post", "get", "patch", "delete"].index(op.method))
    for operation in on_real:
        fuzz(portal, operation, GenerationMode.POSITIVE, path_parameters={"sender_id": real})

    for operation in operations:
        for mode in GenerationMode:
            fuzz(portal, operation, mode)
    run_state_machine(portal, schema)

    took = time.monotonic() - started
    print(f"\n{portal.app.config['SQLALCHEMY_DATABASE_URI'].partition(':')[0]}: "
          f"{sum(portal.answers.values())} requests in {took:.1f} s, "
          f"{len(portal.smtp.messages)} test emails delivered, "
          f"{len(portal.plugin.refused)} connections refused, "
          f"{portal.flaky_runs} stateful runs cut short")
    for (label, status), count in sorted(portal.answers.items()):
        print(f"  {label:40} {status} x{count}")
    assert list(portal.failures.values()) == [], "\n\n".join(portal.failures.values())
    assert blank["/senders/{sender_id}/test"].status_code == 422
    assert blank["/senders/{sender_id}/check"].status_code == 200
    # The run went where it should: every operation answered, and senders were created.
    assert {label for label, _ in portal.answers} == {op.label for op in operations}
    assert portal.answers["POST /senders", 201] > 2


def test_anonymous_calls_get_the_documented_401(portal: Portal):
    """Every operation, without the token: the example portal's documented 401."""
    schema = load_schema(portal)
    anonymous = requests.Session()
    anonymous.trust_env = False
    with anonymous:
        for result in schema.get_all_operations():
            operation = result.ok()
            parts: dict[str, Any] = {}
            if operation.path_parameters.get("sender_id"):
                parts["path_parameters"] = {"sender_id": 1}
            if operation.method in ("patch", "delete"):
                parts["headers"] = {"If-Match": "*"}
            if operation.body:
                parts["body"] = {}
                parts["media_type"] = "application/json"
            case = operation.Case(**parts)
            response = case.call(session=anonymous, timeout=30)
            assert response.status_code == 401, operation.label
            assert json.loads(response.content)["status"] == 401
            portal.validate(case, response)
    assert portal.failures == {}


# -- the custom check fails when it should ----------------------------------------------


def _answer(body: bytes, content_type: str = "application/json",
            **headers: str) -> schemathesis.Response:
    request = requests.Request("GET", f"http://{LOOPBACK}{API}/senders").prepare()
    return schemathesis.Response(
        status_code=200, content=body, request=request, elapsed=0.0, verify=True,
        headers={name: [value] for name, value in
                 {"Content-Type": content_type, **headers}.items()})


@pytest.fixture
def list_case() -> schemathesis.Case:
    document = dict(openapi_document())
    return schemathesis.openapi.from_dict(document)["/senders"]["GET"].Case()


@pytest.mark.parametrize(("body", "headers", "problem"), [
    (b'{"senders": [{"username": "Sent-Pa55word"}]}', {}, "a password a request sent"),
    (b'{"x": "Sent-Pa55word"}', {}, "a password a request sent"),
    (b'{"x": "\\u0053ent-Pa55word"}', {}, "a password a request sent"),  # JSON-escaped
    (b'{}', {"X-Debug": "Sent-Pa55word"}, "a password a request sent"),
    (b'{"senders": [{"password": "x"}]}', {}, "password member"),
    (b'{"password": null}', {}, "password member"),
    (b'{"token": "gAAAAABlYXNzd29yZA=="}', {}, "Fernet token"),
    (b'{}', {"ETag": '"gAAAAABl"'}, "Fernet token"),
])
def test_the_secret_check_fails_on_a_leak(list_case, body, headers, problem):
    guard = Secrets()
    guard.record({"username": "alice", "password": "Sent-Pa55word"})

    with pytest.raises(AssertionError, match=problem):
        guard.check(_answer(body, **headers), list_case)


@pytest.mark.parametrize("body", [
    b'{"senders": [{"username": "alice", "server_name": "mx.example.com"}]}',
    # a problem's errors map names the field; its message is the server's
    b'{"type": "urn:flask-smtp-senders:problem:invalid", "title": "t", "status": 422,'
    b' "errors": {"password": "This field is required."}}',
    b'{"x": "short"}',  # a generated password this short is not watched
])
def test_the_secret_check_passes_clean_answers(list_case, body):
    guard = Secrets()
    guard.record({"username": "alice", "password": "Sent-Pa55word"})
    guard.record({"password": "short"})

    guard.check(_answer(body), list_case)
