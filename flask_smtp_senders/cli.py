"""``flask smtp-senders ...``: key management from the command line."""

from __future__ import annotations

from flask.cli import AppGroup

cli = AppGroup("smtp-senders", help="Manage flask-smtp-senders (keys, senders).")
