"""``flask smtp-senders list`` and ``show ID``: senders for people and scripts.

Prints senders (``--json`` for scripts), never a password, its token or anything derived
from it; exits 2 when there is no such sender or the database failed.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, NoReturn

import click

from ..errors import SenderNotFound, StorageError
from ..services.public import secret_expiry, sender_as_dict
from ..state import get_service
from .group import EXIT_NOTHING_CHECKED, cli, describe, storage_failed

if TYPE_CHECKING:
    from ..storage.base import Sender


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON list instead of lines.")
def list_senders(as_json: bool) -> None:
    """List the senders: server, mode, From Address, default, test and check state.

    Never prints a password, its token or anything derived from it. Exits 2 when the
    sender database failed.
    """
    try:
        senders = get_service().list_senders()
    except StorageError as exc:
        _nothing_read(storage_failed(exc))
    if as_json:
        click.echo(json.dumps([sender_as_dict(sender) for sender in senders], indent=2))
        return
    for sender in senders:
        click.echo(_sender_line(sender))
    if not senders:
        click.echo("No sender yet.", err=True)


@cli.command("show")
@click.argument("sender_id", type=int, metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of lines.")
def show_sender(sender_id: int, as_json: bool) -> None:
    """Show one sender's settings and state (never its password). Exits 2 when there is
    no such sender or the database failed."""
    try:
        sender = get_service().get_sender(sender_id)
    except SenderNotFound:
        _nothing_read(f"there is no sender with id {sender_id}.")
    except StorageError as exc:
        _nothing_read(storage_failed(exc))
    fields = sender_as_dict(sender)
    if as_json:
        click.echo(json.dumps(fields, indent=2))
        return
    width = max(len(name) for name in fields)
    for name, value in fields.items():
        click.echo(f"{name:<{width}}  {'' if value is None else value}")


def _sender_line(sender: Sender) -> str:
    """One line; an OAuth2 sender names its provider, and a secret that expires within
    30 days (or did) says so."""
    provider = sender.settings.provider_type
    shown = "" if not provider.uses_oauth else f" [{provider.label}]"
    expiry = secret_expiry(sender.settings)
    warning = f" ({expiry.text})" if expiry is not None else ""
    return f"#{sender.id} {describe(sender)}{shown}: {sender.test_state_label}{warning}"


def _nothing_read(reason: str) -> NoReturn:
    click.echo(f"Error: {reason}", err=True)
    raise click.exceptions.Exit(EXIT_NOTHING_CHECKED)
