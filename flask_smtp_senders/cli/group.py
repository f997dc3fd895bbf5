"""The ``flask smtp-senders`` command group, its exit codes and the one-line description
of a sender that every command prints: what the command modules (keys, list,
check, upgrade) and :mod:`flask_smtp_senders.cli.changes` (add, edit, delete...) share,
so that neither imports the other's private names."""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

import click
from flask.cli import AppGroup

from ..errors import StorageError, TableMissing

if TYPE_CHECKING:
    from ..storage.base import Sender

cli = AppGroup("smtp-senders", help="Manage flask-smtp-senders (keys, senders).")

EXIT_UNREADABLE = 1
EXIT_NOTHING_CHANGED = 2
EXIT_UNEXPECTED = 3
#: ``check``: some sender failed its check / nothing could be checked (same codes).
EXIT_CHECK_FAILED = 1
EXIT_NOTHING_CHECKED = 2
#: ``upgrade``: the schema could not be brought up to date (database unreachable, ...).
EXIT_UPGRADE_FAILED = 1


#: What a command says when the sender database failed.
DATABASE_FAILED = "the sender database failed (see the log); try again."


def storage_failed(error: StorageError, reason: str = DATABASE_FAILED) -> str:
    """What a command says for a StorageError: the table-missing message (which names
    ``flask smtp-senders upgrade``, see SMTP_SENDERS_MSG_TABLE_MISSING) when the sender
    table does not exist yet, ``reason`` otherwise."""
    return str(error) if isinstance(error, TableMissing) else reason


def describe(sender: Sender, *, default: bool = True) -> str:
    """Server, mode and From Address, for a one-line message (never a secret)."""
    settings = sender.settings
    marker = " (default)" if default and sender.is_default else ""
    return (f"{settings.server_name}:{settings.port} {sender.security.value} "
            f"<{settings.from_address}>{marker}")


def nothing_changed(reason: str) -> NoReturn:
    click.echo(f"Error: nothing was changed: {reason}", err=True)
    raise click.exceptions.Exit(EXIT_NOTHING_CHANGED)


def count_senders(count: int) -> str:
    """"1 sender", "3 senders": for the lines the commands print."""
    return f"{count} sender" if count == 1 else f"{count} senders"
