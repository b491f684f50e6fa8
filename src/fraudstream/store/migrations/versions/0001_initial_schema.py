"""Initial schema: transactions, decisions, labels, reviews, alerts, customers.

Revision ID: 0001
Revises:
Create Date: 2026-12-02 01:21:20.773347
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("alert_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("transaction_id", sa.String(length=128), nullable=False),
        sa.Column("customer_id", sa.String(length=128), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answer", sa.String(length=16), nullable=True),
        sa.PrimaryKeyConstraint("alert_id", name=op.f("pk_alerts")),
    )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_alerts_transaction_id"), ["transaction_id"], unique=False
        )

    op.create_table(
        "customers",
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=True),
        sa.Column("email", sa.String(length=256), nullable=True),
        sa.Column("phone", sa.String(length=64), nullable=True),
        sa.Column("segment", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_customers")),
    )
    op.create_table(
        "decisions",
        sa.Column("transaction_id", sa.String(length=128), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("score", sa.SmallInteger(), nullable=False),
        sa.Column("outcome", sa.String(length=8), nullable=False),
        sa.Column("reasons", JSON, nullable=False),
        sa.Column("model_version", sa.String(length=128), nullable=False),
        sa.Column("rules_version", sa.String(length=128), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("shadow", JSON, nullable=False),
        sa.Column(
            "stage_ms",
            JSON,
            nullable=True,
            comment="where latency_ms went: queue, features, model, rules (ms)",
        ),
        sa.Column(
            "features",
            JSON,
            nullable=True,
            comment="review/block: the feature values behind the score",
        ),
        sa.Column(
            "contributions",
            JSON,
            nullable=True,
            comment="review/block: each feature's part in the score",
        ),
        sa.PrimaryKeyConstraint("transaction_id", name=op.f("pk_decisions")),
    )
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_decisions_decided_at"), ["decided_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_decisions_outcome"), ["outcome", "decided_at"], unique=False
        )

    op.create_table(
        "labels",
        sa.Column("transaction_id", sa.String(length=128), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("is_fraud", sa.Boolean(), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("customer_id", sa.String(length=128), nullable=True),
        sa.Column("terminal_id", sa.String(length=128), nullable=True),
        sa.Column("tx_timestamp", sa.DateTime(timezone=True), nullable=True),
        sa.Column("fraud_scenario", sa.SmallInteger(), nullable=True),
        sa.PrimaryKeyConstraint("transaction_id", "source", name=op.f("pk_labels")),
    )
    op.create_table(
        "reviews",
        sa.Column("review_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("transaction_id", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("assignee", sa.String(length=128), nullable=True),
        sa.Column("verdict", sa.String(length=16), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("review_id", name=op.f("pk_reviews")),
    )
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_reviews_transaction_id"), ["transaction_id"], unique=False
        )

    op.create_table(
        "transactions",
        sa.Column("transaction_id", sa.String(length=128), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("terminal_id", sa.String(length=128), nullable=False),
        sa.Column("merchant_id", sa.String(length=128), nullable=False),
        sa.Column("amount", sa.Float(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("card_id", sa.String(length=128), nullable=True),
        sa.Column("mcc", sa.String(length=4), nullable=True),
        sa.Column("product_category", sa.String(length=256), nullable=True),
        sa.Column("product_subcategory", sa.String(length=256), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("device_id", sa.String(length=256), nullable=True),
        sa.Column("email", sa.String(length=256), nullable=True),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("x", sa.Float(), nullable=True),
        sa.Column("y", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("transaction_id", name=op.f("pk_transactions")),
    )
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_transactions_customer_id"), ["customer_id", "timestamp"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_transactions_timestamp"), ["timestamp"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_transactions_timestamp"))
        batch_op.drop_index(batch_op.f("ix_transactions_customer_id"))

    op.drop_table("transactions")
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reviews_transaction_id"))

    op.drop_table("reviews")
    op.drop_table("labels")
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_decisions_outcome"))
        batch_op.drop_index(batch_op.f("ix_decisions_decided_at"))

    op.drop_table("decisions")
    op.drop_table("customers")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alerts_transaction_id"))

    op.drop_table("alerts")
