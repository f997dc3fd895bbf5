"""Running ``flask smtp-senders ...`` in a test, through Flask's CLI runner."""

from __future__ import annotations

from click.testing import Result
from flask import Flask


def run_cli(app: Flask, *args: str, input: str | None = None,
            env: dict[str, str | None] | None = None) -> Result:
    """``flask smtp-senders ARGS``; anything but a clean exit fails with its traceback."""
    result = app.test_cli_runner().invoke(args=["smtp-senders", *args], input=input, env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result
