"""Case C7: Send Test Email is rate-limited per administrator and per sender, answering 429
with Retry-After; the counters live in memory, or in Redis shared by every worker (F5).

Every send goes to a real SMTP server on loopback, so "refused" means nothing left the
portal: the server's message count is the proof, not the status code alone.
"""

from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from limits.storage import MemoryStorage, RedisStorage

from flask_smtp_senders import SenderSettings, get_service
from flask_smtp_senders.errors import ConfigurationError
from flask_smtp_senders.settings import DEFAULTS, Settings
from flask_smtp_senders.web.ratelimit import (
    TestEmailLimiter,
    limiter_for,
    validate_config,
)
from tests.support.pages import Admin, create, csrf
from tests.support.ratelimit import JSON, build_app, post_test_emails
from tests.support.smtp_servers import SERVER_NAME

ROOT = Path(__file__).resolve().parent.parent.parent
REDIS_URL = os.environ.get("SMTP_SENDERS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
RATE_LIMITED = DEFAULTS["SMTP_SENDERS_MSG_RATE_LIMITED"]
def assert_rate_limited(answer: Any) -> int:
    """The 429 contract: Retry-After in seconds and the configured message naming them."""
    assert answer.status_code == 429
    retry_after = int(answer.headers["Retry-After"])
    assert 0 < retry_after <= 60
    assert answer.json == {"ok": False,
                           "message": RATE_LIMITED.format(retry_after=retry_after)}
    return retry_after


@pytest.fixture
def app_config(database, tls_material, fernet_key) -> dict[str, Any]:
    """Settings that reach this test's database and trust its SMTP servers (JSON-safe)."""
    return {"SQLALCHEMY_DATABASE_URI": database.url,
            "SQLALCHEMY_ENGINE_OPTIONS": database.engine_options,
            "SMTP_SENDERS_ENCRYPTION_KEYS": [fernet_key],
            "SMTP_SENDERS_CA_FILE": tls_material.ca_file,
            "SMTP_SENDERS_DOMAIN_ADVICE": False}  # no DNS: the subprocess has no guard


@pytest.fixture
def named_app(app_config) -> Iterator[Callable[..., Flask]]:
    """Factory of apps with a given name (the name is part of the rate-limit keys)."""
    made: list[Flask] = []

    def factory(name: str | None = None, **config: Any) -> Flask:
        made.append(build_app(name or f"ratelimit_{uuid.uuid4().hex[:12]}",
                              {**app_config, **config}))
        return made[-1]

    yield factory
    for app in made:
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()


@pytest.fixture
def server(smtp_server) -> Any:
    return smtp_server("implicit")


def new_sender(client: Any, server: Any) -> str:
    """Create a sender through the pages that reaches ``server``; returns its URL."""
    return create(client, server_name=SERVER_NAME, port=str(server.port),
                  password="s3cret").location


@dataclass
class RedisSpace:
    """A reachable Redis and an app name that no other test uses (it prefixes the keys)."""

    url: str
    app_name: str
    client: redis.Redis

    def keys(self) -> list[bytes]:
        return list(self.client.scan_iter(match=f"*flask_smtp_senders:{self.app_name}/*"))


@pytest.fixture
def redis_space() -> Iterator[RedisSpace]:
    """Redis at REDIS_URL: unreachable fails the test under CI, skips it elsewhere; the
    test's keys are deleted afterwards."""
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        if os.environ.get("CI"):
            pytest.fail(f"Redis is not reachable at {REDIS_URL}: {exc}")
        pytest.skip(f"Redis is not reachable at {REDIS_URL} (set SMTP_SENDERS_TEST_REDIS_URL)")
    space = RedisSpace(REDIS_URL, f"ratelimit_{uuid.uuid4().hex[:12]}", client)
    yield space
    for key in space.keys():
        client.delete(key)
    client.close()


# -- in memory (the default) ----------------------------------------------------------


def test_sixth_test_email_in_a_minute_by_one_admin_gets_429_and_is_not_sent(named_app,
                                                                            server):
    """Case C7: the default limit is 5 a minute; the 6th is refused before any SMTP."""
    client = named_app().test_client()
    sender_url = new_sender(client, server)
    assert post_test_emails(client, sender_url, 5, "ann") == [200] * 5
    token = csrf(client.get(sender_url).data)
    answer = client.post(f"{sender_url}/test", headers={**JSON, "X-Admin": "ann"},
                         data={"csrf_token": token, "recipient": "to@acme.com"})
    assert_rate_limited(answer)
    assert len(server.messages) == 5


def test_rate_limited_form_post_reopens_the_dialog_with_the_message(named_app, server):
    """Case C7 without JavaScript: 429, Retry-After, the message and the dialog open."""
    client = named_app(SMTP_SENDERS_TEST_EMAIL_RATE_LIMIT="1 per minute").test_client()
    sender_url = new_sender(client, server)
    data = {"csrf_token": csrf(client.get(sender_url).data), "recipient": "to@acme.com"}
    assert client.post(f"{sender_url}/test", data=data).status_code == 200
    answer = client.post(f"{sender_url}/test", data=data)
    assert answer.status_code == 429
    retry_after = int(answer.headers["Retry-After"])
    assert 0 < retry_after <= 60
    assert RATE_LIMITED.format(retry_after=retry_after).encode() in answer.data
    assert b'<dialog id="send-test-email"' in answer.data and b" open " in answer.data
    assert len(server.messages) == 1


def test_per_sender_limit_holds_across_different_admins(named_app, server):
    """Case C7: five admins cannot flood one sender's server five times as fast."""
    client = named_app().test_client()
    first, second = new_sender(client, server), new_sender(client, server)
    assert post_test_emails(client, first, 3, "ann") == [200] * 3
    assert post_test_emails(client, first, 2, "bob") == [200] * 2
    assert post_test_emails(client, first, 1, "bob") == [429]
    assert post_test_emails(client, first, 1, "carol") == [429]
    assert post_test_emails(client, second, 1, "ann") == [200]  # ann used only 3 of 5
    assert len(server.messages) == 6


def test_per_admin_limit_holds_across_senders(named_app, server):
    """Case C7: one admin cannot dodge the limit by spreading tests over senders."""
    client = named_app().test_client()
    first, second = new_sender(client, server), new_sender(client, server)
    assert post_test_emails(client, first, 3, "ann") == [200] * 3
    assert post_test_emails(client, second, 2, "ann") == [200] * 2
    assert post_test_emails(client, second, 1, "ann") == [429]
    assert post_test_emails(client, second, 1, "bob") == [200]  # second sender: 3 of 5
    assert len(server.messages) == 6


def test_without_an_actor_the_client_address_is_the_admin(make_app, server):
    """Case C7: a host that names no actor still gets a per-client limit."""
    client = make_app(plugins=[Admin()], SMTP_SENDERS_TEST_EMAIL_RATE_LIMIT="1 per minute",
                      ).test_client()
    first, second = new_sender(client, server), new_sender(client, server)
    token = csrf(client.get(first).data)

    def send(sender_url: str, address: str) -> int:
        return client.post(f"{sender_url}/test", headers=JSON,
                           environ_base={"REMOTE_ADDR": address},
                           data={"csrf_token": token, "recipient": "to@acme.com"}).status_code

    assert send(first, "192.0.2.10") == 200
    assert send(second, "192.0.2.10") == 429  # the same client, another sender
    assert send(second, "192.0.2.11") == 200  # another client
    assert len(server.messages) == 2


def test_counters_live_in_memory_by_default_one_set_per_app(named_app):
    """Case C7: memory:// is the default, and two apps in one process keep apart."""
    first, second = named_app(), named_app()
    limiter = limiter_for(first)
    assert isinstance(limiter.storage, MemoryStorage)
    assert limiter is limiter_for(first) and limiter_for(second) is not limiter
    assert [limiter.check("actor:ann", 1) for _ in range(5)] == [None] * 5
    assert 0 < limiter.check("actor:ann", 1) <= 60
    assert limiter_for(second).check("actor:ann", 1) is None


def test_a_refused_request_uses_up_none_of_the_other_limits():
    """Case C7: ann, refused for the sender's limit, keeps all of her own allowance."""
    limiter = TestEmailLimiter("2 per minute", "memory://", "test")
    assert limiter.check("actor:bob", 1) is None and limiter.check("actor:bob", 1) is None
    assert limiter.check("actor:ann", 1) is not None
    assert limiter.check("actor:ann", 2) is None and limiter.check("actor:ann", 3) is None
    assert limiter.check("actor:ann", 4) is not None


@pytest.mark.parametrize("value", ["often", "5 per fortnight", "0 per minute", "", None, 5])
def test_unparseable_limit_is_a_configuration_error_naming_the_setting(make_app, value):
    """Case C7 / D2: a bad limit is a configuration error, never an unlimited button."""
    settings = {"SMTP_SENDERS_TEST_EMAIL_RATE_LIMIT": value,
                "SMTP_SENDERS_RATELIMIT_STORAGE_URI": "memory://"}
    with pytest.raises(ConfigurationError, match="SMTP_SENDERS_TEST_EMAIL_RATE_LIMIT"):
        validate_config(Settings.from_config(dict(DEFAULTS, **settings)))
    with pytest.raises(ConfigurationError, match="SMTP_SENDERS_TEST_EMAIL_RATE_LIMIT"):
        limiter_for(make_app(SMTP_SENDERS_TEST_EMAIL_RATE_LIMIT=value))  # at init or first use


def test_unknown_storage_is_a_configuration_error_that_hides_the_uri():
    """Case C7 / D2: the error names the setting but never echoes a password in the URI."""
    with pytest.raises(ConfigurationError, match="SMTP_SENDERS_RATELIMIT_STORAGE_URI") as err:
        validate_config(Settings.from_config(dict(
            DEFAULTS, SMTP_SENDERS_TEST_EMAIL_RATE_LIMIT="5 per minute",
            SMTP_SENDERS_WRITE_RATE_LIMIT="30 per minute",
            SMTP_SENDERS_RATELIMIT_STORAGE_URI="memcached://u:hunter2@h:1")))
    assert "hunter2" not in str(err.value)


# -- unreachable storage: fail closed ---------------------------------------------------


@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_unreachable_redis_refuses_with_503_and_sends_nothing(named_app, server, kind,
                                                              closed_port, silent_server,
                                                              caplog):
    """Cases C7, G5: no counter, no send and no save; a clear 503 and a log line, never
    a 500."""
    port = closed_port if kind == "refused" else silent_server.port
    app = named_app(SMTP_SENDERS_RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{port}/0")
    client = app.test_client()
    with app.test_request_context():  # not through the page: its save would count (refused)
        sender = get_service(app).create_sender(SenderSettings(
            username="alice", server_name=SERVER_NAME, port=server.port,
            from_address="noreply@example.com"), "s3cret")
    sender_url = f"/settings/senders/{sender.id}"
    data = {"csrf_token": csrf(client.get(sender_url).data), "recipient": "to@acme.com"}
    saved = create(client, server_name=SERVER_NAME, port=str(server.port), password="s3cret")
    assert saved.status_code == 503
    assert DEFAULTS["SMTP_SENDERS_MSG_RATE_LIMIT_UNAVAILABLE_WRITES"].encode() in saved.data
    with app.app_context():
        assert [s.id for s in get_service(app).list_senders()] == [sender.id]
    with caplog.at_level(logging.ERROR, logger="flask_smtp_senders.web.ratelimit"):
        answer = client.post(f"{sender_url}/test", headers={**JSON, "X-Admin": "ann"},
                             data=data)
        page = client.post(f"{sender_url}/test", data=data)
    assert answer.status_code == 503
    unavailable = DEFAULTS["SMTP_SENDERS_MSG_RATE_LIMIT_UNAVAILABLE"]
    assert answer.json == {"ok": False, "message": unavailable}
    assert page.status_code == 503 and unavailable.encode() in page.data
    assert server.messages == [] and server.connections == 0
    assert any("refusing the request" in r.getMessage() for r in caplog.records)


# -- Redis ------------------------------------------------------------------------------


def test_redis_storage_limits_the_sixth_test_email(named_app, server, redis_space):
    """Case C7: with a Redis URL the counters are in Redis, under the app's name."""
    app = named_app(redis_space.app_name, SMTP_SENDERS_RATELIMIT_STORAGE_URI=redis_space.url)
    assert isinstance(limiter_for(app).storage, RedisStorage)
    client = app.test_client()
    sender_url = new_sender(client, server)
    assert post_test_emails(client, sender_url, 5, "ann") == [200] * 5
    token = csrf(client.get(sender_url).data)
    assert_rate_limited(client.post(f"{sender_url}/test", headers={**JSON, "X-Admin": "ann"},
                                    data={"csrf_token": token, "recipient": "to@acme.com"}))
    assert len(server.messages) == 5
    assert len(redis_space.keys()) == 2  # one per administrator, one per sender


SECOND_PROCESS = """
import json, sys
from tests.support.ratelimit import build_app, post_test_emails
spec = json.loads(sys.argv[1])
client = build_app(spec["name"], spec["config"]).test_client()
client.get(spec["sender_url"])  # warm up: connect to the database before the start line
print("ready", flush=True)
sys.stdin.readline()
print(json.dumps(post_test_emails(client, spec["sender_url"], spec["count"], spec["admin"])))
"""


def test_two_app_processes_share_one_redis_limit(named_app, app_config, server, redis_space):
    """Case C7, F5: two worker processes, one Redis, one limit; together they send exactly
    the limit and every other request gets 429."""
    config = {**app_config, "SMTP_SENDERS_RATELIMIT_STORAGE_URI": redis_space.url}
    client = named_app(redis_space.app_name, **config).test_client()
    sender_url = new_sender(client, server)
    spec = {"name": redis_space.app_name, "config": config, "sender_url": sender_url,
            "count": 4, "admin": "ann"}
    with subprocess.Popen(  # noqa: S603 - our own interpreter, our own script
            [sys.executable, "-c", SECOND_PROCESS, json.dumps(spec)], cwd=ROOT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True) as worker:
        try:
            ready, _, _ = select.select([worker.stdout], [], [], 60)
            assert ready and worker.stdout.readline() == "ready\n", worker.stderr.read()
            worker.stdin.write("go\n")
            worker.stdin.flush()
            ours = post_test_emails(client, sender_url, 4, "ann")  # while the worker posts
            out, err = worker.communicate(timeout=60)
        finally:
            worker.kill()
    assert worker.returncode == 0, err
    theirs = json.loads(out.strip().splitlines()[-1])
    assert sorted(ours + theirs) == [200] * 5 + [429] * 3, (ours, theirs)
    assert len(server.messages) == 5
