"""The system of record's tables, declared once (SQLAlchemy Core); every change is a migration.

Ids are the pipeline's own strings, so a row is keyed by what the streams carry and a
re-delivered entry meets its own primary key (``INSERT … ON CONFLICT DO NOTHING``). Times are
stored in UTC. Lists and maps (reasons, feature values) are JSON: read whole, never queried
inside by the pipeline.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Json = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
"""``None`` is SQL NULL (not the JSON ``null``): "not carried" stays distinguishable."""
Time = sa.DateTime(timezone=True)
Id = sa.String(128)

customers = sa.Table(
    "customers",
    metadata,
    sa.Column("customer_id", Id, primary_key=True),
    sa.Column("name", sa.String(256)),
    sa.Column("email", sa.String(256)),
    sa.Column("phone", sa.String(64)),
    sa.Column("segment", sa.String(64)),
)
"""Simulated static information about a customer (who an alert or a review is about)."""

transactions = sa.Table(
    "transactions",
    metadata,
    sa.Column("transaction_id", Id, primary_key=True),
    sa.Column("timestamp", Time, nullable=False),
    sa.Column("customer_id", Id, nullable=False),
    sa.Column("terminal_id", Id, nullable=False),
    sa.Column("merchant_id", Id, nullable=False),
    sa.Column("amount", sa.Float, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("card_id", Id),
    sa.Column("mcc", sa.String(4)),
    sa.Column("product_category", sa.String(256)),
    sa.Column("product_subcategory", sa.String(256)),
    sa.Column("ip", sa.String(64)),
    sa.Column("device_id", sa.String(256)),
    sa.Column("email", sa.String(256)),
    sa.Column("lat", sa.Float),
    sa.Column("lon", sa.Float),
    sa.Column("x", sa.Float),
    sa.Column("y", sa.Float),
    sa.Index(None, "customer_id", "timestamp"),
    sa.Index(None, "timestamp"),
)

decisions = sa.Table(
    "decisions",
    metadata,
    sa.Column("transaction_id", Id, primary_key=True),
    sa.Column("decided_at", Time, nullable=False),
    sa.Column("score", sa.SmallInteger, nullable=False),
    sa.Column("outcome", sa.String(8), nullable=False),
    sa.Column("reasons", Json, nullable=False),
    sa.Column("model_version", sa.String(128), nullable=False),
    sa.Column("rules_version", sa.String(128), nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("shadow", Json, nullable=False),
    sa.Column(
        "stage_ms", Json, comment="where latency_ms went: queue, features, model, rules (ms)"
    ),
    sa.Column("features", Json, comment="review/block: the feature values behind the score"),
    sa.Column("contributions", Json, comment="review/block: each feature's part in the score"),
    sa.Index(None, "decided_at"),
    sa.Index(None, "outcome", "decided_at"),
)

labels = sa.Table(
    "labels",
    metadata,
    sa.Column("transaction_id", Id, primary_key=True),
    sa.Column("source", sa.String(16), primary_key=True),
    sa.Column("is_fraud", sa.Boolean, nullable=False),
    sa.Column("reported_at", Time, nullable=False),
    sa.Column("customer_id", Id),
    sa.Column("terminal_id", Id),
    sa.Column("tx_timestamp", Time),
    sa.Column("fraud_scenario", sa.SmallInteger),
)
"""One verdict per transaction and source: a chargeback and a reviewer may both speak."""

reviews = sa.Table(
    "reviews",
    metadata,
    sa.Column("review_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("transaction_id", Id, nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("assignee", sa.String(128)),
    sa.Column("verdict", sa.String(16)),
    sa.Column("note", sa.Text),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
)

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("alert_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("transaction_id", Id, nullable=False, index=True),
    sa.Column("customer_id", Id),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("answered_at", Time),
    sa.Column("answer", sa.String(16)),
    sa.Column("attempts", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("delivered_at", Time, comment="when it was sent, or given up (failed)"),
    sa.Column("error", sa.String(256), comment="failed: the last attempt's error"),
    sa.UniqueConstraint("transaction_id", "channel"),
)
"""The delivery log of `fraudstream.alerts`: one row per transaction and channel, ``pending``
while it is being sent, then ``sent`` or ``failed``; the unique key is what keeps a
re-delivered decision from being sent twice (`fraudstream.alerts.deliveries`)."""

challenges = sa.Table(
    "challenges",
    metadata,
    sa.Column("transaction_id", Id, primary_key=True),
    sa.Column("status", sa.String(16), nullable=False, comment="pending, passed, failed, expired"),
    sa.Column("attempts", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("max_attempts", sa.SmallInteger, nullable=False),
    sa.Column("created_at", Time, nullable=False, comment="when the step-up was decided"),
    sa.Column("expires_at", Time, nullable=False),
    sa.Column("resolved_at", Time),
    sa.Column("final_outcome", sa.String(8), comment="approve on success, block otherwise"),
    sa.Column("streamed_at", Time, comment="when the final decision reached tx.decisions"),
    sa.Index(None, "status", "expires_at"),
)
"""Step-up challenges (`fraudstream.store.challenges`): one per ``step_up`` decision. The
one-time code is never stored: it is derived from the transaction id and a secret."""

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("pattern", sa.String(16), nullable=False),
    sa.Column("target_tps", sa.Float, nullable=False),
    sa.Column("duration_s", sa.Float, nullable=False, comment="asked for"),
    sa.Column("processes", sa.SmallInteger, nullable=False),
    sa.Column(
        "status", sa.String(16), nullable=False, comment="completed, interrupted, incomplete"
    ),
    sa.Column("started_at", Time, nullable=False),
    sa.Column("ended_at", Time, nullable=False),
    sa.Column("elapsed_s", sa.Float, nullable=False, comment="first send to last decision"),
    sa.Column("sent", sa.Integer, nullable=False),
    sa.Column("decided", sa.Integer, nullable=False),
    sa.Column("dead_letters", sa.Integer, nullable=False),
    sa.Column("outcomes", Json, nullable=False, comment="decisions per outcome"),
    sa.Column("frauds_sent", sa.Integer, nullable=False),
    sa.Column("frauds_caught", sa.Integer, nullable=False, comment="decided review or block"),
    sa.Column("achieved_tps", sa.Float, nullable=False),
    sa.Column("model_version", sa.String(128), nullable=False),
    sa.Index(None, "started_at"),
)
"""One row per `fraudstream loadtest` run (`fraudstream.store.runs`)."""

run_latencies = sa.Table(
    "run_latencies",
    metadata,
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id"), primary_key=True),
    sa.Column("stage", sa.String(16), primary_key=True, comment="end_to_end or a Decision stage"),
    sa.Column("samples", sa.Integer, nullable=False),
    sa.Column("avg_ms", sa.Float, nullable=False),
    sa.Column("p50_ms", sa.Float, nullable=False),
    sa.Column("p95_ms", sa.Float, nullable=False),
    sa.Column("p99_ms", sa.Float, nullable=False),
    sa.Column("min_ms", sa.Float, nullable=False),
    sa.Column("max_ms", sa.Float, nullable=False),
)
"""A run's latency, end to end and per stage of the decisions' ``stages``."""

run_seconds = sa.Table(
    "run_seconds",
    metadata,
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id"), primary_key=True),
    sa.Column("second", sa.Integer, primary_key=True, comment="from the first send"),
    sa.Column("target_tps", sa.Float, nullable=False),
    sa.Column("sent", sa.Integer, nullable=False),
    sa.Column("decided", sa.Integer, nullable=False, comment="the achieved tx/s"),
    sa.Column("p50_ms", sa.Float),
    sa.Column("p99_ms", sa.Float),
)
"""A run second by second, for plots."""
