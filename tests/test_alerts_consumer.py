"""The alerts consumer against real servers: Valkey, SQLite, an HTTP receiver checking the
signature, and an SMTP server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis
import sqlalchemy as sa

from alertkit import SECRET, Mailbox, closed_port, parts, smtp_server, webhook_receiver
from fraudstream.alerts.channels import Channel
from fraudstream.alerts.consumer import ALERTS_GROUP, AlertConsumer, AlertOptions, _Batch
from fraudstream.alerts.mail import EmailChannel, SmtpOptions
from fraudstream.alerts.payload import Decided
from fraudstream.alerts.retry import RetryPolicy
from fraudstream.alerts.routing import ChannelName, Routes, default_routes
from fraudstream.alerts.webhook import WebhookChannel
from fraudstream.challenges import Codes, code_for
from fraudstream.schema import Decision, Outcome, Transaction, encode
from fraudstream.store import migrate
from fraudstream.store.engine import create_engine
from fraudstream.store.lag import measure
from fraudstream.store.sink import Sink, SinkOptions
from fraudstream.store.tables import alerts, customers, transactions
from fraudstream.stream.commit import decision_entry
from fraudstream.stream.keys import StreamKeys
from storekit import publish, stored_ids

KEYS = StreamKeys("tx", 4)
FAST = RetryPolicy(attempts=3, backoff_s=0.01, max_backoff_s=0.02)
OPTIONS = AlertOptions(batch_size=50, block_ms=50, claim_idle_ms=60_000, progress_s=0.0)
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    made = create_engine(f"sqlite:///{tmp_path / 'store.db'}", busy_timeout_ms=2000)
    migrate.upgrade(made)
    try:
        yield made
    finally:
        made.dispose()


def decided(i: int, outcome: Outcome = "block", **extra: Any) -> Decided:
    return Decided(
        transaction_id=f"tx-{i}",
        score=900 if outcome == "block" else 100,
        outcome=outcome,
        reasons=["rule:velocity"],
        model_version="m-1",
        rules_version="r-1",
        latency_ms=1.0,
        decided_at=T0 + timedelta(seconds=i),
        **extra,
    )


def team_mail(mailbox: Mailbox) -> EmailChannel:
    """The e-mail channel to the fraud team, through the test's SMTP server."""
    options = SmtpOptions(
        host=mailbox.host, port=mailbox.port, security="plain", recipients=("team@example.com",)
    )
    return EmailChannel(options)


def webhook(url: str) -> WebhookChannel:
    return WebhookChannel(url, SECRET, timeout_s=2.0)


def consumer(
    client: redis.Redis,
    engine: sa.Engine,
    channels: Mapping[ChannelName, Channel],
    *,
    routes: Routes | None = None,
    kind: type[AlertConsumer] = AlertConsumer,
    options: AlertOptions = OPTIONS,
) -> AlertConsumer:
    return kind(
        client,
        engine,
        KEYS,
        routes or default_routes(set(channels)),
        channels,
        policy=FAST,
        options=options,
        consumer="alerts:test",
    )


def log_rows(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        rows = connection.execute(sa.select(alerts).order_by(alerts.c.alert_id))
        return [dict(row._mapping) for row in rows]


def dead_letters(client: redis.Redis) -> list[dict[bytes, bytes]]:
    entries: Any = client.xrange(KEYS.deadletter)
    return [fields for _, fields in entries]


def test_blocks_are_alerted_by_webhook_and_email_with_the_customer_joined_in(
    client: redis.Redis, engine: sa.Engine
) -> None:
    with engine.begin() as connection:
        connection.execute(
            sa.insert(customers),
            [{"customer_id": "c-1", "name": "Ada Lovelace", "email": "ada@example.com",
              "phone": "+44 20 7946 0000", "segment": "premium"}],
        )  # fmt: skip
        connection.execute(
            sa.insert(transactions),
            [{"transaction_id": "tx-2", "timestamp": T0, "customer_id": "c-1",
              "terminal_id": "t", "merchant_id": "m", "amount": 1234.5, "currency": "EUR",
              "channel": "ecommerce"}],
        )  # fmt: skip
    items: list[Decision] = [
        decided(1, "approve", customer_id="c-1", amount=5.0),
        decided(2),  # customer and amount from the stored transaction
        decided(3, customer_id="c-9", amount=80.0, currency="USD"),  # no customers row
        decided(4),  # nothing known but the decision
    ]
    publish(client, KEYS.decisions, items)
    with webhook_receiver() as receiver, smtp_server() as mailbox:
        mail = team_mail(mailbox)
        stats = consumer(client, engine, {"webhook": webhook(receiver.url), "email": mail}).run(
            burst=True, handle_signals=False
        )
        hooks = receiver.wait_for(3)
        mails = mailbox.wait_for(3)
    assert (stats.sent, stats.failed, stats.alerted, stats.decisions) == (6, 0, 3, 4)
    assert all(h.verified for h in hooks)
    bodies = {b["transaction_id"]: b for b in (json.loads(h.body) for h in hooks)}
    assert sorted(bodies) == ["tx-2", "tx-3", "tx-4"]
    assert bodies["tx-2"]["customer"] == {
        "customer_id": "c-1",
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "phone": "+44 20 7946 0000",
        "segment": "premium",
    }
    assert (bodies["tx-2"]["amount"], bodies["tx-2"]["currency"]) == (1234.5, "EUR")
    assert bodies["tx-3"]["customer"] == {"customer_id": "c-9"}
    assert bodies["tx-4"]["customer"] is None and bodies["tx-4"]["amount"] is None
    assert bodies["tx-2"]["alert_id"] == "tx-2:webhook"
    assert bodies["tx-2"]["routes"] == ["blocks"]
    by_subject = {m["Subject"]: (to, m) for to, m in mails}
    subject = "[fraudstream] BLOCK tx-2: score 900, 1,234.50 EUR"
    to, message = by_subject[subject]
    assert to == ["team@example.com"]
    plain, rich = parts(message)
    assert "Name: Ada Lovelace" in plain and "Segment: premium" in plain
    assert "<td>Ada Lovelace</td>" in rich and "rule:velocity" in rich
    assert "[fraudstream] BLOCK tx-4: score 900, amount unknown" in by_subject
    rows = log_rows(engine)
    assert sorted((r["transaction_id"], r["channel"], r["status"]) for r in rows) == [
        (tx, ch, "sent") for tx in ("tx-2", "tx-3", "tx-4") for ch in ("email", "webhook")
    ]
    assert all(r["attempts"] == 1 and r["delivered_at"] is not None for r in rows)
    assert measure(client, KEYS.decisions, ALERTS_GROUP).entries == 0


def test_a_receiver_answering_500_is_retried_then_dead_lettered_and_logged_failed(
    client: redis.Redis, engine: sa.Engine
) -> None:
    publish(client, KEYS.decisions, [decided(1), decided(2)])
    # One at a time: tx-1 gets two 500s, then 200; tx-2 only 500s.
    with webhook_receiver(statuses=[500, 500, 200], default=500) as receiver:
        one_by_one = AlertOptions(batch_size=1, block_ms=50, progress_s=0.0)
        run = consumer(client, engine, {"webhook": webhook(receiver.url)}, options=one_by_one)
        stats = run.run(burst=True, handle_signals=False)
        assert len(receiver.wait_for(6)) == 6  # 3 tries each
    assert (stats.sent, stats.failed) == (1, 1)
    rows = {r["transaction_id"]: r for r in log_rows(engine)}
    assert (rows["tx-1"]["status"], rows["tx-1"]["attempts"]) == ("sent", 3)
    assert (rows["tx-2"]["status"], rows["tx-2"]["attempts"]) == ("failed", 3)
    assert "HTTP 500" in rows["tx-2"]["error"]
    [dead] = dead_letters(client)
    assert dead[b"field"] == b"webhook"
    assert b"HTTP 500" in dead[b"reason"] and b"after 3 attempts" in dead[b"reason"]
    assert json.loads(dead[b"payload"])["transaction_id"] == "tx-2"
    assert measure(client, KEYS.decisions, ALERTS_GROUP).entries == 0  # acked


def test_a_receiver_that_is_down_is_retried_then_dead_lettered(
    client: redis.Redis, engine: sa.Engine
) -> None:
    publish(client, KEYS.decisions, [decided(1)])
    down = webhook(f"http://127.0.0.1:{closed_port()}/hook")
    stats = consumer(client, engine, {"webhook": down}).run(burst=True, handle_signals=False)
    assert (stats.sent, stats.failed, stats.dead_lettered) == (0, 1, 1)
    [row] = log_rows(engine)
    assert (row["status"], row["attempts"]) == ("failed", 3)
    assert "unreachable" in row["error"]
    [dead] = dead_letters(client)
    assert b"unreachable" in dead[b"reason"]


def test_an_smtp_server_that_is_down_is_retried_then_dead_lettered(
    client: redis.Redis, engine: sa.Engine
) -> None:
    publish(client, KEYS.decisions, [decided(1)])
    options = SmtpOptions(
        host="127.0.0.1", port=closed_port(), security="plain", recipients=("team@example.com",)
    )
    down = EmailChannel(options)
    stats = consumer(client, engine, {"email": down}).run(burst=True, handle_signals=False)
    assert (stats.sent, stats.failed, stats.dead_lettered) == (0, 1, 1)
    [row] = log_rows(engine)
    assert (row["channel"], row["status"], row["attempts"]) == ("email", "failed", 3)
    assert f"smtp 127.0.0.1:{options.port}" in row["error"]
    [dead] = dead_letters(client)
    assert dead[b"field"] == b"email" and b"after 3 attempts" in dead[b"reason"]
    assert measure(client, KEYS.decisions, ALERTS_GROUP).entries == 0  # acked


class Crash(Exception):
    """The process dies here."""


class CrashBeforeAck(AlertConsumer):
    """Sends and logs its first batch, then dies before the XACK."""

    def _ack(self, batch: _Batch) -> None:
        raise Crash


def test_a_redelivered_decision_is_not_sent_twice(client: redis.Redis, engine: sa.Engine) -> None:
    items: list[Decision] = [decided(1), decided(2)]
    publish(client, KEYS.decisions, [*items, items[0]])  # tx-1 twice in the stream
    with webhook_receiver() as receiver:
        channels: dict[ChannelName, Channel] = {"webhook": webhook(receiver.url)}
        with pytest.raises(Crash):
            consumer(client, engine, channels, kind=CrashBeforeAck).run(
                burst=True, handle_signals=False
            )
        assert len(receiver.wait_for(2)) == 2
        assert measure(client, KEYS.decisions, ALERTS_GROUP).pending == 3  # not acked
        again = consumer(client, engine, channels).run(burst=True, handle_signals=False)
        publish(client, KEYS.decisions, [items[1]])  # decided again, much later
        later = consumer(client, engine, channels).run(burst=True, handle_signals=False)
        assert len(receiver.received) == 2
    assert (again.sent, again.skipped, again.decisions) == (0, 2, 3)
    assert (later.sent, later.skipped) == (0, 1)
    assert sorted(r["transaction_id"] for r in log_rows(engine)) == ["tx-1", "tx-2"]
    assert measure(client, KEYS.decisions, ALERTS_GROUP).entries == 0


def test_scoring_and_the_sink_go_on_while_alerts_wait_on_a_receiver(
    client: redis.Redis, engine: sa.Engine
) -> None:
    """Alerts read their own group: a receiver that hangs holds up no decision and no other
    consumer of the stream."""
    publish(client, KEYS.decisions, [decided(0)])
    with webhook_receiver() as receiver:
        receiver.gate.clear()  # the receiver takes the request and does not answer
        running = consumer(client, engine, {"webhook": webhook(receiver.url)})
        done: list[object] = []
        thread = threading.Thread(
            target=lambda: done.append(running.run(burst=True, handle_signals=False))
        )
        thread.start()
        try:
            receiver.wait_for(1)  # the alert is in flight, unanswered
            publish(client, KEYS.decisions, [decided(i) for i in range(1, 101)])
            sink = Sink(client, engine, KEYS, SinkOptions(block_ms=50, progress_s=1e9))
            assert sink.run(burst=True, handle_signals=False).stored == 101
            assert len(stored_ids(engine)) == 101
            assert not done  # the alerts consumer is still waiting
        finally:
            receiver.gate.set()
            thread.join(30)
        assert len(receiver.wait_for(101)) == 101
    assert done and client.xlen(KEYS.decisions) == 101  # read, never consumed away


def test_undecodable_entries_are_dead_lettered_and_acked(
    client: redis.Redis, engine: sa.Engine
) -> None:
    client.xadd(KEYS.decisions, {b"d": b"{not json"})
    publish(client, KEYS.decisions, [decided(1)])
    with webhook_receiver() as receiver:
        stats = consumer(client, engine, {"webhook": webhook(receiver.url)}).run(
            burst=True, handle_signals=False
        )
    assert (stats.sent, stats.dead_lettered) == (1, 1)
    [dead] = dead_letters(client)
    assert dead[b"reason"].startswith(b"alerts: ")
    assert encode(decided(1)) != dead[b"payload"]


def test_a_stop_cuts_the_retries_short_and_leaves_the_batch_pending(
    client: redis.Redis, engine: sa.Engine
) -> None:
    publish(client, KEYS.decisions, [decided(1)])
    patient = RetryPolicy(attempts=1000, backoff_s=0.5, max_backoff_s=0.5)  # ~8 min of tries
    with webhook_receiver(default=500) as receiver:
        running = consumer(client, engine, {"webhook": webhook(receiver.url)})
        running.policy = patient
        thread = threading.Thread(target=lambda: running.run(handle_signals=False))
        thread.start()
        receiver.wait_for(2)  # retrying
        running.request_stop()
        thread.join(20)
        assert not thread.is_alive(), "the stop waited for the retries"
    assert measure(client, KEYS.decisions, ALERTS_GROUP).pending == 1  # not acked
    assert [r["status"] for r in log_rows(engine)] == ["pending"]
    assert dead_letters(client) == []
    with webhook_receiver() as receiver:
        stats = consumer(client, engine, {"webhook": webhook(receiver.url)}).run(
            burst=True, handle_signals=False
        )
        assert len(receiver.wait_for(1)) == 1
    assert (stats.sent, stats.failed) == (1, 0)
    assert [r["status"] for r in log_rows(engine)] == ["sent"]


def test_alerts_that_failed_before_a_stop_are_dead_lettered_once(
    client: redis.Redis, engine: sa.Engine
) -> None:
    publish(client, KEYS.decisions, [decided(1), decided(2)])
    one_at_a_time = AlertOptions(block_ms=50, progress_s=0.0, concurrency=1)
    with webhook_receiver(default=500) as receiver:
        running = consumer(
            client, engine, {"webhook": webhook(receiver.url)}, options=one_at_a_time
        )
        running.policy = RetryPolicy(attempts=3, backoff_s=0.01, max_backoff_s=0.01)
        receiver.hold_from = 4
        receiver.gate.clear()
        thread = threading.Thread(target=lambda: running.run(handle_signals=False))
        thread.start()
        receiver.wait_for(4)  # tx-1 failed its 3 tries; tx-2's first is held
        running.request_stop()
        receiver.gate.set()  # tx-2's first try fails: its retry is cut short
        thread.join(20)
        assert not thread.is_alive()
    assert {r["transaction_id"]: r["status"] for r in log_rows(engine)} == {
        "tx-1": "failed",
        "tx-2": "pending",
    }
    assert [json.loads(d[b"payload"])["transaction_id"] for d in dead_letters(client)] == ["tx-1"]
    with webhook_receiver() as receiver:
        stats = consumer(client, engine, {"webhook": webhook(receiver.url)}).run(
            burst=True, handle_signals=False
        )
        [got] = receiver.wait_for(1)
    assert json.loads(got.body)["transaction_id"] == "tx-2"
    assert (stats.sent, stats.skipped, stats.dead_lettered) == (1, 1, 0)
    assert len(dead_letters(client)) == 1


def test_the_transaction_streamed_with_its_decision_gives_amount_and_customer(
    client: redis.Redis, engine: sa.Engine
) -> None:
    """Workers stream each decision with its transaction: the alert has the amount and the
    customer at once, before (or without) the sink storing the transaction."""
    with engine.begin() as connection:
        connection.execute(sa.insert(customers), [{"customer_id": "c-7", "name": "Grace Hopper"}])
    tx = Transaction(
        transaction_id="tx-5",
        timestamp=T0,
        customer_id="c-7",
        terminal_id="t",
        merchant_id="m",
        amount=812.25,
        currency="GBP",
        channel="ecommerce",
    )
    client.xadd(KEYS.decisions, decision_entry(decided(5), encode(tx)))
    with webhook_receiver() as receiver:
        consumer(client, engine, {"webhook": webhook(receiver.url)}).run(
            burst=True, handle_signals=False
        )
        (hook,) = receiver.wait_for(1)
    body = json.loads(hook.body)
    assert (body["amount"], body["currency"]) == (812.25, "GBP")
    assert body["customer"] == {"customer_id": "c-7", "name": "Grace Hopper"}


def test_a_step_up_sends_its_code_to_the_customer_and_the_webhook_but_a_final_nothing(
    client: redis.Redis, engine: sa.Engine
) -> None:
    with engine.begin() as connection:
        connection.execute(
            sa.insert(customers),
            [{"customer_id": "c-1", "name": "Ada Lovelace", "email": "ada@example.com"}],
        )
    secret = b"a challenge secret of 32 bytes.."
    stepped = decided(5, "step_up", customer_id="c-1", amount=150.0, currency="EUR")
    no_address = decided(6, "step_up", customer_id="c-2", amount=20.0)
    final = msgspec.structs.replace(
        decided(7, "block"), reasons=["rule:velocity", "challenge:failed"]
    )
    publish(client, KEYS.decisions, [stepped, no_address, final])
    with webhook_receiver() as receiver, smtp_server() as mailbox:
        mail = team_mail(mailbox)
        run = consumer(client, engine, {"webhook": webhook(receiver.url), "email": mail})
        run.codes = Codes(secret, ttl_s=300)
        stats = run.run(burst=True, handle_signals=False)
        hooks = receiver.wait_for(2)
        [(to, message)] = mailbox.wait_for(1)
    code = code_for(secret, "tx-5")
    assert to == ["ada@example.com"] and code in message["Subject"]
    text, _ = parts(message)
    assert "150.00 EUR" in text and "score" not in text.lower()
    bodies = {json.loads(h.body)["transaction_id"]: json.loads(h.body) for h in hooks}
    assert bodies["tx-5"]["challenge"]["code"] == code
    assert bodies["tx-6"]["challenge"]["code"] == code_for(secret, "tx-6")
    assert bodies["tx-5"]["challenge"]["expires_at"].startswith("2026-03-01T12:05:05")
    # tx-6 has no e-mail address: its code e-mail fails (and is dead-lettered); tx-7, the
    # final of a challenge, raises no alert at all
    assert (stats.sent, stats.failed, stats.alerted) == (3, 1, 2)
    reasons = [f[b"reason"].decode() for f in dead_letters(client)]
    assert any("no e-mail address for customer 'c-2'" in r for r in reasons), reasons
