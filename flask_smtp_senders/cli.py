"""``flask smtp-senders ...``: key management and health checks from the command line.

``generate-key`` prints a new Fernet key; ``rotate-keys`` re-encrypts every stored password
under the first key of ``SMTP_SENDERS_ENCRYPTION_KEYS`` in one audited transaction. Exit
codes: 0 done, 1 done but some passwords could not be read (they must be re-entered),
2 nothing was changed (the audit hook or the database failed), 3 an unexpected error
(a host hook raised, say; logged with its traceback).

``check`` runs the connection check (the dry run, nothing delivered) on every sender or
one, records each result on its sender and audits it. Exit codes: 0 every check passed,
1 some check failed, 2 nothing was checked (no such sender, a bad --to address, the
database failed), 3 an unexpected error. See docs/cli.md.

``list`` and ``show ID`` print senders (``--json`` for scripts), never a password, its
token or anything derived from it; exit 2 when there is no such sender or the database
failed.

``upgrade`` (alias ``create-tables``) runs the shipped migrations (:mod:`.schema`): exit
0 done or already up to date, 1 not done (the database cannot be reached, is at a newer
revision, or failed; one line on stderr says which), 3 an unexpected error.
"""

from __future__ import annotations

import inspect
import json
import logging
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click
from cryptography.fernet import Fernet
from sqlalchemy.exc import SQLAlchemyError

from .cli_group import (
    EXIT_CHECK_FAILED,
    EXIT_NOTHING_CHECKED,
    EXIT_UNEXPECTED,
    EXIT_UNREADABLE,
    EXIT_UPGRADE_FAILED,
    cli,
    describe,
    nothing_changed,
    storage_failed,
)
from .crypto import KEYS_SETTING
from .errors import AuditFailed, ConcurrentUpdate, InvalidSenderData, SenderNotFound, StorageError
from .public import sender_as_dict
from .state import get_service
from .validation import validate_recipient

if TYPE_CHECKING:
    from .service import ProbeResult
    from .store import Sender

log = logging.getLogger(__name__)

def _senders(count: int) -> str:
    return f"{count} sender" if count == 1 else f"{count} senders"


@cli.command("generate-key", with_appcontext=False)
def generate_key() -> None:
    """Print a new encryption key (the key alone on stdout, so it can be piped).

    It needs no app, so ``python -m flask_smtp_senders.cli`` can make the very first key
    (the app itself refuses to start without one).
    """
    click.echo(Fernet.generate_key().decode("ascii"))
    click.echo(
        f"Put this key FIRST in {KEYS_SETTING} and keep the old keys after it until "
        "`flask smtp-senders rotate-keys` has run; only then drop the old keys. "
        "Keep keys out of the database and the repository.",
        err=True,
    )


@cli.command("rotate-keys")
def rotate_keys() -> None:
    """Re-encrypt every stored SMTP password under the first configured key.

    All or nothing (one transaction, audited before it commits) and safe to run again.
    """
    service = get_service()
    try:
        total = len(service.list_senders())  # the bar's length; the rotation reads again
        with click.progressbar(length=total, label="Re-encrypting passwords",
                               file=sys.stderr) as bar:
            shown = 0

            def advance(done: int) -> None:
                nonlocal shown
                bar.update(done - shown)
                shown = done

            rotated, unreadable = service.rotate_keys(progress=advance)
    except AuditFailed:
        nothing_changed("the audit hook failed (see the log), so the rotation was "
                         "rolled back.")
    except StorageError as exc:
        nothing_changed(storage_failed(
            exc, "the sender database failed (see the log), so the rotation was rolled "
                 "back; try again."))
    except ConcurrentUpdate:
        nothing_changed("the senders changed during the rotation, so it was rolled "
                         "back; run it again.")
    except Exception as exc:  # a distinct code: 1 would read as "done, some unreadable"
        log.exception("rotate-keys failed")
        click.echo(f"Error: rotate-keys failed unexpectedly ({type(exc).__name__}); see the "
                   "log. The built-in store commits nothing on an error.", err=True)
        raise click.exceptions.Exit(EXIT_UNEXPECTED) from None
    click.echo(f"Re-encrypted {_senders(rotated)} under the first key.")
    if unreadable:
        their = "its password" if unreadable == 1 else "their passwords"
        click.echo(
            f"Warning: {_senders(unreadable)} could not be read with any key in "
            f"{KEYS_SETTING} and {'was' if unreadable == 1 else 'were'} left as "
            f"{'it was' if unreadable == 1 else 'they were'}: re-enter {their} on the "
            "Senders page (or put the missing key back and run rotate-keys again).",
            err=True,
        )
        raise click.exceptions.Exit(EXIT_UNREADABLE)


@cli.command("check")
@click.option("--sender", "sender_id", type=int, default=None, metavar="ID",
              help="Check this sender only (default: every sender).")
@click.option("--to", "recipient", default=None, metavar="ADDRESS",
              help="The address for RCPT TO (default: each sender's From Address).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON list (with each diagnosis) instead of lines.")
def check(sender_id: int | None, recipient: str | None, as_json: bool) -> None:
    """Run the connection check (a dry run: nothing is sent) on every sender.

    Connects, sets up TLS, signs in and asks the server whether it would take MAIL FROM
    and RCPT TO, then says RSET and QUIT. Each result is recorded on its sender (shown on
    the Senders page) and audited. Exits 1 when any check failed.
    """
    service = get_service()
    try:
        if recipient is not None and recipient.strip(" \t"):
            recipient = validate_recipient(recipient, service.address_rules)
        else:
            recipient = None
        senders = ([service.get_sender(sender_id)] if sender_id is not None
                   else service.list_senders())
    except InvalidSenderData as invalid:
        _nothing_checked(f"--to: {invalid.errors.get('recipient', 'not a valid address')}")
    except SenderNotFound:
        _nothing_checked(f"there is no sender with id {sender_id}.")
    except StorageError as exc:
        _nothing_checked(storage_failed(exc))

    results: list[tuple[Sender, ProbeResult]] = []
    try:
        if len(senders) > 1:
            with click.progressbar(senders, label="Checking senders",
                                   file=sys.stderr) as bar:
                results = [(sender, service.check_connection(sender.id, recipient))
                           for sender in bar]
        else:
            results = [(sender, service.check_connection(sender.id, recipient))
                       for sender in senders]
    except SenderNotFound:  # deleted while the others were checked
        _nothing_checked("a sender was deleted during the check; run it again.")
    except StorageError as exc:
        _nothing_checked(storage_failed(exc))
    except Exception as exc:
        log.exception("check failed")
        click.echo(f"Error: check failed unexpectedly ({type(exc).__name__}); see the log.",
                   err=True)
        raise click.exceptions.Exit(EXIT_UNEXPECTED) from None

    if as_json:
        click.echo(json.dumps([_check_as_dict(sender, result)
                               for sender, result in results], indent=2))
    else:
        for sender, result in results:
            click.echo(_check_line(sender, result))
    failed = sum(1 for _, result in results if not result.ok)
    if not results:
        click.echo("No sender to check.", err=True)
    elif failed:
        click.echo(f"{failed} of {_senders(len(results))} failed the connection check.",
                   err=True)
        raise click.exceptions.Exit(EXIT_CHECK_FAILED)


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
    return f"#{sender.id} {describe(sender)}: {sender.test_state_label}"


def _nothing_read(reason: str) -> NoReturn:
    click.echo(f"Error: {reason}", err=True)
    raise click.exceptions.Exit(EXIT_NOTHING_CHECKED)


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
    from .schema import SchemaError

    store = get_service().store
    if not hasattr(store, "create_tables"):
        click.echo(f"The sender store ({type(store).__name__}) keeps its own schema: "
                   "nothing to upgrade.", err=True)
        return
    try:
        if "progress" in inspect.signature(store.create_tables).parameters:
            done = store.create_tables(progress=lambda line: click.echo(line, err=True))
        else:  # a host's store with a create_tables of its own
            done = store.create_tables()
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


def _check_line(sender: Sender, result: ProbeResult) -> str:
    where = f"#{sender.id} {sender.settings.server_name}:{sender.settings.port}"
    outcome = "ok" if result.ok else f"failed at {result.stage or 'unknown'}"
    return f"{where} <{sender.settings.from_address}>: {outcome}: {result.message}"


def _check_as_dict(sender: Sender, result: ProbeResult) -> dict[str, Any]:
    return {"id": sender.id, "server_name": sender.settings.server_name,
            "port": sender.settings.port, "from_address": sender.settings.from_address,
            "ok": result.ok, "stage": result.stage, "message": result.message,
            "diagnosis": result.diagnosis.as_dict()}


def _nothing_checked(reason: str) -> NoReturn:
    click.echo(f"Error: nothing was checked: {reason}", err=True)
    raise click.exceptions.Exit(EXIT_NOTHING_CHECKED)


from . import cli_changes  # noqa: E402, F401 - add, edit, delete, set-default, test

if __name__ == "__main__":
    generate_key(prog_name="python -m flask_smtp_senders.cli")
