"""``flask smtp-senders add / edit / delete / set-default / test``: change senders from the
command line, through the same :class:`~.service.SenderService` calls as the Senders page
(validated, encrypted, audited inside the store's transaction).

The commands are registered on the ``cli`` group of :mod:`.cli`, which imports this module
at its end, so they are there whenever the group is.

A password is never taken as an argument: :mod:`flask_smtp_senders.cli.inputs` reads it
(and the settings given as options). No output ever holds the password, its token, its
binding or its fingerprint.

Exit codes of ``add``, ``edit``, ``delete`` and ``set-default``: 0 done; 2 nothing was
changed, with one line on stderr starting "Error: " (invalid settings, each bad field
listed below it as ``  field: message``; no such sender; the sender changed since it was
read; the audit hook failed; the database failed; no password source without a
terminal; a deletion not confirmed); 3 an unexpected error (logged with its traceback).

Exit codes of ``test``: 0 the test email was sent; 1 the send failed (the message says
where); 2 nothing was sent (a bad ``--to`` address, no such sender, the database failed);
3 an unexpected error.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict
from typing import NoReturn, TypeVar

import click

from ..domain import Provider
from ..errors import AuditFailed, ConcurrentUpdate, InvalidSenderData, SenderNotFound, StorageError
from ..services.public import sender_as_dict
from ..state import get_service
from . import inputs  # a module: inputs.interactive is looked up at each call
from .group import (
    EXIT_NOTHING_CHANGED,
    EXIT_UNEXPECTED,
    cli,
    describe,
    nothing_changed,
    storage_failed,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

#: ``test``: the server (or the stored password) stopped the test email.
EXIT_TEST_FAILED = 1
#: ``test``: nothing was sent (bad --to, no such sender, the database failed).
EXIT_NOTHING_SENT = EXIT_NOTHING_CHANGED


# -- the commands -------------------------------------------------------------------


@cli.command("add")
@inputs.setting_options(adding=True)
def add_sender(password_env: str | None, password_stdin: bool, as_json: bool,
               **given: str | None) -> None:
    """Add a sender. The password (a provider's client secret or service account key)
    comes from --password-env, --password-stdin or a hidden prompt, never from an
    argument (shell history and ps would show it). --provider microsoft365 or google
    presets the Server Name and Port of the provider.

    The first sender becomes the default. Exits 2 when nothing was saved (the reason, and
    each invalid field, on stderr).
    """
    inputs.check_password_source(password_env, password_stdin)
    values = {name: value or "" for name, value in given.items() if name != "port"}
    settings = inputs.validated(as_json, inputs.with_presets({**values, "port": given["port"]}))
    password = inputs.read_password(password_env, password_stdin, as_json,
                                    _secret_prompt(settings.provider_type),
                                    settings.provider_type)
    service = get_service()
    sender = _change("add", as_json, lambda: service.create_sender(settings, password))
    if as_json:
        click.echo(json.dumps(sender_as_dict(sender), indent=2))
        return
    click.echo(f"Added sender #{sender.id} {describe(sender)}.")
    click.echo(f"Send it a test email: flask smtp-senders test {sender.id} --to ADDRESS",
               err=True)


@cli.command("edit")
@click.argument("sender_id", type=int, metavar="ID")
@inputs.setting_options(adding=False)
@click.option("--version", "expected_version", type=int, default=None, metavar="N",
              help="Save only if the sender is still at this version (from show); "
                   "default: the version read just before saving.")
def edit_sender(sender_id: int, password_env: str | None, password_stdin: bool,
                as_json: bool, expected_version: int | None, **given: str | None) -> None:
    """Change a sender's settings; the ones not given are kept.

    The password is required again, in the same three ways as for add: every save binds
    it to the saved settings. Exits 2 when nothing was saved, also when the sender
    changed since it was read (or since --version).
    """
    inputs.check_password_source(password_env, password_stdin)
    service = get_service()
    current = _change("edit", as_json, lambda: service.get_sender(sender_id), sender_id)
    values: dict[str, object] = asdict(current.settings)
    values.update({name: value for name, value in given.items() if value is not None})
    settings = inputs.validated(as_json, values)
    password = inputs.read_password(
        password_env, password_stdin, as_json,
        f"{_secret_prompt(settings.provider_type)} (required again to save)",
        settings.provider_type)
    version = current.version if expected_version is None else expected_version
    saved = _change("edit", as_json, lambda: service.update_sender(
        sender_id, version, settings, password), sender_id)
    if as_json:
        click.echo(json.dumps(sender_as_dict(saved), indent=2))
        return
    changed = [name for name, value in asdict(saved.settings).items()
               if getattr(current.settings, name) != value]
    click.echo(f"Saved sender #{saved.id} (version {saved.version}): "
               + (f"changed {', '.join(changed)}." if changed else "no setting changed."))


def _secret_prompt(provider: Provider) -> str:
    return "SMTP password" if provider is Provider.CUSTOM else "Client secret"


@cli.command("delete")
@click.argument("sender_id", type=int, metavar="ID")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (for scripts).")
@click.option("--version", "expected_version", type=int, default=None, metavar="N",
              help="Delete only if the sender is still at this version (from show); "
                   "default: the version read just before.")
@click.option("--json", "as_json", is_flag=True, help='Print {"id": ID, "deleted": true}.')
def delete_sender(sender_id: int, yes: bool, expected_version: int | None,
                  as_json: bool) -> None:
    """Delete a sender, after a confirmation (or --yes): it cannot be undone.

    When it was the default, the oldest remaining sender becomes the default. Exits 2
    when nothing was deleted (also without a terminal to confirm and without --yes).
    """
    if not yes and not inputs.interactive():
        nothing_changed("stdin is not a terminal, so the deletion cannot be confirmed; "
                         "pass --yes.")
    service = get_service()
    sender = _change("delete", as_json, lambda: service.get_sender(sender_id), sender_id)
    if not yes:
        try:
            confirmed = click.confirm(f"Delete sender #{sender.id} {describe(sender)}?",
                                      err=True)
        except click.Abort:
            confirmed = False
        if not confirmed:
            nothing_changed("the deletion was not confirmed.")
    version = sender.version if expected_version is None else expected_version
    _change("delete", as_json, lambda: service.delete_sender(sender_id, version), sender_id)
    if as_json:
        click.echo(json.dumps({"id": sender_id, "deleted": True}))
        return
    click.echo(f"Deleted sender #{sender_id}.")


@cli.command("set-default")
@click.argument("sender_id", type=int, metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the sender as JSON.")
def set_default(sender_id: int, as_json: bool) -> None:
    """Make this sender the default: the one the app's messages use when none is named.

    Exits 2 when nothing was changed (no such sender, the audit hook or the database
    failed).
    """
    service = get_service()
    sender = _change("set-default", as_json,
                     lambda: service.set_default_sender(sender_id), sender_id)
    if as_json:
        click.echo(json.dumps(sender_as_dict(sender), indent=2))
        return
    click.echo(f"Sender #{sender.id} {describe(sender, default=False)} is now the default.")


@cli.command("test")
@click.argument("sender_id", type=int, metavar="ID")
@click.option("--to", "recipient", required=True, metavar="ADDRESS",
              help="The address the test email is sent to.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the result (with its diagnosis) as JSON.")
def send_test(sender_id: int, recipient: str, as_json: bool) -> None:
    """Send the test email through a sender's saved settings, as Send Test Email does.

    A passed test marks the sender Tested. The result is recorded and audited. Exits 1
    when the send failed, 2 when nothing was sent (bad --to, no such sender).
    """
    service = get_service()
    try:
        result = service.send_test_email(sender_id, recipient)
    except InvalidSenderData as invalid:
        if as_json:
            click.echo(json.dumps({"errors": invalid.errors}, indent=2))
        _nothing_sent(f"--to: {invalid.errors.get('recipient', 'not a valid address')}")
    except SenderNotFound:
        _nothing_sent(f"there is no sender with id {sender_id}.")
    except StorageError as exc:
        _nothing_sent(storage_failed(exc))
    except Exception as exc:
        _unexpected("test", exc, "")
    if as_json:
        click.echo(json.dumps({"id": sender_id, "ok": result.ok, "stage": result.stage,
                               "message": result.message,
                               "diagnosis": result.diagnosis.as_dict()}, indent=2))
    else:
        click.echo(result.message)
    if not result.ok:
        click.echo(f"The test email failed at {result.stage or 'an unknown stage'}.", err=True)
        if result.diagnosis.advice and not as_json:
            click.echo(result.diagnosis.advice, err=True)
        raise click.exceptions.Exit(EXIT_TEST_FAILED)


# -- helpers ------------------------------------------------------------------------


def _change(command: str, as_json: bool, action: Callable[[], T],
            sender_id: int | None = None) -> T:
    """Run one service call; each known failure becomes one "Error:" line and exit 2."""
    try:
        return action()
    except InvalidSenderData as invalid:
        inputs.refuse_invalid(invalid.errors, as_json)
    except SenderNotFound:
        nothing_changed(f"there is no sender with id {sender_id}.")
    except ConcurrentUpdate:
        nothing_changed(f"sender #{sender_id} changed since it was read; show it again "
                         f"(flask smtp-senders show {sender_id}) and retry.")
    except AuditFailed:
        nothing_changed("the audit hook failed (see the log), so the change was rolled "
                         "back.")
    except StorageError as exc:
        nothing_changed(storage_failed(exc))
    except Exception as exc:
        _unexpected(command, exc, " The built-in store commits nothing on an error.")


def _nothing_sent(reason: str) -> NoReturn:
    click.echo(f"Error: nothing was sent: {reason}", err=True)
    raise click.exceptions.Exit(EXIT_NOTHING_SENT)


def _unexpected(command: str, exc: Exception, note: str) -> NoReturn:
    log.exception("%s failed", command)
    click.echo(f"Error: {command} failed unexpectedly ({type(exc).__name__}); see the "
               f"log.{note}", err=True)
    raise click.exceptions.Exit(EXIT_UNEXPECTED) from None
