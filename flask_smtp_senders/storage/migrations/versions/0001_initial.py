"""The smtp_senders table, as every version before migrations created it.

Revision ID: smtp_senders_0001
Revises:
Create Date: 2026-11-26

The columns of ``models.SenderRow`` up to the pipelining release (d72a211), which
``SMTP_SENDERS_CREATE_TABLES`` made with ``create_all``. The values are written out, not
imported, so the revision stays what it was when the models change.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# Ids start with "smtp_senders_" (a host may merge these revisions into its own history)
# and stay within the version table's 32 characters.
revision = "smtp_senders_0001"
down_revision = None
branch_labels = ("smtp_senders",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "smtp_senders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(254), nullable=False),
        sa.Column("password_token", sa.Text(), nullable=False),
        sa.Column("server_name", sa.String(253), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("from_name", sa.String(200), nullable=False),
        sa.Column("from_address", sa.String(254), nullable=False),
        sa.Column("reply_to_name", sa.String(200), nullable=False),
        sa.Column("reply_to_address", sa.String(254), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("last_test_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_test_ok", sa.Boolean(), nullable=True),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("smtp_senders")
