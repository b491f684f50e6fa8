"""Alerts delivery log: one row per transaction and channel, attempts, delivery time, error.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 03:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("attempts", sa.SmallInteger(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column(
                "delivered_at",
                sa.DateTime(timezone=True),
                nullable=True,
                comment="when it was sent, or given up (failed)",
            )
        )
        batch_op.add_column(
            sa.Column(
                "error",
                sa.String(length=256),
                nullable=True,
                comment="failed: the last attempt's error",
            )
        )
        batch_op.create_unique_constraint(
            batch_op.f("uq_alerts_transaction_id"), ["transaction_id", "channel"]
        )


def downgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_alerts_transaction_id"), type_="unique")
        batch_op.drop_column("error")
        batch_op.drop_column("delivered_at")
        batch_op.drop_column("attempts")
