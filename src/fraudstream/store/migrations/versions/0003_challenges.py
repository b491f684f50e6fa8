"""Step-up challenges: one per step_up decision, attempts, expiry, final outcome, outbox mark.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 06:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "challenges",
        sa.Column("transaction_id", sa.String(length=128), nullable=False),
        sa.Column(
            "status",
            sa.String(length=16),
            nullable=False,
            comment="pending, passed, failed, expired",
        ),
        sa.Column("attempts", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("max_attempts", sa.SmallInteger(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="when the step-up was decided",
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "final_outcome",
            sa.String(length=8),
            nullable=True,
            comment="approve on success, block otherwise",
        ),
        sa.Column(
            "streamed_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="when the final decision reached tx.decisions",
        ),
        sa.PrimaryKeyConstraint("transaction_id", name=op.f("pk_challenges")),
    )
    with op.batch_alter_table("challenges", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_challenges_status"), ["status", "expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("challenges", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_challenges_status"))
    op.drop_table("challenges")
