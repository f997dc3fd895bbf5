"""The example portal scripted end to end, on SQLite and PostgreSQL: the ``flask
smtp-senders`` commands run as real processes against the portal's app, the JSON API
answers with the same senders, and the test email lands in the portal's mail catcher.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from flask import Flask

from example_app import create_app, db
from tests.support.databases import Database

ROOT = Path(__file__).resolve().parent.parent.parent
API = "/settings/senders/api"
TOKEN = "automation-token"
SMTP_PASSWORD = "pw"  # the catcher's (catcher_on_2525)
RECIPIENT = "admin@example.com"


@pytest.fixture
def portal_config(database: Database, tmp_path: Path, catcher_on_2525) -> dict[str, Any]:
    return {"INSTANCE_PATH": str(tmp_path / "instance"), "SECRET_KEY": "automation-key",
            "SQLALCHEMY_DATABASE_URI": database.url,
            "SQLALCHEMY_ENGINE_OPTIONS": database.engine_options,
            "SMTP_SENDERS_ENCRYPTION_KEYS": [Fernet.generate_key().decode()],
            "SMTP_SENDERS_CA_FILE": catcher_on_2525.ca_file,
            "SMTP_SENDERS_EHLO_NAME": "portal.test", "EXAMPLE_API_TOKEN": TOKEN}


@pytest.fixture
def portal(portal_config) -> Flask:
    app = create_app(portal_config)
    yield app
    with app.app_context():
        db.engine.dispose()


def flask_cli(config: dict[str, Any], *args: str, **env: str) -> subprocess.CompletedProcess:
    """``flask smtp-senders ARGS`` in a process of its own, on the portal's app."""
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith(("FLASK_", "SMTP_SENDERS_", "EXAMPLE_"))}
    environment.update(PYTHONPATH=str(ROOT), **env)
    return subprocess.run(  # noqa: S603 - our own arguments, no shell
        [sys.executable, "-m", "flask", "--app", f"example_app:create_app({config!r})",
         "smtp-senders", *args],
        cwd=ROOT, env=environment, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=60, check=False)


def test_a_sender_added_on_the_command_line_is_tested_changed_by_api_and_deleted(
        portal, portal_config, catcher_on_2525) -> None:
    catcher = catcher_on_2525
    added = flask_cli(portal_config, "add", "--username", "demo", "--server-name",
                      catcher.server_name, "--port", "2525", "--from-name", "Portal",
                      "--from-address", "portal@example.com", "--password-env", "SMTP_PW",
                      "--json", SMTP_PW=SMTP_PASSWORD)
    assert added.returncode == 0, added.stderr
    sender = json.loads(added.stdout)
    assert (sender["mode"], sender["default"], sender["test_state"]) == (
        "STARTTLS", True, "never")

    tested = flask_cli(portal_config, "test", str(sender["id"]), "--to", RECIPIENT)
    assert tested.returncode == 0, tested.stderr
    assert tested.stdout.strip() == f"A test message was successfully sent to {RECIPIENT}."
    (caught,) = catcher.messages.newest_first()
    assert (caught.rcpt_tos, caught.username) == ((RECIPIENT,), "demo")

    client = portal.test_client()
    signed = {"Authorization": f"Bearer {TOKEN}"}
    url = f"{API}/senders/{sender['id']}"
    read = client.get(url, headers=signed)
    assert read.json == sender | {"test_state": "tested", "last_test_ok": True,
                                  "last_test_at": read.json["last_test_at"],
                                  "password_usable": True}
    rotated = client.patch(url, json={"password": "rotated-by-vault"},
                           headers={**signed, "If-Match": read.headers["ETag"]})
    assert rotated.status_code == 200 and rotated.json["test_state"] == "changed"

    shown = flask_cli(portal_config, "show", str(sender["id"]), "--json")
    assert json.loads(shown.stdout) | {"password_usable": True} == rotated.json
    assert "rotated-by-vault" not in shown.stdout + shown.stderr
    failed = flask_cli(portal_config, "test", str(sender["id"]), "--to", RECIPIENT)
    assert failed.returncode == 1  # the catcher knows only the old password
    assert len(catcher.messages.newest_first()) == 1

    deleted = flask_cli(portal_config, "delete", str(sender["id"]), "--yes", "--json")
    assert (deleted.returncode, json.loads(deleted.stdout)) == (
        0, {"id": sender["id"], "deleted": True})
    assert client.get(url, headers=signed).status_code == 404
    assert client.get(f"{API}/senders", headers=signed).json == {"senders": []}
