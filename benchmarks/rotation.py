"""Key rotation of 1,000 senders on SQLite and PostgreSQL, against floors from the same run.

Run: ``.venv/bin/python benchmarks/rotation.py`` (or ``make bench``). The target is 2 s for
``SenderService.rotate_keys()`` (median of 3 runs, each moving the 1,000 passwords from the
old key to the new one). Two baselines put the number in context:

- crypto floor: a bare loop of ``MultiFernet.rotate`` over the same tokens, in memory;
- database floor: a bare ``UPDATE ... WHERE id = ?`` of the 1,000 rows with executemany.

The end-to-end ``flask smtp-senders rotate-keys`` (which also counts the senders for its
progress bar) is timed once per database for information. PostgreSQL gets a fresh schema
on ``SMTP_SENDERS_TEST_POSTGRES_URL`` (default: the local test database), dropped at the
end. Exit status: 0 PASS, 1 FAIL or a database could not be measured.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg
from cryptography.fernet import Fernet, MultiFernet
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import bindparam, insert, select, update

from flask_smtp_senders import SMTPSenders, get_service
from flask_smtp_senders.storage.models import SenderRow

SENDERS = 1000
RUNS = 3
TARGET_SECONDS = 2.0
POSTGRES_URL = os.environ.get(
    "SMTP_SENDERS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
TABLE = SenderRow.__table__


@dataclass
class Result:
    database: str
    rotation: float = 0.0
    crypto_floor: float = 0.0
    db_floor: float = 0.0
    cli: float = 0.0
    problem: str | None = None


def median_seconds(prepare: Callable[[], None], work: Callable[[], Any]) -> float:
    """Median of RUNS timings of ``work``, each after an untimed ``prepare``."""
    samples = []
    for _ in range(RUNS):
        prepare()
        started = time.perf_counter()
        work()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def build_app(url: str, engine_options: dict[str, Any], keys: list[str]) -> Flask:
    app = Flask(f"bench_rotation_{uuid.uuid4().hex[:6]}")
    app.config.update(SECRET_KEY="bench",  # noqa: S106 - a throwaway app
                      SQLALCHEMY_DATABASE_URI=url, SQLALCHEMY_ENGINE_OPTIONS=engine_options,
                      SMTP_SENDERS_ENCRYPTION_KEYS=keys,
                      SMTP_SENDERS_REGISTER_BLUEPRINT=False, SMTP_SENDERS_CREATE_TABLES=True)
    SMTPSenders(app, db=SQLAlchemy(app))
    return app


def measure(name: str, url: str, engine_options: dict[str, Any]) -> Result:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    old_tokens = [Fernet(old).encrypt(f"password-{n}".encode()).decode("ascii")
                  for n in range(SENDERS)]
    app = build_app(url, engine_options, [new.decode(), old.decode()])
    with app.app_context():
        engine = app.extensions["sqlalchemy"].engine
        service = get_service(app)
        now = datetime.now(timezone.utc)
        with engine.begin() as conn:  # one bulk INSERT, not 1,000 audited creates
            conn.execute(insert(TABLE), [
                {"username": f"user{n}@example.com", "password_token": token,
                 "server_name": "smtp.example.com", "port": 587, "from_name": "",
                 "from_address": f"n{n}@example.com", "reply_to_name": "",
                 "reply_to_address": "", "created_at": now, "updated_at": now,
                 "version": 1}
                for n, token in enumerate(old_tokens)
            ])
            ids = list(conn.scalars(select(TABLE.c.id).order_by(TABLE.c.id)))

        def restore_old_tokens() -> None:
            with engine.begin() as conn:
                conn.execute(update(TABLE).where(TABLE.c.id == bindparam("row_id"))
                             .values(password_token=bindparam("token")),
                             [{"row_id": i, "token": t}
                              for i, t in zip(ids, old_tokens, strict=True)])

        def rotated_count() -> None:
            if service.rotate_keys() != (SENDERS, 0):
                raise RuntimeError("rotate_keys() did not rotate every sender")

        result = Result(name)
        result.rotation = median_seconds(restore_old_tokens, rotated_count)

        both = MultiFernet([Fernet(new), Fernet(old)])
        encoded = [token.encode("ascii") for token in old_tokens]
        result.crypto_floor = median_seconds(
            lambda: None, lambda: [both.rotate(token) for token in encoded])

        new_tokens = [Fernet(new).encrypt(f"password-{n}".encode()).decode("ascii")
                      for n in range(SENDERS)]
        rows = [{"row_id": i, "token": t} for i, t in zip(ids, new_tokens, strict=True)]

        def bare_update() -> None:
            with engine.begin() as conn:
                conn.execute(update(TABLE).where(TABLE.c.id == bindparam("row_id"))
                             .values(password_token=bindparam("token")), rows)

        result.db_floor = median_seconds(lambda: None, bare_update)

        restore_old_tokens()
        started = time.perf_counter()
        cli = app.test_cli_runner().invoke(args=["smtp-senders", "rotate-keys"])
        result.cli = time.perf_counter() - started
        if cli.exit_code != 0:
            raise RuntimeError(f"rotate-keys exited {cli.exit_code}: {cli.output}")
        with engine.connect() as conn:  # the point of it all: the new key alone reads them
            stored = list(conn.scalars(select(TABLE.c.password_token)))
        alone = Fernet(new)
        if sorted(alone.decrypt(t.encode()).decode() for t in stored) != sorted(
                f"password-{n}" for n in range(SENDERS)):
            raise RuntimeError("after rotate-keys the new key alone does not read them all")
        engine.dispose()
    return result


@contextmanager
def sqlite_database() -> Iterator[tuple[str, dict[str, Any]]]:
    with tempfile.TemporaryDirectory() as folder:
        yield f"sqlite:///{Path(folder) / 'rotation.db'}", {}


@contextmanager
def postgres_schema() -> Iterator[tuple[str, dict[str, Any]]]:
    raw = POSTGRES_URL.replace("+psycopg", "")
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(raw, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield POSTGRES_URL, {"connect_args": {"options": f"-csearch_path={schema}"}}
    finally:
        with psycopg.connect(raw, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def run(name: str, database: Callable[[], Any]) -> Result:
    try:
        with database() as (url, options):
            return measure(name, url, options)
    except (psycopg.OperationalError, RuntimeError) as exc:
        return Result(name, problem=f"{type(exc).__name__}: {str(exc).splitlines()[0]}")


def main() -> int:
    results = [run("SQLite (file)", sqlite_database),
               run("PostgreSQL", postgres_schema)]
    print(f"rotate_keys() of {SENDERS} senders, median of {RUNS} runs")
    header = (f"{'database':<14} {'rotation s':>10} {'target s':>9} {'x crypto floor':>15} "
              f"{'x db floor':>11} {'CLI s':>7}  verdict")
    print(header)
    print("-" * len(header))
    verdict = 0
    for r in results:
        if r.problem:
            print(f"{r.database:<14} {'-':>10} {TARGET_SECONDS:>9.1f} {'-':>15} {'-':>11} "
                  f"{'-':>7}  NOT MEASURED ({r.problem})")
            verdict = 1
            continue
        ok = r.rotation < TARGET_SECONDS
        verdict |= not ok
        print(f"{r.database:<14} {r.rotation:>10.3f} {TARGET_SECONDS:>9.1f} "
              f"{r.rotation / r.crypto_floor:>15.2f} {r.rotation / r.db_floor:>11.2f} "
              f"{r.cli:>7.3f}  {'PASS' if ok else 'FAIL'}")
    print()
    print("floors (median s): " + "; ".join(
        f"{r.database}: crypto {r.crypto_floor:.3f}, db {r.db_floor:.3f}"
        for r in results if not r.problem))
    slow = [r.database for r in results if not r.problem and r.rotation >= TARGET_SECONDS]
    missing = [r.database for r in results if r.problem]
    if slow:
        print(f"RESULT: FAIL: over {TARGET_SECONDS:.0f} s on " + ", ".join(slow))
    elif missing:
        print("RESULT: INCOMPLETE: not measured on " + ", ".join(missing))
    else:
        print(f"RESULT: PASS: under {TARGET_SECONDS:.0f} s on every database")
    return verdict


if __name__ == "__main__":
    sys.exit(main())
