"""``flask smtp-senders generate-key`` and ``rotate-keys``: the encryption keys.

``generate-key`` prints a new Fernet key; ``rotate-keys`` re-encrypts every stored password
under the first key of ``SMTP_SENDERS_ENCRYPTION_KEYS`` in one audited transaction. Exit
codes: 0 done, 1 done but some passwords could not be read (they must be re-entered),
2 nothing was changed (the audit hook or the database failed), 3 an unexpected error
(a host hook raised, say; logged with its traceback).
"""

from __future__ import annotations

import logging
import sys

import click
from cryptography.fernet import Fernet

from ..crypto import KEYS_SETTING
from ..errors import AuditFailed, ConcurrentUpdate, StorageError
from ..state import get_service
from .group import (
    EXIT_UNEXPECTED,
    EXIT_UNREADABLE,
    cli,
    count_senders,
    nothing_changed,
    storage_failed,
)

log = logging.getLogger(__name__)


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
    click.echo(f"Re-encrypted {count_senders(rotated)} under the first key.")
    if unreadable:
        their = "its password" if unreadable == 1 else "their passwords"
        click.echo(
            f"Warning: {count_senders(unreadable)} could not be read with any key in "
            f"{KEYS_SETTING} and {'was' if unreadable == 1 else 'were'} left as "
            f"{'it was' if unreadable == 1 else 'they were'}: re-enter {their} on the "
            "Senders page (or put the missing key back and run rotate-keys again).",
            err=True,
        )
        raise click.exceptions.Exit(EXIT_UNREADABLE)
