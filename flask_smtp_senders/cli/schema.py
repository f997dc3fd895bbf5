"""``flask smtp-senders upgrade`` (alias ``create-tables``): the sender table's schema.

Runs the shipped migrations (:mod:`flask_smtp_senders.storage.schema`): exit 0 done or
already up to date, 1 not done (the database cannot be reached, is at a newer revision,
or failed; one line on stderr says which), 3 an unexpected error.
"""

from __future__ import annotations

import logging

import click
from sqlalchemy.exc import SQLAlchemyError

from ..state import get_service
from ..storage.base import SchemaOwner
from ..storage.schema import SchemaError
from .group import EXIT_UNEXPECTED, EXIT_UPGRADE_FAILED, cli

log = logging.getLogger(__name__)


@cli.command("upgrade")
def upgrade() -> None:
    """Create the sender table, or upgrade it to this version's schema.

    Runs the Alembic migrations shipped with flask-smtp-senders, recorded in a version
    table of their own (smtp_senders_alembic_version: a host's alembic_version is never
    touched). A table made by a version before migrations is first recorded as the
    revision its columns match. Safe to run again: at the newest revision it changes
    nothing. Exits 1 when it could not (the reason on stderr).
    """
    _upgrade()


@cli.command("create-tables")
def create_tables() -> None:
    """The same as upgrade: create the sender table, or bring it up to date."""
    _upgrade()


def _upgrade() -> None:
    store = get_service().store
    if not isinstance(store, SchemaOwner):  # a host's store whose schema lives elsewhere
        click.echo(f"The sender store ({type(store).__name__}) keeps its own schema: "
                   "nothing to upgrade.", err=True)
        return
    try:
        done = store.create_tables(progress=lambda line: click.echo(line, err=True))
    except SchemaError as exc:
        click.echo(f"Error: {exc}", err=True)
        raise click.exceptions.Exit(EXIT_UPGRADE_FAILED) from None
    except SQLAlchemyError as exc:
        log.exception("upgrade failed")
        click.echo(f"Error: the upgrade failed ({type(exc).__name__}); see the log. On "
                   "PostgreSQL nothing was changed.", err=True)
        raise click.exceptions.Exit(EXIT_UPGRADE_FAILED) from None
    except Exception as exc:
        log.exception("upgrade failed")
        click.echo(f"Error: upgrade failed unexpectedly ({type(exc).__name__}); see the "
                   "log.", err=True)
        raise click.exceptions.Exit(EXIT_UNEXPECTED) from None
    if done is None:
        click.echo(f"Created or upgraded the sender table ({type(store).__name__}).")
    elif done.stamped == done.after:  # a table of the newest schema, made by create_all
        click.echo(f"The sender schema is up to date ({done.after}); recorded it as such.")
    elif done.changed:
        click.echo(f"Upgraded the sender schema from {done.stamped or done.before or 'nothing'}"
                   f" to {done.after}.")
    else:
        click.echo(f"The sender schema is up to date ({done.after}).")
