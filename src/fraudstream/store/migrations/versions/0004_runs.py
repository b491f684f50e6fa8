"""Load-test runs: one row per run, its latencies per stage, its seconds.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 07:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

TIME = sa.DateTime(timezone=True)
RUN_ID = sa.String(length=64)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("run_id", RUN_ID, nullable=False),
        sa.Column("pattern", sa.String(length=16), nullable=False),
        sa.Column("target_tps", sa.Float(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False, comment="asked for"),
        sa.Column("processes", sa.SmallInteger(), nullable=False),
        sa.Column(
            "status",
            sa.String(length=16),
            nullable=False,
            comment="completed, interrupted, incomplete",
        ),
        sa.Column("started_at", TIME, nullable=False),
        sa.Column("ended_at", TIME, nullable=False),
        sa.Column("elapsed_s", sa.Float(), nullable=False, comment="first send to last decision"),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.Column("decided", sa.Integer(), nullable=False),
        sa.Column("dead_letters", sa.Integer(), nullable=False),
        sa.Column("outcomes", JSON, nullable=False, comment="decisions per outcome"),
        sa.Column("frauds_sent", sa.Integer(), nullable=False),
        sa.Column("frauds_caught", sa.Integer(), nullable=False, comment="decided review or block"),
        sa.Column("achieved_tps", sa.Float(), nullable=False),
        sa.Column("model_version", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_runs")),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_runs_started_at"), ["started_at"], unique=False)
    op.create_table(
        "run_latencies",
        sa.Column("run_id", RUN_ID, nullable=False),
        sa.Column(
            "stage",
            sa.String(length=16),
            nullable=False,
            comment="end_to_end or a Decision stage",
        ),
        sa.Column("samples", sa.Integer(), nullable=False),
        *(
            sa.Column(name, sa.Float(), nullable=False)
            for name in ("avg_ms", "p50_ms", "p95_ms", "p99_ms", "min_ms", "max_ms")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.run_id"], name=op.f("fk_run_latencies_run_id_runs")
        ),
        sa.PrimaryKeyConstraint("run_id", "stage", name=op.f("pk_run_latencies")),
    )
    op.create_table(
        "run_seconds",
        sa.Column("run_id", RUN_ID, nullable=False),
        sa.Column("second", sa.Integer(), nullable=False, comment="from the first send"),
        sa.Column("target_tps", sa.Float(), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.Column("decided", sa.Integer(), nullable=False, comment="the achieved tx/s"),
        sa.Column("p50_ms", sa.Float(), nullable=True),
        sa.Column("p99_ms", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.run_id"], name=op.f("fk_run_seconds_run_id_runs")
        ),
        sa.PrimaryKeyConstraint("run_id", "second", name=op.f("pk_run_seconds")),
    )


def downgrade() -> None:
    op.drop_table("run_seconds")
    op.drop_table("run_latencies")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_runs_started_at"))
    op.drop_table("runs")
