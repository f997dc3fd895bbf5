"""Destination binding, tested-settings state and the last connection check (issue 7).

Revision ID: smtp_senders_0002
Revises: smtp_senders_0001
Create Date: 2026-11-26

Six nullable columns. A table that already has some of them (added by hand, as the docs
of that release asked) gets only the missing ones, so it can be recorded as
``smtp_senders_0001`` and upgraded like any other.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "smtp_senders_0002"
down_revision = "smtp_senders_0001"
branch_labels = None
depends_on = None

COLUMNS = (
    ("password_binding", sa.String(128)),
    ("settings_fingerprint", sa.String(80)),
    ("tested_fingerprint", sa.String(80)),
    ("last_check_at", sa.DateTime(timezone=True)),
    ("last_check_ok", sa.Boolean()),
    ("last_check_stage", sa.String(32)),
)


def _present() -> set[str]:
    if context.is_offline_mode():  # --sql: no database to look at
        return set()
    return {column["name"] for column in sa.inspect(op.get_bind()).get_columns("smtp_senders")}


def upgrade() -> None:
    present = _present()
    missing = [(name, type_) for name, type_ in COLUMNS if name not in present]
    if not missing:
        return
    with op.batch_alter_table("smtp_senders") as batch:
        for name, type_ in missing:
            batch.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("smtp_senders") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
