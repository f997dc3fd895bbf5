"""The databases the tests run on: one empty SQLite file or PostgreSQL schema per test.

``Database`` is what the ``database`` fixture (tests/conftest.py) yields;
``SMTP_SENDERS_TEST_POSTGRES_URL`` points at the PostgreSQL server (default
postgres@127.0.0.1:5432/test). ``engine_options`` and ``locked`` make a save meet a
locked table (security case F1).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass, field
from typing import Any

import psycopg

POSTGRES_URL = os.environ.get(
    "SMTP_SENDERS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@dataclass
class Database:
    """One empty database for one test: a SQLite file or a fresh PostgreSQL schema."""

    kind: str
    url: str
    engine_options: dict[str, Any] = field(default_factory=dict)
    schema: str | None = None

    def raw_connect(self) -> psycopg.Connection:
        conn = psycopg.connect(POSTGRES_URL.replace("+psycopg", ""), autocommit=True)
        if self.schema:
            conn.execute(f'SET search_path TO "{self.schema}"')
        return conn


def postgres_reachable() -> str | None:
    """None when PostgreSQL answers at POSTGRES_URL, else why not."""
    try:
        psycopg.connect(POSTGRES_URL.replace("+psycopg", ""), connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        return str(exc)
    return None


def engine_options(database, **extra_connect_args) -> dict[str, object]:
    """Short lock waits: SQLite's busy timeout, PostgreSQL's lock_timeout."""
    if database.kind == "sqlite":
        return {"connect_args": {"timeout": 0.1, **extra_connect_args}}
    return {"connect_args": {"options": f"-csearch_path={database.schema} -clock_timeout=100",
                             **extra_connect_args}}


@contextlib.contextmanager
def locked(database, *, readers_too: bool):
    """Another connection holds the sender table: writers (and readers) must wait."""
    if database.kind == "sqlite":
        conn = sqlite3.connect(database.url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE" if readers_too else "BEGIN IMMEDIATE")
    else:
        conn = database.raw_connect()
        conn.execute("BEGIN")
        conn.execute("LOCK TABLE smtp_senders IN "
                     f"{'ACCESS EXCLUSIVE' if readers_too else 'EXCLUSIVE'} MODE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()
