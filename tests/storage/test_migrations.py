"""The shipped Alembic migrations: ``schema.upgrade``, ``flask smtp-senders upgrade`` and
the upgrade ``init_app`` runs with ``SMTP_SENDERS_CREATE_TABLES``.

Every test that takes ``database`` runs on SQLite and on PostgreSQL (a fresh schema, which
the engines reach through ``search_path``: the version table must land there too).
"""

from __future__ import annotations

import logging
import multiprocessing
import socket
import threading
from datetime import datetime, timezone
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from cryptography.fernet import Fernet
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    inspect,
    select,
    text,
)

from flask_smtp_senders import SenderSettings, SMTPSenders, get_service
from flask_smtp_senders.storage import schema
from flask_smtp_senders.storage.models import Base

HEAD = "smtp_senders_0003"
VERSION_TABLE = "smtp_senders_alembic_version"
FIRST = "smtp_senders_0001"
SECOND = "smtp_senders_0002"
NEW_COLUMNS = ["password_binding", "settings_fingerprint", "tested_fingerprint",
               "last_check_at", "last_check_ok", "last_check_stage"]
#: 0003's columns (issue 16) and what every existing sender gets in them: a Custom Server.
PROVIDER_COLUMNS = {"provider": "custom", "tenant_id": "", "client_id": "", "token_url": "",
                    "scope": "", "secret_expires": ""}
TOKEN_TABLE = "smtp_sender_tokens"
WHEN = datetime(2026, 11, 1, 9, 30, tzinfo=timezone.utc)

# The table as SMTP_SENDERS_CREATE_TABLES made it before migrations (models.py at
# d72a211), written out so the test does not depend on the migrations it checks.
OLD = MetaData()
Table(
    "smtp_senders", OLD,
    Column("id", Integer, primary_key=True),
    Column("username", String(254), nullable=False),
    Column("password_token", Text, nullable=False),
    Column("server_name", String(253), nullable=False),
    Column("port", Integer, nullable=False),
    Column("from_name", String(200), nullable=False),
    Column("from_address", String(254), nullable=False),
    Column("reply_to_name", String(200), nullable=False),
    Column("reply_to_address", String(254), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("version", Integer, nullable=False),
    Column("last_test_at", DateTime(timezone=True)),
    Column("last_test_ok", Boolean),
    Column("is_default", Boolean, nullable=False),
)
OLD_ROW: dict[str, Any] = {
    "username": "mailer@example.com", "password_token": "gAAAA-old-token",
    "server_name": "smtp.example.com", "port": 587, "from_name": "Portal",
    "from_address": "noreply@example.com", "reply_to_name": "",
    "reply_to_address": "", "created_at": WHEN, "updated_at": WHEN, "version": 3,
    "last_test_at": WHEN, "last_test_ok": True, "is_default": True,
}


@pytest.fixture
def engine(database) -> Engine:
    """An engine on the test's database (on PostgreSQL, its schema via search_path)."""
    made = create_engine(database.url, **database.engine_options)
    yield made
    made.dispose()


def migrate_to(engine: Engine, revision: str) -> None:
    """Apply our migrations up to ``revision`` only (an older release's schema)."""
    with engine.begin() as conn:
        command.upgrade(schema._config(conn, None), revision)


def old_create_all(engine: Engine, row: dict[str, Any] | None = OLD_ROW) -> None:
    """What an older release left: its create_all's table, one sender, no version table."""
    OLD.create_all(engine)
    if row:
        with engine.begin() as conn:
            conn.execute(OLD.tables["smtp_senders"].insert(), row)


def rows(engine: Engine) -> list[dict[str, Any]]:
    """The rows of an upgraded table, read through the models' columns (typed)."""
    table = Base.metadata.tables["smtp_senders"]
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(select(table).order_by(table.c.id))]


def columns(engine: Engine, table: str = "smtp_senders") -> list[str]:
    return [column["name"] for column in inspect(engine).get_columns(table)]


def versions(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.scalars(text("SELECT version_num FROM smtp_senders_alembic_version")))


def set_version(engine: Engine, revision: str) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE smtp_senders_alembic_version SET version_num = :rev"),
                     {"rev": revision})


def differences(engine: Engine) -> list[Any]:
    """What Alembic's autogenerate finds between the database and our models (our
    version table left out, as in our environment)."""
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"version_table": VERSION_TABLE, "compare_type": True})
        return compare_metadata(context, Base.metadata)


def utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def assert_old_row_intact(engine: Engine) -> None:
    (row,) = rows(engine)
    for name, value in OLD_ROW.items():
        got = utc(row[name]) if isinstance(value, datetime) else row[name]
        assert got == value, name
    assert [row[name] for name in NEW_COLUMNS] == [None] * len(NEW_COLUMNS)
    assert {name: row[name] for name in PROVIDER_COLUMNS} == PROVIDER_COLUMNS


# -- schema.upgrade ---------------------------------------------------------------------


def test_head_is_the_last_shipped_revision() -> None:
    """The scripts' head is 0003 and the history is one line from 0001 (a new revision
    must move HEAD here and in the stamping table of schema.py)."""
    assert schema.head() == HEAD
    scripts = schema._scripts()
    assert [s.revision for s in scripts.walk_revisions()] == [HEAD, SECOND, FIRST]
    assert scripts.get_revision(FIRST).branch_labels == {"smtp_senders"}
    assert schema._CREATE_ALL_REVISIONS[-1][0] == HEAD


def test_empty_database_is_upgraded_to_head_with_the_models_schema(database, engine) -> None:
    """Nothing -> 0001 -> 0002 -> 0003; the result is exactly the models' tables
    (autogenerate finds no difference) and the version table says head."""
    assert schema.current(engine) is None
    steps: list[str] = []
    done = schema.upgrade(engine, progress=steps.append)
    assert (done.before, done.after, done.stamped, done.changed) == (None, HEAD, None, True)
    assert [step.split(":")[0] for step in steps] == [
        f"Applied nothing -> {FIRST}", f"Applied {FIRST} -> {SECOND}",
        f"Applied {SECOND} -> {HEAD}"]
    assert differences(engine) == []
    assert versions(engine) == [HEAD]
    assert schema.current(engine) == HEAD
    assert set(inspect(engine).get_table_names()) == {"smtp_senders", TOKEN_TABLE,
                                                      VERSION_TABLE}
    if database.kind == "postgresql":  # in the test's own schema, not public
        with database.raw_connect() as conn:
            found = conn.execute(
                "SELECT to_regclass(%s::text), "
                "to_regclass('public.smtp_senders_alembic_version')",
                (f'"{database.schema}".{VERSION_TABLE}',)).fetchone()
        assert found[0] is not None and found[1] is None


def test_a_second_upgrade_is_a_no_op_of_one_read(engine) -> None:
    """At head, upgrade changes nothing and costs one SELECT of the version table."""
    schema.upgrade(engine)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute",
                 lambda conn, cursor, sql, *args: statements.append(sql))
    done = schema.upgrade(engine)
    assert (done.before, done.after, done.changed) == (HEAD, HEAD, False)
    assert len(statements) == 1 and VERSION_TABLE in statements[0]
    assert versions(engine) == [HEAD]


def test_the_comparison_does_see_a_missing_column(engine) -> None:
    """The schema check above can fail: at 0001, autogenerate reports the twelve columns
    and the token table."""
    migrate_to(engine, FIRST)
    found = differences(engine)
    added = sorted(diff[3].name for diff in found if diff[0] == "add_column")
    assert added == sorted([*NEW_COLUMNS, *PROVIDER_COLUMNS])
    assert [diff[1].name for diff in found if diff[0] == "add_table"] == [TOKEN_TABLE]


def test_revision_0001_is_the_table_the_old_create_all_made(engine) -> None:
    """0001 builds exactly the pre-migration table (compared with that table's metadata)."""
    migrate_to(engine, FIRST)
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"version_table": VERSION_TABLE, "compare_type": True})
        assert compare_metadata(context, OLD) == []


def test_a_0001_database_keeps_its_row_and_gains_null_columns(engine) -> None:
    """A database at 0001 holding a sender: upgrade adds the columns, empty, and keeps
    every value of the row."""
    migrate_to(engine, FIRST)
    with engine.begin() as conn:
        conn.execute(OLD.tables["smtp_senders"].insert(), OLD_ROW)
    done = schema.upgrade(engine)
    assert (done.before, done.after, done.stamped) == (FIRST, HEAD, None)
    assert_old_row_intact(engine)
    assert versions(engine) == [HEAD]
    assert differences(engine) == []


def test_a_table_of_the_old_create_all_is_recorded_as_0001_then_upgraded(engine) -> None:
    """No version table, the old columns: stamped 0001, then 0002 and 0003 run; the row
    is kept."""
    old_create_all(engine)
    steps: list[str] = []
    done = schema.upgrade(engine, progress=steps.append)
    assert (done.before, done.after, done.stamped) == (None, HEAD, FIRST)
    assert f"recorded it as {FIRST}" in steps[0]
    assert steps[1].startswith(f"Applied {FIRST} -> {SECOND}")
    assert steps[2].startswith(f"Applied {SECOND} -> {HEAD}")
    assert_old_row_intact(engine)
    assert versions(engine) == [HEAD]
    assert differences(engine) == []


def test_a_table_with_every_column_but_no_version_table_is_recorded_as_head(engine) -> None:
    """This week's create_all made the full table: it is stamped head, nothing is run."""
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(Base.metadata.tables["smtp_senders"].insert(),
                     {**OLD_ROW, "password_binding": "mac"})
    steps: list[str] = []
    done = schema.upgrade(engine, progress=steps.append)
    assert (done.before, done.after, done.stamped) == (None, HEAD, HEAD)
    assert len(steps) == 1 and f"recorded it as {HEAD}" in steps[0]
    assert versions(engine) == [HEAD]
    assert rows(engine)[0]["password_binding"] == "mac"


def test_a_table_with_some_new_columns_added_by_hand_gets_the_others(engine) -> None:
    """The old docs' ALTER TABLE for password_binding alone: recorded as 0001, and 0002
    adds only the five missing columns, keeping the binding."""
    old_create_all(engine)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE smtp_senders ADD COLUMN password_binding VARCHAR(128)"))
        conn.execute(text("UPDATE smtp_senders SET password_binding = 'mac'"))
    done = schema.upgrade(engine)
    assert done.stamped == FIRST
    assert rows(engine)[0]["password_binding"] == "mac"
    assert differences(engine) == []


def test_a_foreign_smtp_senders_table_is_refused_and_left_alone(engine) -> None:
    """A table of that name that is not ours: SchemaError naming what it lacks, and no
    version table is created."""
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE smtp_senders (id INTEGER PRIMARY KEY, name TEXT)"))
    with pytest.raises(schema.SchemaError, match="lacks the columns .*password_token"):
        schema.upgrade(engine)
    assert columns(engine) == ["id", "name"]
    assert not inspect(engine).has_table(VERSION_TABLE)


def test_the_hosts_alembic_version_is_left_untouched(engine) -> None:
    """A host's own Alembic history (alembic_version) is neither read nor written."""
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL "
                          "PRIMARY KEY)"))
        conn.execute(text("INSERT INTO alembic_version VALUES ('hostrev42')"))
    old_create_all(engine)
    schema.upgrade(engine)
    schema.upgrade(engine)
    with engine.connect() as conn:
        assert list(conn.scalars(text("SELECT version_num FROM alembic_version"))) == [
            "hostrev42"]
    assert columns(engine, "alembic_version") == ["version_num"]
    assert versions(engine) == [HEAD]


def test_a_hosts_autogenerate_ignores_our_tables_with_include_name(engine) -> None:
    """A host's metadata compared with a database holding our tables: without the filter
    autogenerate would drop them; with schema.include_name it finds nothing to do."""
    host = MetaData()
    Table("users", host, Column("id", Integer, primary_key=True))
    host.create_all(engine)
    schema.upgrade(engine)
    with engine.connect() as conn:
        unfiltered = compare_metadata(MigrationContext.configure(conn), host)
        filtered = compare_metadata(MigrationContext.configure(
            conn, opts={"include_name": schema.include_name}), host)
    assert {diff[1].name for diff in unfiltered if diff[0] == "remove_table"} == {
        "smtp_senders", TOKEN_TABLE, VERSION_TABLE}
    assert filtered == []


def test_a_revision_from_a_newer_release_is_refused(engine) -> None:
    """A version table at a revision we do not know: NewerSchema, nothing changed."""
    schema.upgrade(engine)
    set_version(engine, "smtp_senders_0099")
    with pytest.raises(schema.NewerSchema, match="smtp_senders_0099"):
        schema.upgrade(engine)
    assert versions(engine) == ["smtp_senders_0099"]


def test_threads_starting_together_upgrade_once(engine) -> None:
    """Apps started in threads of one process: one upgrades, the others wait and find
    nothing to do (Alembic's proxies are process-wide, so one migration at a time)."""
    barrier = threading.Barrier(4)
    results: list[Any] = []

    def run() -> None:
        barrier.wait()
        try:
            results.append(schema.upgrade(engine))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion
            results.append(exc)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert all(isinstance(result, schema.Upgrade) for result in results), results
    assert len(results) == 4
    assert sum(1 for result in results if result.changed) == 1
    assert versions(engine) == [HEAD]


def upgrade_in_a_process(url: str, options: dict[str, Any], barrier: Any, out: Any) -> None:
    """A web worker starting: its own interpreter, its own engine."""
    options = {**options, "connect_args": {"options": options["connect_args"]["options"]
                                           + " -clock_timeout=20000"}}
    engine = create_engine(url, **options)
    barrier.wait()
    try:
        out.put(repr(schema.upgrade(engine)))
    except Exception as exc:  # noqa: BLE001 - reported to the test
        out.put(f"error: {type(exc).__name__}: {exc}")
    finally:
        engine.dispose()


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)  # SQLite: one process
def test_processes_starting_together_upgrade_once(database) -> None:
    """Workers of a PostgreSQL deployment starting together: the advisory lock makes the
    others wait for the first and then find nothing to do (without it one CREATE TABLE
    fails on the other's table)."""
    context = multiprocessing.get_context("spawn")
    barrier, out = context.Barrier(3), context.Queue()
    workers = [context.Process(target=upgrade_in_a_process,
                               args=(database.url, database.engine_options, barrier, out))
               for _ in range(3)]
    for worker in workers:
        worker.start()
    results = [out.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(30)
    assert not [result for result in results if result.startswith("error")], results
    assert sum(1 for result in results if "before=None" in result) == 1, results


# -- flask smtp-senders upgrade -----------------------------------------------------------


def run_cli(app: Flask, *args: str):
    return app.test_cli_runner().invoke(args=["smtp-senders", *args])


def test_cli_upgrade_creates_the_table_and_then_finds_it_up_to_date(make_app) -> None:
    """On an empty database it says from what to what (steps on stderr) and exits 0; run
    again, and as create-tables, it says up to date."""
    app = make_app(SMTP_SENDERS_CREATE_TABLES=False)
    first = run_cli(app, "upgrade")
    assert first.exit_code == 0, first.output
    assert first.stdout == f"Upgraded the sender schema from nothing to {HEAD}.\n"
    assert f"Applied nothing -> {FIRST}" in first.stderr
    assert f"Applied {FIRST} -> {SECOND}" in first.stderr
    assert f"Applied {SECOND} -> {HEAD}" in first.stderr
    for name in ("upgrade", "create-tables"):
        again = run_cli(app, name)
        assert again.exit_code == 0, again.output
        assert again.output == f"The sender schema is up to date ({HEAD}).\n"
    with app.app_context():
        assert get_service(app).list_senders() == []


def test_cli_upgrade_of_an_old_database_says_it_recorded_it(make_app, engine) -> None:
    """An old create_all table: stderr says it was recorded as 0001, stdout 0001 -> head."""
    old_create_all(engine)
    app = make_app(SMTP_SENDERS_CREATE_TABLES=False)
    result = run_cli(app, "create-tables")
    assert result.exit_code == 0, result.output
    assert f"recorded it as {FIRST}" in result.stderr
    assert result.stdout == f"Upgraded the sender schema from {FIRST} to {HEAD}.\n"
    assert_old_row_intact(engine)


def test_cli_upgrade_of_a_full_untracked_table_only_records_it(make_app, engine) -> None:
    """A table with every column but no version table: recorded as head, nothing run."""
    Base.metadata.create_all(engine)
    app = make_app(SMTP_SENDERS_CREATE_TABLES=False)
    result = run_cli(app, "upgrade")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"The sender schema is up to date ({HEAD}); recorded it as such.\n"
    assert "Applied" not in result.stderr
    assert versions(engine) == [HEAD]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def unreachable_app(url: str, **config: Any) -> tuple[Flask, SQLAlchemy]:
    app = Flask("unreachable")
    app.config.update({"SECRET_KEY": "host-secret", "SQLALCHEMY_DATABASE_URI": url,
                       "SMTP_SENDERS_ENCRYPTION_KEYS": [Fernet.generate_key().decode()],
                       "SMTP_SENDERS_CREATE_TABLES": False, **config})
    db = SQLAlchemy(app)
    return app, db


SECRET = "Db-Passw0rd-Never-Shown"


@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
def test_cli_upgrade_of_an_unreachable_database_exits_1_in_one_line(kind, tmp_path) -> None:
    """A closed port (or a SQLite file in a missing folder): exit 1, one line naming the
    database with its password masked, no traceback."""
    url = (f"postgresql+psycopg://portal:{SECRET}@127.0.0.1:{closed_port()}/portal"
           if kind == "postgresql" else f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
    app, db = unreachable_app(url)
    SMTPSenders(app, db=db)
    try:
        result = run_cli(app, "upgrade")
    finally:
        with app.app_context():
            db.engine.dispose()
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("Error: cannot reach the database ")
    assert "nothing was changed" in result.stderr
    assert SECRET not in result.output and "Traceback" not in result.output
    if kind == "postgresql":
        assert "portal:***@127.0.0.1" in result.stderr


def test_init_app_on_an_unreachable_database_fails_without_the_password() -> None:
    """With SMTP_SENDERS_CREATE_TABLES on, the app does not start, and says where without
    the password."""
    app, db = unreachable_app(
        f"postgresql+psycopg://portal:{SECRET}@127.0.0.1:{closed_port()}/portal",
        SMTP_SENDERS_CREATE_TABLES=True)
    try:
        with pytest.raises(schema.DatabaseUnreachable) as excinfo:
            SMTPSenders(app, db=db)
    finally:
        with app.app_context():
            db.engine.dispose()
    assert SECRET not in str(excinfo.value) and "***" in str(excinfo.value)


# -- init_app with SMTP_SENDERS_CREATE_TABLES ---------------------------------------------


def new_settings(number: int) -> SenderSettings:
    return SenderSettings(username=f"mailer{number}@example.com",
                          server_name="smtp.example.com", port=465,
                          from_address=f"noreply{number}@example.com")


def test_apps_started_with_create_tables_upgrade_and_share_the_table(make_app, engine) -> None:
    """The first app creates the table at head; a second one (the cheap path) sees the
    first one's sender, and the schema is the models'."""
    first = make_app()
    assert versions(engine) == [HEAD]
    with first.app_context():
        created = get_service(first).create_sender(new_settings(1), "Pw-Secret-1")
    second = make_app()
    with second.app_context():
        assert [s.id for s in get_service(second).list_senders()] == [created.id]
    assert differences(engine) == []


def test_an_app_started_on_an_old_database_upgrades_it_and_works(make_app, engine) -> None:
    """An older release's demo database: starting the app adds the columns, the old
    sender is listed, and new senders can be saved, tested state and all."""
    old_create_all(engine)
    app = make_app()  # make_app turns SMTP_SENDERS_CREATE_TABLES on
    assert versions(engine) == [HEAD]
    with app.app_context():
        service = get_service(app)
        (old,) = service.list_senders()
        assert (old.settings.from_address, old.version) == ("noreply@example.com", 3)
        assert old.password_binding is None and old.last_check_at is None
        created = service.create_sender(new_settings(2), "Pw-Secret-2")
        assert created.password_binding and created.settings_fingerprint
        assert [s.id for s in service.list_senders()] == [old.id, created.id]
        assert created.id > old.id
    first_row = rows(engine)[0]
    assert first_row["password_token"] == OLD_ROW["password_token"]
    assert first_row["password_binding"] is None


def test_an_app_on_a_newer_schema_still_starts_with_a_warning(make_app, engine,
                                                              caplog) -> None:
    """Rolled back to this release after a newer one upgraded the database: init_app logs
    a warning instead of refusing to start, and changes nothing."""
    schema.upgrade(engine)
    set_version(engine, "smtp_senders_0099")
    with caplog.at_level(logging.WARNING):
        app = make_app()
    assert "smtp_senders_0099" in caplog.text
    with app.app_context():
        assert get_service(app).list_senders() == []
    assert versions(engine) == ["smtp_senders_0099"]
