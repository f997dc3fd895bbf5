"""The Alembic environment of flask-smtp-senders' migrations, driven from Python.

:func:`flask_smtp_senders.storage.schema.upgrade` runs it without any ``alembic.ini``: the
connection to use comes in ``config.attributes["connection"]`` (inside the caller's
transaction) and ``config.attributes["on_version_apply"]`` may report each step. Run by the
``alembic`` command instead (``script_location = flask_smtp_senders:storage/migrations`` and a
``sqlalchemy.url``), it opens a connection of its own, or writes SQL with ``--sql``.

The history lives in a version table of its own (``smtp_senders_alembic_version``), so a
host's ``alembic_version`` is never read or written, and autogenerate only ever looks at
our own table.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import engine_from_config, pool

from flask_smtp_senders.storage.models import Base
from flask_smtp_senders.storage.schema import VERSION_TABLE, include_ours

config = context.config

OPTIONS: dict[str, Any] = {
    "target_metadata": Base.metadata,
    "version_table": VERSION_TABLE,
    "include_name": include_ours,
    "render_as_batch": True,  # SQLite alters a table by copying it
}


def run(connection: Any) -> None:
    context.configure(connection=connection,
                      on_version_apply=config.attributes.get("on_version_apply", ()),
                      **OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True,
                      **OPTIONS)
    with context.begin_transaction():
        context.run_migrations()
elif config.attributes.get("connection") is not None:
    run(config.attributes["connection"])
else:
    engine = engine_from_config(config.get_section(config.config_ini_section, {}),
                                prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as connection:
        run(connection)
