"""The alerts delivery log on SQLite and PostgreSQL: a (transaction, channel) is claimed
once, and a logged one is never handed out again."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from fraudstream.alerts import deliveries
from fraudstream.store import migrate
from fraudstream.store.tables import alerts


def test_a_logged_alert_is_never_claimed_again(engine: sa.Engine) -> None:
    migrate.upgrade(engine)
    wanted = [("tx-1", "c-1", "webhook"), ("tx-1", "c-1", "email"), ("tx-2", None, "webhook")]
    with engine.begin() as connection:
        assert deliveries.claim(connection, wanted) == {(t, ch) for t, _, ch in wanted}
    with engine.begin() as connection:
        deliveries.record(
            connection,
            [
                deliveries.Outcome("tx-1", "webhook", 1, None),
                deliveries.Outcome("tx-1", "email", 5, "email: smtp …: 550 no such user"),
            ],
        )
    with engine.begin() as connection:
        # tx-2 was claimed and never logged (a crash mid-send): it is handed out again.
        assert deliveries.claim(connection, [*wanted, ("tx-3", "c-3", "email")]) == {
            ("tx-2", "webhook"),
            ("tx-3", "email"),
        }
    with engine.connect() as connection:
        rows = {(r.transaction_id, r.channel): r for r in connection.execute(sa.select(alerts))}
    assert len(rows) == 4
    assert (rows["tx-1", "webhook"].status, rows["tx-1", "webhook"].attempts) == ("sent", 1)
    assert rows["tx-1", "email"].status == "failed"
    assert rows["tx-1", "email"].error == "email: smtp …: 550 no such user"
    assert rows["tx-1", "email"].delivered_at is not None
    assert (rows["tx-2", "webhook"].status, rows["tx-2", "webhook"].customer_id) == (
        "pending",
        None,
    )


def test_the_log_refuses_a_second_row_for_a_transaction_and_channel(engine: sa.Engine) -> None:
    migrate.upgrade(engine)
    with engine.begin() as connection:
        deliveries.claim(connection, [("tx-1", None, "webhook")])
    row = {"transaction_id": "tx-1", "channel": "webhook", "status": "sent",
           "created_at": sa.func.now()}  # fmt: skip
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
        connection.execute(sa.insert(alerts).values(**row))
