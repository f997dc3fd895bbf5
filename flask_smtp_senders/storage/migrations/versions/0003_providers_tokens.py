"""OAuth2 providers (issue 16): how each sender signs in, and the access-token cache.

Revision ID: smtp_senders_0003
Revises: smtp_senders_0002
Create Date: 2026-12-03

Six columns with defaults (every existing sender is a Custom Server: "custom" and empty
OAuth2 fields), and ``smtp_sender_tokens``: access tokens, encrypted, one per sender
version, shared by every worker of the app.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "smtp_senders_0003"
down_revision = "smtp_senders_0002"
branch_labels = None
depends_on = None

COLUMNS = (
    ("provider", sa.String(32), "custom"),
    ("tenant_id", sa.String(128), ""),
    ("client_id", sa.String(255), ""),
    ("token_url", sa.String(2048), ""),
    ("scope", sa.String(1024), ""),
    ("secret_expires", sa.String(10), ""),
)


def upgrade() -> None:
    with op.batch_alter_table("smtp_senders") as batch:
        for name, type_, default in COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=False, server_default=default))
    op.create_table(
        "smtp_sender_tokens",
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("sender_id", sa.Integer(), nullable=False, index=True),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("smtp_sender_tokens")
    with op.batch_alter_table("smtp_senders") as batch:
        for name, _type, _default in reversed(COLUMNS):
            batch.drop_column(name)
