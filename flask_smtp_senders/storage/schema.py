"""The sender table's schema, kept up to date by the Alembic migrations shipped with us.

:func:`upgrade` brings a database to the newest revision (:func:`head`): it creates the
table in an empty database, adds what a newer version needs to an older one, and does
nothing (one read of the version table) when it is up to date. ``flask smtp-senders
upgrade`` and ``SMTP_SENDERS_CREATE_TABLES`` both run it.

Our history lives in a version table of our own, :data:`VERSION_TABLE`, never in a host's
``alembic_version``, so a host's Alembic or Flask-Migrate history is left alone. A table
made by ``create_all`` in a version before migrations (so without our version table) is
first recorded as the revision its columns match, then upgraded.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, column, inspect, select, table, text
from sqlalchemy.exc import DBAPIError

from ..errors import SMTPSendersError
from .models import Base

#: Where our revisions are recorded (not ``alembic_version``: that one is the host's).
VERSION_TABLE = "smtp_senders_alembic_version"
#: The tables the migrations make: the senders and our version table.
TABLES = frozenset({"smtp_senders", "smtp_sender_tokens", VERSION_TABLE})
MIGRATIONS = Path(__file__).resolve().parent / "migrations"

#: A ``smtp_senders`` table without our version table was made by ``create_all``: the
#: revision it is recorded as is the last one whose columns it all has. Every such table
#: predates the migrations, so this list never grows beyond the columns of those days.
_CREATE_ALL_REVISIONS: tuple[tuple[str, frozenset[str]], ...] = (
    ("smtp_senders_0001", frozenset({
        "id", "username", "password_token", "server_name", "port", "from_name",
        "from_address", "reply_to_name", "reply_to_address", "created_at", "updated_at",
        "version", "last_test_at", "last_test_ok", "is_default"})),
    ("smtp_senders_0002", frozenset({
        "password_binding", "settings_fingerprint", "tested_fingerprint", "last_check_at",
        "last_check_ok", "last_check_stage"})),
    ("smtp_senders_0003", frozenset({
        "provider", "tenant_id", "client_id", "token_url", "scope", "secret_expires"})),
)
# Taken inside the migration's transaction on PostgreSQL, so that web workers starting
# together upgrade one after another (the later ones then find nothing to do).
_PG_LOCK_KEY = 0x736D74705F736368  # b"smtp_sch"
_IN_PROCESS = threading.Lock()

_VERSION_NUMS = select(column("version_num")).select_from(table(VERSION_TABLE))

Progress = Callable[[str], None]


class SchemaError(SMTPSendersError):
    """The sender schema could not be brought up to date; the message says why (never
    with a database password)."""


class DatabaseUnreachable(SchemaError):
    """No connection could be made to the database: nothing was changed."""


class NewerSchema(SchemaError):
    """The database is at a revision this version does not know (a newer version of
    flask-smtp-senders upgraded it): nothing was changed."""


@dataclass(frozen=True)
class Upgrade:
    """What :func:`upgrade` did: the revision before (None: no table of ours), the one
    after (the head), and the revision an untracked old table was recorded as."""

    before: str | None
    after: str
    stamped: str | None = None

    @property
    def changed(self) -> bool:
        return self.before != self.after or self.stamped is not None


def include_ours(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic ``include_name`` of our own environment: only our models' tables (Alembic
    leaves out its version table by itself), so autogenerate run against a host's
    database never proposes to drop the host's tables."""
    return type_ != "table" or name in Base.metadata.tables


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic ``include_name`` for a host's environment (Flask-Migrate's ``env.py``):
    everything but our tables, so autogenerate never proposes to drop them."""
    return type_ != "table" or name not in TABLES


def _scripts() -> ScriptDirectory:
    return ScriptDirectory(str(MIGRATIONS))


@functools.cache
def head() -> str:
    """The newest revision this version of the package knows."""
    return _scripts().get_current_head()  # type: ignore[return-value]


def current(engine: Engine) -> str | None:
    """The revision the database is at; None when it has no version table of ours (empty,
    or a table from before migrations: :func:`upgrade` records and upgrades it)."""
    with _connect(engine) as conn:
        return _current(conn)


def upgrade(engine: Engine, progress: Progress | None = None) -> Upgrade:
    """Bring the database to :func:`head` and say what was done. ``progress``, when given,
    is called with a line for each step (a recorded old table, each revision applied).

    Raises DatabaseUnreachable when no connection can be made, NewerSchema when the
    database is at a revision unknown here, SchemaError when a ``smtp_senders`` table
    that is not ours is in the way; other database failures propagate (SQLAlchemyError).
    On PostgreSQL the whole upgrade is one transaction: it applies whole or not at all.
    """
    target = head()
    at = _fast_read(engine)
    if at == [target]:
        return Upgrade(target, target)
    # Alembic's ``op`` and ``context`` are process-wide: one migration at a time here.
    with _IN_PROCESS, _connect(engine) as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        before = _current(conn)
        stamped = None
        if before is None and inspect(conn).has_table("smtp_senders"):
            stamped = _matching_revision(conn)
            _run(conn, command.stamp, stamped, progress)
            if progress:
                progress(f"The smtp_senders table had no version table: recorded it as "
                         f"{stamped} (the revision its columns match).")
        if (stamped or before) != target:
            _run(conn, command.upgrade, target, progress)
    return Upgrade(before, target, stamped)


def _connect(engine: Engine) -> Connection:
    try:
        return engine.connect()
    except DBAPIError as exc:
        raise DatabaseUnreachable(_unreachable(engine, exc)) from exc


def _unreachable(engine: Engine, exc: DBAPIError) -> str:
    """One line naming the database (password masked) and the driver's first line."""
    reason = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else ""
    password = engine.url.password
    if password:
        reason = reason.replace(str(password), "***")
    where = engine.url.render_as_string(hide_password=True)
    return (f"cannot reach the database {where}"
            + (f" ({reason})" if reason else "") + "; nothing was changed.")


def _fast_read(engine: Engine) -> list[str] | None:
    """The version table's rows in one statement; None when it cannot be read (missing:
    the careful path decides)."""
    with _connect(engine) as conn:
        try:
            return list(conn.scalars(_VERSION_NUMS))
        except DBAPIError:
            return None


def _current(conn: Connection) -> str | None:
    heads = MigrationContext.configure(
        conn, opts={"version_table": VERSION_TABLE}).get_current_heads()
    if not heads:
        return None
    known = {script.revision for script in _scripts().walk_revisions()}
    unknown = [rev for rev in heads if rev not in known]
    if unknown or len(heads) > 1:
        raise NewerSchema(
            f"the database's sender schema is at revision {', '.join(heads)}, which this "
            f"version of flask-smtp-senders does not know (its newest is {head()}): it was "
            "upgraded by a newer version. Nothing was changed.")
    return heads[0]


def _matching_revision(conn: Connection) -> str:
    """The revision an untracked ``smtp_senders`` table (made by ``create_all``) is at:
    the last one whose columns it has in full (0001 at least, or it is not ours). One
    that has only some of a later revision's columns is recorded at the revision before,
    whose upgrade adds just the missing ones."""
    columns = {column["name"] for column in inspect(conn).get_columns("smtp_senders")}
    matched, expected = None, set()
    for revision, added in _CREATE_ALL_REVISIONS:
        expected |= added
        if not expected <= columns:
            break
        matched = revision
    if matched is None:
        missing = ", ".join(sorted(_CREATE_ALL_REVISIONS[0][1] - columns))
        raise SchemaError(
            f"a table smtp_senders exists but lacks the columns {missing}: it is not "
            "flask-smtp-senders' table (or one too old to upgrade). Nothing was changed.")
    return matched


def _config(conn: Connection, progress: Progress | None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = conn
    if progress:
        config.attributes["on_version_apply"] = _reporter(progress)
    return config


def _reporter(progress: Progress) -> Callable[..., None]:
    def report(*, ctx: Any, step: Any, heads: Iterable[str], run_args: Any) -> None:
        if step.is_upgrade and not step.is_stamp:
            before = ", ".join(step.down_revision_ids) or "nothing"
            doc = (step.up_revision.doc or "").strip().splitlines()
            progress(f"Applied {before} -> {step.up_revision_id}"
                     + (f": {doc[0]}" if doc else ""))
    return report


def _run(conn: Connection, action: Callable[..., None], revision: str,
         progress: Progress | None) -> None:
    action(_config(conn, progress), revision)


__all__ = ["VERSION_TABLE", "DatabaseUnreachable", "NewerSchema", "SchemaError", "Upgrade",
           "current", "head", "include_name", "upgrade"]
