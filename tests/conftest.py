"""Shared fixtures: apps on SQLite and PostgreSQL, keys, and the loopback SMTP servers.

The servers' fixtures come from tests/support/smtp_servers.py and scripted_smtp.py (loaded
as plugins); everything else tests share is imported from tests/support/, never from
another test module or from this file (tests/docs/test_layout.py checks).

pytest-socket (``--allow-hosts`` in pyproject.toml) fails any connection to an address
other than loopback for the whole session, so a bug cannot send a packet out; it does not
see datagrams sent without connect() (a DNS query), so ``sendto`` has a guard of its own.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import uuid
from typing import Any

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_smtp_senders import SMTPSenders, get_service
from tests.support.databases import POSTGRES_URL, Database, postgres_reachable
from tests.support.loopback import bind_fixed_port

pytest_plugins = ["tests.support.smtp_servers", "tests.support.scripted_smtp",
                  "tests.support.token_server"]


def _is_loopback(host: object) -> bool:
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False  # a name: it would be resolved, and could be anywhere


@pytest.fixture(autouse=True, scope="session")
def no_datagram_leaves_the_machine():
    """Fail any sendto() to an address other than loopback, for the whole session."""
    real_sendto = socket.socket.sendto

    def sendto(self: socket.socket, data: bytes, *args: Any) -> int:
        address = args[-1]
        host = address[0] if isinstance(address, tuple) else address
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(host):
            raise RuntimeError(f"a test tried to send a datagram to {host}")
        return real_sendto(self, data, *args)

    socket.socket.sendto = sendto  # type: ignore[method-assign]
    yield
    socket.socket.sendto = real_sendto  # type: ignore[method-assign]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sqlite_only: what the module tests does not depend on the database, "
        "so its tests run on SQLite alone")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that needs a database runs on SQLite and PostgreSQL, but in modules
    marked ``sqlite_only`` and tests that choose their own (``parametrize("database",
    ..., indirect=True)``)."""
    chosen = any("database" in _names(mark.args[0])
                 for mark in metafunc.definition.iter_markers("parametrize"))
    if "database" in metafunc.fixturenames and not chosen:
        only = metafunc.definition.get_closest_marker("sqlite_only")
        metafunc.parametrize("database", ["sqlite"] if only else ["sqlite", "postgresql"],
                             indirect=True)


def _names(argnames: str | list[str] | tuple[str, ...]) -> list[str]:
    if isinstance(argnames, str):
        return [name.strip() for name in argnames.split(",")]
    return list(argnames)


@pytest.fixture
def database(request: pytest.FixtureRequest, tmp_path) -> Database:
    if request.param == "sqlite":
        yield Database("sqlite", f"sqlite:///{tmp_path / 'senders.db'}")
        return
    problem = postgres_reachable()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL}: {problem}")
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    db = Database("postgresql", POSTGRES_URL,
                  {"connect_args": {"options": f"-csearch_path={schema}"}}, schema)
    with db.raw_connect() as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield db
    with db.raw_connect() as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def fernet_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def make_app(database: Database, tls_material, fernet_key):
    """Build apps the way a host would; every SMTP server they reach is on loopback."""
    made: list[tuple[Flask, SQLAlchemy]] = []

    def factory(*, plugins=(), store=None, **config: Any) -> Flask:
        app = Flask(f"host_{len(made)}")
        app.config.update(
            SECRET_KEY="test-secret-key",
            SQLALCHEMY_DATABASE_URI=database.url,
            SQLALCHEMY_ENGINE_OPTIONS=database.engine_options,
            SMTP_SENDERS_ENCRYPTION_KEYS=[fernet_key],
            SMTP_SENDERS_CA_FILE=tls_material.ca_file,
            SMTP_SENDERS_OPERATION_TIMEOUT=2.0,
            SMTP_SENDERS_TIMEOUT=5.0,
            SMTP_SENDERS_EHLO_NAME="client.test",
            SMTP_SENDERS_ALLOW_LOOPBACK=True,  # every test server is on loopback
            # tests save far faster than an administrator; tests/web/test_write_rate_limit.py
            # sets the limit it checks
            SMTP_SENDERS_WRITE_RATE_LIMIT="100000 per minute",
            # DNS lookups only where a test starts a DNS server (example_app/dns_server.py)
            SMTP_SENDERS_DOMAIN_ADVICE=False,
            # init_app creates no table by default (a deploy step does): the tests turn
            # it on; tests/storage/test_no_ddl_by_default.py checks the default
            SMTP_SENDERS_CREATE_TABLES=True,
        )
        app.config.update(config)
        db = SQLAlchemy(app)
        SMTPSenders(app, db=db, store=store, plugins=plugins)
        made.append((app, db))
        return app

    yield factory
    for app, db in made:
        with app.app_context():
            db.engine.dispose()


@pytest.fixture
def app(make_app) -> Flask:
    return make_app()


@pytest.fixture
def service(app):
    with app.app_context():
        yield get_service(app)


@pytest.fixture
def catcher_on_2525(tmp_path):
    """The example portal's mail catcher on port 2525 (what makes the extension choose
    STARTTLS), on the run's loopback address or a spare one (tests/support/loopback.py),
    so it does not clash with a running ``make demo`` on 127.0.0.1:2525."""
    from example_app.catcher import start_catcher

    try:
        running = bind_fixed_port(
            2525, lambda host: start_catcher(tmp_path / "catcher", host, 2525, "pw"))
    except OSError as exc:
        pytest.fail(str(exc))
    yield running
    running.stop()
