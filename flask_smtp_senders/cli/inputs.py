"""What ``flask smtp-senders add`` and ``edit`` take in: the settings as options, checked
by the field rules, and the password from its one source.

Why apart from the commands (:mod:`flask_smtp_senders.cli.changes`): how a password is
read is a security rule of its own. It is never taken as an argument (it would land in
the shell history and in ``ps`` output for every local user to read): it comes from
``--password-env NAME`` (an environment variable), ``--password-stdin`` (the first line
of stdin) or, at a terminal, a hidden prompt asked twice. Without any of them and without
a terminal the command fails at once (exit 2) rather than hang.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click

from ..domain import PROVIDER_SERVERS, Provider
from ..errors import InvalidSenderData
from ..services.providers import MAX_KEY_FILE, checked_secret
from ..state import get_service
from ..validation import DEFAULT_PORT, SenderSettings, validate_settings
from .group import EXIT_NOTHING_CHANGED, nothing_changed

# -- options shared by add and edit ---------------------------------------------------


def setting_options(*, adding: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The sender settings as options; for ``edit`` every one defaults to "keep"."""
    keep = "" if adding else " (default: keep the stored one)"
    providers = click.Choice([provider.value for provider in Provider])
    port_default = f" (default: {DEFAULT_PORT}, or the provider's)"
    options = [
        click.option("--provider", default=None, type=providers,
                     help="How it signs in: custom (a password, the default), microsoft365 "
                          "or oauth2 (a client secret), google (a service account key)"
                          f"{keep}."),
        click.option("--tenant-id", default=None, metavar="TENANT",
                     help=f"Microsoft 365: the Directory (tenant) ID{keep}."),
        click.option("--client-id", default=None, metavar="ID",
                     help=f"Microsoft 365 and oauth2: the Application (client) ID{keep}."),
        click.option("--token-url", default=None, metavar="URL",
                     help=f"oauth2: the token endpoint's https:// URL{keep}."),
        click.option("--scope", default=None, metavar="SCOPES",
                     help=f"oauth2: the scopes to ask for, space-separated{keep}."),
        click.option("--secret-expires", default=None, metavar="YYYY-MM-DD",
                     help=f"When the client secret or key stops working{keep}."),
        click.option("--username", default=None, metavar="TEXT",
                     help=f"The SMTP Username{' (required)' if adding else keep}."),
        click.option("--server-name", default=None, metavar="HOST",
                     help=f"The SMTP server's host name or IP address"
                          f"{' (required)' if adding else keep}."),
        click.option("--port", default=None, metavar="PORT",
                     help=f"465 for SMTPS (TLS from the start); 25, 587 or 2525 for STARTTLS"
                          f"{port_default if adding else keep}."),
        click.option("--from-name", default=None, metavar="TEXT",
                     help=f"The From display name{keep}."),
        click.option("--from-address", default=None, metavar="ADDRESS",
                     help=f"The From Address{' (required)' if adding else keep}."),
        click.option("--reply-to-name", default=None, metavar="TEXT",
                     help=f"The Reply-To display name{keep}."),
        click.option("--reply-to-address", default=None, metavar="ADDRESS",
                     help=f"The Reply-To Address{keep}."),
        click.option("--password-env", default=None, metavar="NAME",
                     help="Read the password (client secret, key) from this environment "
                          "variable."),
        click.option("--password-stdin", is_flag=True,
                     help="Read the password or client secret from the first line of "
                          "stdin (a google key: all of stdin)."),
        click.option("--json", "as_json", is_flag=True,
                     help="Print the sender (or the errors) as JSON."),
    ]

    def apply(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            command = option(command)
        return command

    return apply


# -- the password and the settings ----------------------------------------------------


def interactive() -> bool:
    """Whether someone can answer a prompt: stdin is a terminal."""
    return sys.stdin is not None and sys.stdin.isatty()


def check_password_source(password_env: str | None, password_stdin: bool) -> None:
    """Fail before anything is read when the password could not be had (never hang)."""
    if password_env is not None and password_stdin:
        nothing_changed("give the password one way: --password-env or --password-stdin.")
    if password_stdin and interactive():
        nothing_changed("--password-stdin reads a pipe, and stdin is a terminal (the "
                         "password would be shown): leave it out to be prompted.")
    if password_env is None and not password_stdin and not interactive():
        nothing_changed("no password: stdin is not a terminal, so pass --password-stdin "
                         "(and pipe it) or --password-env NAME.")


def read_password(password_env: str | None, password_stdin: bool, as_json: bool,
                  prompt: str, provider: Provider = Provider.CUSTOM) -> str:
    """The password (a client secret, a service account key) from its one source, checked
    by the same rule as the form's. A key file is JSON over many lines: from stdin, all
    of it is read; at a terminal it has to come from --password-env or stdin."""
    whole = provider is Provider.GOOGLE
    if whole and password_env is None and not password_stdin:
        nothing_changed("a service account key is read from --password-stdin (pipe the "
                        "key file) or --password-env NAME, not typed at a prompt.")
    if password_env is not None:
        password = os.environ.get(password_env)
        if password is None:
            nothing_changed(f"the environment variable {password_env} (--password-env) "
                             "is not set.")
    elif password_stdin and whole:
        password = sys.stdin.read(MAX_KEY_FILE + 1) if sys.stdin is not None else ""
    elif password_stdin:
        password = sys.stdin.readline() if sys.stdin is not None else ""
        password = password[:-1] if password.endswith("\n") else password
        password = password[:-1] if password.endswith("\r") else password
    else:
        try:
            password = click.prompt(prompt, hide_input=True, confirmation_prompt=True,
                                    err=True)
        except click.Abort:
            nothing_changed("no password was entered.")
    try:
        return checked_secret(provider, password)
    except InvalidSenderData as invalid:
        refuse_invalid(invalid.errors, as_json)


def with_presets(values: dict[str, Any]) -> dict[str, Any]:
    """A new sender's values, with its provider's Server Name and Port where none was
    given (Microsoft 365: smtp.office365.com:587; Google Workspace: smtp.gmail.com:465)."""
    try:
        preset = PROVIDER_SERVERS.get(Provider(values.get("provider") or "custom"))
    except ValueError:
        return values  # the field rules say what is wrong with it
    if preset is not None:
        if not values.get("server_name"):
            values["server_name"] = preset[0]
        if values.get("port") in (None, ""):
            values["port"] = preset[1]
    return values


def validated(as_json: bool, values: dict[str, Any]) -> SenderSettings:
    """The settings by the field rules, checked before a password is asked for."""
    try:
        return validate_settings(**values, rules=get_service().address_rules)
    except InvalidSenderData as invalid:
        refuse_invalid(invalid.errors, as_json)


def refuse_invalid(errors: dict[str, str], as_json: bool) -> NoReturn:
    """Invalid input: every field with its message on stderr (and as JSON on stdout)."""
    if as_json:
        click.echo(json.dumps({"errors": errors}, indent=2))
    fields = "1 field is" if len(errors) == 1 else f"{len(errors)} fields are"
    click.echo(f"Error: nothing was changed: {fields} not valid:", err=True)
    for name, problem in errors.items():
        click.echo(f"  {name}: {problem}", err=True)
    raise click.exceptions.Exit(EXIT_NOTHING_CHANGED)
