"""``flask smtp-senders check``: the connection check from the command line.

Runs the connection check (the dry run, nothing delivered) on every sender or one,
records each result on its sender and audits it. Exit codes: 0 every check passed,
1 some check failed, 2 nothing was checked (no such sender, a bad --to address, the
database failed), 3 an unexpected error. See docs/cli.md.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click

from ..errors import InvalidSenderData, SenderNotFound, StorageError
from ..events import SecretExpiring
from ..services.public import SecretExpiry, secret_expiry
from ..state import get_service
from ..validation import validate_recipient
from .group import (
    EXIT_CHECK_FAILED,
    EXIT_NOTHING_CHECKED,
    EXIT_UNEXPECTED,
    cli,
    count_senders,
    storage_failed,
)

if TYPE_CHECKING:
    from ..services.probe import ProbeResult
    from ..services.senders import SenderService
    from ..storage.base import Sender

log = logging.getLogger(__name__)


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

    expiring = _expiring_secrets(service, [sender for sender, _ in results])
    if as_json:
        click.echo(json.dumps([_check_as_dict(sender, result, expiring.get(sender.id))
                               for sender, result in results], indent=2))
    else:
        for sender, result in results:
            click.echo(_check_line(sender, result))
            if not result.ok and result.diagnosis.advice:
                click.echo(f"  Suggested fix: {result.diagnosis.advice}")
    for sender_id, expiry in expiring.items():
        click.echo(f"Warning: sender #{sender_id}: {expiry.text}", err=True)
    failed = sum(1 for _, result in results if not result.ok)
    if not results:
        click.echo("No sender to check.", err=True)
    elif failed:
        click.echo(f"{failed} of {count_senders(len(results))} failed the connection check.",
                   err=True)
        raise click.exceptions.Exit(EXIT_CHECK_FAILED)


def _check_line(sender: Sender, result: ProbeResult) -> str:
    where = f"#{sender.id} {sender.settings.server_name}:{sender.settings.port}"
    outcome = "ok" if result.ok else f"failed at {result.stage or 'unknown'}"
    return f"{where} <{sender.settings.from_address}>: {outcome}: {result.message}"


def _expiring_secrets(service: SenderService, senders: list[Sender]
                      ) -> dict[int, SecretExpiry]:
    """The senders whose secret expires within SECRET_WARNING_DAYS (or did), each
    marked in the audit trail."""
    expiring = {sender.id: expiry for sender in senders
                if (expiry := secret_expiry(sender.settings)) is not None}
    actor = service.hooks.smtp_senders_actor()
    for sender_id, expiry in expiring.items():
        service.audit_send(SecretExpiring(actor=actor, sender_id=sender_id,
                                          expires_on=expiry.on, days_left=expiry.days_left))
    return expiring


def _check_as_dict(sender: Sender, result: ProbeResult,
                   expiry: SecretExpiry | None) -> dict[str, Any]:
    return {"id": sender.id, "server_name": sender.settings.server_name,
            "port": sender.settings.port, "from_address": sender.settings.from_address,
            "ok": result.ok, "stage": result.stage, "message": result.message,
            "diagnosis": result.diagnosis.as_dict(),
            "secret_expiry": None if expiry is None else {
                "expires_on": expiry.on, "days_left": expiry.days_left,
                "message": expiry.text}}


def _nothing_checked(reason: str) -> NoReturn:
    click.echo(f"Error: nothing was checked: {reason}", err=True)
    raise click.exceptions.Exit(EXIT_NOTHING_CHECKED)
