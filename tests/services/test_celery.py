"""Distributed dispatch: the Celery task, run by a real worker thread that consumes from the
RabbitMQ broker on loopback and sends through real SMTP servers.

Each test gets its own Celery app, queue and worker; the queue is deleted at teardown.
Without a reachable broker these tests skip, except under CI, where they fail.
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from celery import Celery, Task
from celery.contrib.testing.worker import start_worker
from celery.signals import task_prerun
from celery.worker import WorkController
from flask import Flask
from kombu import Connection

from flask_smtp_senders import (
    ConfigurationError,
    DeliveryError,
    SenderNotFound,
    SenderSettings,
    get_service,
    hookimpl,
)
from flask_smtp_senders.contrib.celery import (
    SendFailed,
    dump_message,
    load_message,
    register_tasks,
    send_later,
)
from tests.support.smtp_servers import LOOPBACK, SERVER_NAME

pytestmark = pytest.mark.sqlite_only

BROKER_URL = os.environ.get("SMTP_SENDERS_TEST_AMQP_URL",
                            "amqp://guest:guest@127.0.0.1:5672//")
PASSWORD = "s3cret"  # alice's password on the test servers
RESULT_TIMEOUT = 10.0


def _broker_problem(url: str) -> str | None:
    """Why the broker cannot be used (None when it can): connect and log in once."""
    connection = Connection(url, connect_timeout=3)
    try:
        connection.ensure_connection(max_retries=1)
    except Exception as exc:  # any failure means "not usable"
        return f"{type(exc).__name__}: {exc}"
    finally:
        connection.release()
    return None


@pytest.fixture(scope="session")
def broker_url() -> str:
    problem = _broker_problem(BROKER_URL)
    if problem:
        where = Connection(BROKER_URL).as_uri()  # password masked
        if os.environ.get("CI"):
            pytest.fail(f"RabbitMQ is not reachable at {where}: {problem}")
        pytest.skip(f"RabbitMQ is not reachable at {where}")
    return BROKER_URL


class Host:
    """Host plugin: sends the test server name to loopback."""

    @hookimpl
    def smtp_senders_resolve(self, server_name, port):
        return [LOOPBACK]


@pytest.fixture
def app_config() -> dict[str, Any]:
    """Extra settings for the app; a test overrides it by parametrizing ``app_config``."""
    return {}


@pytest.fixture
def app(make_app, app_config) -> Flask:
    # The mailer's own 4xx retries are off, so each try of the task is one MAIL FROM.
    settings = {"SMTP_SENDERS_SEND_RETRIES": 0, "SMTP_SENDERS_CELERY_RETRY_DELAY": 0.05,
                "SMTP_SENDERS_CELERY_MAX_RETRIES": 3, **app_config}
    return make_app(plugins=[Host()], **settings)


@pytest.fixture
def service(app):
    with app.app_context():
        yield get_service(app)


@pytest.fixture
def reply_queues() -> set[str]:
    """The rpc:// result queues this test declared (one per thread that sent a task)."""
    return set()


@pytest.fixture
def queue_name(broker_url, reply_queues) -> Iterator[str]:
    """A task queue (and its exchange) of this test only; at teardown it is deleted, and
    so are the test's result queues."""
    name = f"smtp-senders-test-{uuid.uuid4().hex}"
    yield name
    with Connection(broker_url, connect_timeout=3) as connection:
        channel = connection.default_channel
        channel.queue_delete(name)
        channel.exchange_delete(name)
        for reply_queue in reply_queues:  # RabbitMQ deletes missing queues without error
            channel.queue_delete(reply_queue)


@pytest.fixture
def celery_app(broker_url, queue_name, reply_queues) -> Iterator[Celery]:
    celery = Celery(f"smtp-senders-test-{queue_name[-8:]}", set_as_current=False)
    reply_queues.add(celery.thread_oid)  # where this thread's results come back
    celery.conf.update(
        broker_url=broker_url,
        result_backend="rpc://",
        result_expires=60,  # result queues a crashed run left behind go after a minute
        task_default_queue=queue_name,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        broker_connection_timeout=3,
        broker_connection_retry_on_startup=False,
        broker_heartbeat=0,  # no 60 s timer keeping the worker's loop asleep at shutdown
        worker_hijack_root_logger=False,  # pytest's log capture stays in place
        worker_enable_remote_control=False,  # no pidbox queue left behind
        worker_prefetch_multiplier=1,
    )
    yield celery
    celery.close()


@pytest.fixture
def send_task(celery_app, app) -> Task:
    return register_tasks(celery_app, app)


@pytest.fixture
def worker(celery_app, send_task, reply_queues) -> Iterator[WorkController]:
    """A real worker thread (solo pool) consuming this test's queue."""

    def note_reply_queue(**_: Any) -> None:  # a retry sent from the worker declares one
        reply_queues.add(celery_app.thread_oid)

    task_prerun.connect(note_reply_queue, sender=send_task, weak=False)
    try:
        with start_worker(celery_app, pool="solo", perform_ping_check=False,
                          shutdown_timeout=5) as controller:
            # The loop polls once a second when idle; a no-op timer lets it see the
            # shutdown within 50 ms. Added through call_soon: the hub is not thread-safe.
            controller.hub.call_soon(controller.hub.call_repeatedly, 0.05, lambda: None)
            yield controller
    finally:
        task_prerun.disconnect(note_reply_queue, sender=send_task)


def add(service, server):
    return service.create_sender(SenderSettings(
        username="alice", server_name=SERVER_NAME, port=server.port,
        from_name="Acme", from_address="noreply@example.com"), PASSWORD)


def note(subject: str = "Notification 1", to: str = "user@example.com") -> EmailMessage:
    message = EmailMessage()
    message["To"] = to
    message["Subject"] = subject
    message.set_content(f"Body of {subject}.\n")
    return message


def test_a_queued_message_is_delivered_once_through_the_sender(service, smtp_server, worker):
    server = smtp_server("implicit")
    sender = add(service, server)
    result = send_later(note("Grüße aus der Warteschlange"), sender.id).get(RESULT_TIMEOUT)
    assert result["accepted"] == ["user@example.com"] and result["refused"] == {}
    [received] = server.messages
    assert received.mail_from == "noreply@example.com"
    assert received.rcpt_tos == ["user@example.com"]
    assert received.message["From"] == "Acme <noreply@example.com>"
    assert received.message["To"] == "user@example.com"
    assert received.message["Subject"] == "Grüße aus der Warteschlange"
    assert received.message["Message-ID"] == result["message_id"]
    assert server.mail_from_seen == ["noreply@example.com"]


def test_the_broker_payload_holds_the_sender_id_and_message_but_no_credential(
        service, smtp_server, celery_app, send_task, queue_name):
    """No worker runs: the raw message is read back from RabbitMQ as it was queued."""
    server = smtp_server("implicit")
    sender = add(service, server)
    token = service.get_sender(sender.id).password.token.decode()
    with Connection(celery_app.conf.broker_url, connect_timeout=3) as connection:
        queue = celery_app.amqp.queues[queue_name](connection.default_channel)
        queue.declare()
        send_later(note("Payload check"), sender.id)
        deadline = time.monotonic() + RESULT_TIMEOUT
        while (raw := queue.get(no_ack=True)) is None and time.monotonic() < deadline:
            time.sleep(0.02)  # published on another connection: it may not be there yet
    assert raw is not None
    assert raw.content_type == "application/json"
    everything = "\n".join([raw.body.decode() if isinstance(raw.body, bytes) else raw.body,
                            json.dumps(raw.headers, default=str),
                            json.dumps(raw.properties, default=str)])
    for secret in (PASSWORD, token, base64.b64encode(PASSWORD.encode()).decode(),
                   base64.b64encode(f"\0alice\0{PASSWORD}".encode()).decode()):
        assert secret not in everything
    args, kwargs, _ = json.loads(raw.body)
    assert args[0] == sender.id and kwargs == {}
    assert load_message(args[1])["Subject"] == "Payload check"
    assert raw.headers["task"] == "flask_smtp_senders.send_message"
    assert server.messages == []


def test_a_temporary_refusal_is_retried_by_the_task_then_delivered_once(service, smtp_server,
                                                                         worker):
    server = smtp_server("implicit", tempfail_mail=2)
    sender = add(service, server)
    result = send_later(note(), sender.id).get(RESULT_TIMEOUT)
    assert result["accepted"] == ["user@example.com"]
    assert len(server.messages) == 1
    assert len(server.mail_from_seen) == 3  # two 451s, then the delivery


def test_task_retries_are_bounded_and_end_with_the_user_message(service, smtp_server, app,
                                                                worker):
    server = smtp_server("implicit", tempfail_mail=10)
    sender = add(service, server)
    with pytest.raises(SendFailed) as caught:
        send_later(note(), sender.id).get(RESULT_TIMEOUT)
    assert str(caught.value) == app.config["SMTP_SENDERS_MSG_SENDER_REFUSED"]
    assert len(server.mail_from_seen) == 4  # the first try and 3 retries
    assert server.messages == []


def test_a_permanent_refusal_fails_with_the_fixed_message_and_no_server_text(
        service, smtp_server, app, worker):
    server = smtp_server("implicit", refuse_mail=["noreply@example.com"])
    sender = add(service, server)
    queued = send_later(note(), sender.id)
    with pytest.raises(SendFailed) as caught:
        queued.get(RESULT_TIMEOUT)
    assert str(caught.value) == app.config["SMTP_SENDERS_MSG_SENDER_REFUSED"]
    assert server.mail_from_seen == ["noreply@example.com"]  # not retried
    for server_text in ("553", "Sender not allowed", PASSWORD):
        assert server_text not in str(caught.value)
        assert server_text not in (queued.traceback or "")


@pytest.mark.parametrize("app_config", [{"SMTP_SENDERS_OPERATION_TIMEOUT": 0.5,
                                         "SMTP_SENDERS_TIMEOUT": 1.0}])
def test_a_message_whose_fate_is_unknown_is_never_sent_again(service, smtp_server, app,
                                                             worker):
    """The server takes the body and never answers: it may have delivered it."""
    server = smtp_server("implicit", hang_after_data=3.0)
    sender = add(service, server)
    with pytest.raises(SendFailed) as caught:
        send_later(note(), sender.id).get(RESULT_TIMEOUT)
    assert str(caught.value) == app.config["SMTP_SENDERS_MSG_TIMEOUT"]
    assert server.connections == 1 and len(server.mail_from_seen) == 1


def test_an_unknown_sender_fails_cleanly_and_the_worker_goes_on(service, smtp_server,
                                                                worker):
    server = smtp_server("implicit")
    sender = add(service, server)
    with pytest.raises(SenderNotFound, match="sender 9999 does not exist"):
        send_later(note(), 9999).get(RESULT_TIMEOUT)
    assert send_later(note(), sender.id).get(RESULT_TIMEOUT)["accepted"]
    assert len(server.messages) == 1


def test_a_4xx_whose_delivery_is_unknown_is_not_retried(app, service, monkeypatch):
    """The decision alone, run in process (no broker): 4xx and unknown fate together
    mean no retry."""
    send_task = register_tasks(Celery("in-process", set_as_current=False), app)
    calls = []

    def send(message, sender=None):
        calls.append(message)
        raise DeliveryError("data", "Your email server did not accept the message.",
                            code=451, delivery_unknown=True)

    monkeypatch.setattr(service.mailer, "send", send)
    outcome = send_task.apply((1, dump_message(note())))
    assert outcome.failed() and isinstance(outcome.result, SendFailed)
    assert len(calls) == 1


def test_the_message_text_survives_json_unchanged():
    message = note("Réunion: café ☕")
    message["Cc"] = "Zoë <zoe@example.com>"
    message["Bcc"] = "hidden@example.com"
    message.add_attachment(b"\x00\x01binary", maintype="application", subtype="octet-stream",
                           filename="data.bin")
    text = json.loads(json.dumps(dump_message(message)))
    again = load_message(text)
    assert dump_message(again) == dump_message(message)
    assert again["Subject"] == "Réunion: café ☕" and again["Bcc"] == "hidden@example.com"
    [attachment] = again.iter_attachments()
    assert attachment.get_content() == b"\x00\x01binary"


def test_registering_twice_on_one_celery_app_is_refused(app):
    celery = Celery("twice", set_as_current=False)
    register_tasks(celery, app)
    with pytest.raises(ConfigurationError):
        register_tasks(celery, app)


class TestAMicrosoft365Sender:
    """The task sends through the Mailer, so an OAuth2 sender's messages go out with the
    token the worker fetches from the token server (tests/support/token_server.py), one
    fetch for both messages."""

    TENANT = "6f1c2a4e-0b7d-4c3e-9a51-2d8e7f0a1b2c"
    CLIENT = "0e9d8c7b-6a59-4817-8a6f-5e4d3c2b1a09"
    SECRET = "Qx8~Zr.4_ClientSecretValue-0123456789abcdEF"
    MAILBOX = "notify@contoso.example"

    @pytest.fixture
    def tokens(self, token_server):
        server = token_server()
        server.add_microsoft_app(self.TENANT, self.CLIENT, self.SECRET,
                                 mailboxes=[self.MAILBOX])
        return server

    @pytest.fixture
    def app_config(self, tokens) -> dict[str, Any]:
        return {"SMTP_SENDERS_MICROSOFT_AUTHORITY": tokens.microsoft_authority()}

    def test_a_queued_message_goes_out_with_a_fetched_token(self, service, tokens,
                                                             scripted_server, worker):
        smtp = scripted_server(auth=("XOAUTH2",), token_check=tokens.valid)
        sender = service.create_sender(SenderSettings(
            username=self.MAILBOX, server_name=SERVER_NAME, port=smtp.port,
            from_address=self.MAILBOX, provider="microsoft365", tenant_id=self.TENANT,
            client_id=self.CLIENT), self.SECRET)
        first = send_later(note("one"), sender.id).get(RESULT_TIMEOUT)
        second = send_later(note("two"), sender.id).get(RESULT_TIMEOUT)
        assert first["accepted"] == second["accepted"] == ["user@example.com"]
        assert len(smtp.messages) == 2
        assert sum(1 for r in tokens.requests if r.method == "POST") == 1
