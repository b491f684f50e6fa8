"""The online engine's contract: point in time, idempotent, bounded, loud on bad input."""

from __future__ import annotations

import logging
import math
import socket
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import msgspec
import numpy as np
import polars as pl
import pytest
import redis

from featkit import FIXED_CLOCK, T0, frame_of, transactions, tx, unchecked
from fraudstream.errors import ConfigError, SchemaError
from fraudstream.features import (
    Aggregate,
    FeatureEngine,
    FeatureSet,
    FeatureStoreError,
    backfill,
    default_feature_set,
)
from fraudstream.features.batch import BatchRun
from fraudstream.features.profiles import profile_key
from fraudstream.features.sample import synthetic_history
from fraudstream.features.wire import Session, Wire, _poll_until_readable
from fraudstream.schema import Label, Transaction

FRAUD_AT_T9 = Label(
    transaction_id="t1",
    is_fraud=True,
    reported_at=T0 + timedelta(days=2),
    terminal_id="T9",
    tx_timestamp=T0,
)
"""The chargeback of ``tx(1, terminal_id="T9")``, reported two days later."""


def engine(client: redis.Redis | redis.RedisCluster, **kw: Any) -> FeatureEngine:
    return FeatureEngine(client, default_feature_set(), clock=lambda: FIXED_CLOCK, **kw)


def snapshot(client: redis.Redis) -> dict[Any, Any]:
    return {k: client.dump(k) for k in sorted(client.keys("*"))}


def col(e: FeatureEngine, out: np.ndarray, name: str) -> list[float]:
    return [float(v) for v in out[:, e.names.index(name)]]


def race(monkeypatch: pytest.MonkeyPatch, write: Any) -> None:
    """Run ``write(batch_run)`` between each batch's read and its write (another writer)."""
    state = BatchRun._state

    def racing_state(self: BatchRun, values: list[Any]) -> Any:
        write(self)
        return state(self, values)

    monkeypatch.setattr(BatchRun, "_state", racing_state)


@pytest.mark.integration
def test_includes_itself_and_earlier_ones_of_the_batch(client: redis.Redis) -> None:
    e = engine(client)
    out = e.compute_batch([tx(1), tx(2, minutes=5), tx(3, minutes=6, customer="c2")])
    assert col(e, out, "customer_tx_count_1h") == [1, 2, 1]
    assert col(e, out, "card_tx_count_1h") == [1, 2, 3]
    assert col(e, out, "customer_amount_sum_24h") == [11.0, 23.0, 13.0]
    assert col(e, out, "customer_seconds_since_last_tx")[1] == 300.0
    later = e.compute_batch([tx(4, minutes=30)])
    assert col(e, later, "customer_tx_count_1h") == [3]


@pytest.mark.integration
def test_a_batch_equals_one_transaction_at_a_time(client: redis.Redis) -> None:
    history, _ = synthetic_history(n_customers=40, n_terminals=20, n_days=5, seed=11)
    txs = transactions(history)
    whole = engine(client, namespace="a").compute_batch(txs)
    one = engine(client, namespace="b")
    single = np.vstack([one.compute_batch([t]) for t in txs])
    assert np.array_equal(whole, single, equal_nan=True)


@pytest.mark.integration
def test_the_same_transactions_twice_change_nothing(client: redis.Redis) -> None:
    e = engine(client)
    batch = [
        tx(1),
        tx(2, minutes=1),
        tx(
            3,
            minutes=2,
            customer="c2",
            channel="ecommerce",
            ip="1.2.3.4",
            device_id="D1",
            x=None,
            y=None,
        ),
    ]
    e.compute_batch(batch)
    before = snapshot(client)
    e.compute_batch(batch + [batch[0]])
    assert snapshot(client) == before
    assert e.stats.duplicates == 4 and e.stats.processed == 3
    # Nothing to write: the read's WATCH is lifted before the connection goes back. (Redis
    # before 7.4 does not report watching clients: there the check is Valkey's alone.)
    assert client.info("clients").get("watching_clients", 0) == 0


@pytest.mark.integration
def test_labels_count_once_and_only_from_their_report(client: redis.Redis) -> None:
    e = engine(client)
    e.compute_batch([tx(1, terminal_id="T9")])
    label = FRAUD_AT_T9
    e.apply_labels([label, label])
    assert (e.stats.labels_applied, e.stats.labels_duplicate) == (1, 1)
    e.apply_labels([label])
    assert e.stats.labels_duplicate == 2
    out = e.compute_batch([tx(2, minutes=60 * 24 * 9, terminal_id="T9")])
    assert col(e, out, "terminal_tx_count_7d_delay7d") == [1.0]
    assert col(e, out, "terminal_risk_7d_delay7d") == [1.0]
    assert col(e, out, "terminal_days_since_first_fraud") == [9.0]


@pytest.mark.integration
def test_labels_sent_with_a_batch_count_as_applied_ones(client: redis.Redis) -> None:
    fraud = FRAUD_AT_T9
    genuine = Label(transaction_id="t0", is_fraud=False, reported_at=T0)
    later = [tx(2, minutes=60 * 24 * 9, terminal_id="T9")]
    apart, along = engine(client, namespace="a"), engine(client, namespace="b")
    for e in (apart, along):
        e.compute_batch([tx(1, terminal_id="T9")])
    apart.apply_labels([fraud, fraud, genuine])
    expected = apart.compute_batch(later)
    got = along.submit(later, [fraud, fraud, genuine])
    along.confirm()
    assert np.array_equal(expected, got, equal_nan=True)
    assert col(along, got, "terminal_risk_7d_delay7d") == [1.0]
    assert vars(along.stats) == vars(apart.stats)
    assert along.stats.labels_applied == 1 and along.stats.labels_duplicate == 1
    with pytest.raises(SchemaError) as err:
        along.submit(later, [Label(transaction_id="t3", is_fraud=True, reported_at=T0)])
    assert err.value.field == "terminal_id"


@pytest.mark.integration
def test_one_batch_in_flight_per_engine_and_labels_without_a_batch(client: redis.Redis) -> None:
    e = engine(client)
    e.compute_batch([tx(1, terminal_id="T9")])
    run = e.start([tx(2, minutes=1)])
    with pytest.raises(RuntimeError, match="finish the started batch"):
        e.start([tx(3, minutes=2)])
    assert col(e, e.finish(run), "customer_tx_count_1h") == [2.0]
    assert e.submit([], [FRAUD_AT_T9]).shape == (0, len(e.names))
    assert e.stats.labels_applied == 1 and e.stats.processed == 2


@pytest.mark.integration
def test_bad_input_is_a_schema_error_and_writes_nothing(client: redis.Redis) -> None:
    e = FeatureEngine(client, clock=lambda: T0.timestamp(), max_future_skew_s=60)
    with pytest.raises(SchemaError) as err:
        e.compute_batch([tx(1), tx(2, minutes=5)])
    assert err.value.field == "timestamp" and "future" in str(err.value)
    assert client.dbsize() == 0
    with pytest.raises(SchemaError) as err:
        e.apply_labels([Label(transaction_id="t1", is_fraud=True, reported_at=T0)])
    assert err.value.field == "terminal_id"


def test_definitions_are_checked() -> None:
    with pytest.raises(ConfigError) as err:
        Aggregate("shoe", "count", "1d")  # type: ignore[arg-type]
    assert err.value.key == "entity" and "shoe" in str(err.value)
    with pytest.raises(ConfigError):
        Aggregate("ip", "std", "1d")
    with pytest.raises(ConfigError):
        Aggregate("customer", "count", "90m", tile="1h")
    with pytest.raises(ConfigError):
        FeatureSet((Aggregate("card", "count", "1h"), Aggregate("card", "count", "1h")))


def amount_features(e: FeatureEngine) -> list[str]:
    """The features computed from amounts (sums, means, ratios, z-scores, extremes); not
    the trends, NaN until the customer has paid on two days, nor the ratio to the usual
    before the last days, NaN without payments that old (whatever the amounts)."""
    words = ("amount", "ratio", "zscore")
    late = ("_trend_", "_before_")
    return [n for n in e.names if any(w in n for w in words) and not any(w in n for w in late)]


def paying(i: int, minutes: float, amount: float) -> Transaction:
    """A transaction with every entity an amount feature reads (card, device, IP)."""
    return tx(i, minutes=minutes, amount=amount, device_id="D1", ip="1.2.3.4")


@pytest.mark.integration
@pytest.mark.parametrize("huge", [1e17, 1e300, math.inf])
def test_a_huge_amount_saturates_the_sums_and_spoils_nothing_after_it(
    client: redis.Redis, huge: float
) -> None:
    """One absurd amount (past the schema: a bug upstream) must not wrap a sum into a
    negative mean, nor make the customer's next ordinary payment look unusual."""
    e = engine(client)
    txs = [paying(1, 0, 40.0), paying(2, 1, 50.0)]
    txs += [unchecked(paying(3, 2, 1.0), huge), paying(4, 3, 45.0)]
    out = np.vstack([e.compute_batch(txs[:2]), e.compute_batch(txs[2:])])
    cap = (2**39 - 1) / 100  # the widest sum a tile keeps, in currency units
    assert col(e, out, "card_amount_sum_1h")[2:] == [cap, cap]
    assert col(e, out, "customer_amount_sum_24h")[2:] == [cap, cap]
    assert col(e, out, "card_tx_count_1h") == [1.0, 2.0, 3.0, 4.0]  # no carry into counts
    assert col(e, out, "customer_amount_mean_30d")[3] == cap / 4
    after = out[3, [e.names.index(n) for n in amount_features(e)]]
    assert np.isfinite(after).all(), dict(zip(amount_features(e), after, strict=True))
    assert 0 < col(e, out, "customer_amount_ratio_mean_30d")[3] < 1e-6
    offline = backfill(frame_of(txs)).drop("transaction_id").to_numpy()
    assert np.array_equal(out, offline, equal_nan=True)


@pytest.mark.integration
def test_zero_amounts_give_finite_features_online_and_offline(client: redis.Redis) -> None:
    """A zero amount is valid (card verification, card testing): no ratio may turn it into
    NaN or inf. A zero reference counts as one cent."""
    e = engine(client)
    txs = [paying(1, 0, 0.0), paying(2, 1, 0.0), paying(3, 2, 25.0), paying(4, 3, 0.0)]
    out = np.vstack([e.compute_batch(txs[:2]), e.compute_batch(txs[2:])])
    values = out[:, [e.names.index(n) for n in amount_features(e)]]
    first_prev = [j for j, n in enumerate(amount_features(e)) if "_prev_" in n]
    values[0, first_prev] = 0.0  # the first transaction has no previous ones: NaN there
    assert np.isfinite(values).all()
    assert col(e, out, "customer_amount_ratio_mean_30d") == [0.0, 0.0, 3.0, 0.0]
    assert col(e, out, "customer_amount_ratio_median_prev_30d")[1:] == [0.0, 2500.0, 0.0]
    assert col(e, out, "customer_amount_mean_30d") == [0.0, 0.0, 25 / 3, 25 / 4]
    offline = backfill(frame_of(txs)).drop("transaction_id").to_numpy()
    assert np.array_equal(out, offline, equal_nan=True)


@pytest.mark.integration
def test_late_events_are_scored_but_not_stored(client: redis.Redis) -> None:
    e = engine(client, lateness_s=600)
    e.compute_batch([tx(1, minutes=120)])
    before = snapshot(client)
    out = e.compute_batch([tx(2, minutes=60)])
    assert e.stats.late == 1
    assert snapshot(client) == before
    assert col(e, out, "customer_tx_count_1h") == [0.0]
    e.compute_batch([tx(3, minutes=115)])
    assert e.stats.late == 1


def unreadable(kind: str, good: bytes) -> bytes:
    """A customer state the engine cannot read: cut short, of another layout version, or of
    another size (another feature set, another release)."""
    if kind == "short":
        return good[:17]
    if kind == "old layout":
        return (2).to_bytes(2, "little") + good[2:]
    return good + bytes(8)


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["short", "old layout", "foreign"])
def test_an_unreadable_customer_state_is_reset_and_the_rest_decided(
    client: redis.Redis, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    e = engine(client)
    e.compute_batch([tx(1), tx(2, minutes=1, customer="c2")])
    good = client.get(e.customer_key("c1"))
    assert isinstance(good, bytes)
    client.set(e.customer_key("c1"), unreadable(kind, good))
    state = e.customer_state("c1")
    assert state["exists"] is True and state["readable"] is False
    with caplog.at_level(logging.WARNING, logger="fraudstream.features"):
        out = e.compute_batch([tx(3, minutes=2), tx(4, minutes=3, customer="c2"), tx(5, minutes=4)])
    assert col(e, out, "customer_tx_count_1h") == [1.0, 2.0, 2.0]  # c1 from scratch
    assert e.stats.reset == 1 and e.stats.processed == 5
    assert "fs:{c:c1}" in caplog.text and "reset" in caplog.text
    assert len(client.get(e.customer_key("c1")) or b"") == e.plan.blob.itemsize
    assert e.customer_state("c1")["transactions_seen"] == 2


@pytest.mark.integration
def test_a_fraud_known_at_a_terminal_is_never_in_the_future(client: redis.Redis) -> None:
    """A late transaction scored after the label of a later fraud at its terminal (streams
    out of order): the fraud is known now, 0 days ago, not -2 (which offline, where a
    label is only known from its report, never happens)."""
    e = engine(client)
    later = msgspec.structs.replace(FRAUD_AT_T9, tx_timestamp=T0 + timedelta(days=2))
    e.apply_labels([msgspec.structs.replace(later, reported_at=T0 + timedelta(days=3))])
    for small in (False, True):  # the compiled small-batch path and the numpy one
        batch = [tx(5 + i, terminal_id="T9") for i in range(1 if small else 150)]
        out = e.compute_batch(batch)
        for name in ("terminal_days_since_first_fraud", "terminal_days_since_last_fraud"):
            assert set(col(e, out, name)) == {0.0}, (small, name)


@pytest.mark.integration
def test_an_unreadable_profile_or_fraud_stamp_reads_as_none(
    client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    e = engine(client)
    client.set(profile_key(e.namespace, "c1"), b"\x07" * 5)
    client.set(e.known_fraud_key("T1"), b"not:a stamp")
    with caplog.at_level(logging.WARNING, logger="fraudstream.features"):
        out = e.compute_batch([tx(1), tx(2, minutes=1, customer="c2")])
    assert np.isnan(col(e, out, "customer_profile_segment")).all()
    assert np.isnan(col(e, out, "terminal_days_since_first_fraud")).all()
    assert profile_key(e.namespace, "c1") in caplog.text
    assert e.known_fraud_key("T1") in caplog.text
    assert e.profile("c1") is None
    e.apply_labels([FRAUD_AT_T9, msgspec.structs.replace(FRAUD_AT_T9, terminal_id="T1")])
    assert e.stats.labels_applied == 2  # the label replaced the stamp it could not read
    later = e.compute_batch([tx(3, minutes=60 * 24 * 9)])
    assert col(e, later, "terminal_days_since_first_fraud") == [9.0]


@pytest.mark.integration
def test_a_concurrent_writer_of_a_customer_aborts_the_batch(
    client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    e = engine(client)
    e.compute_batch([tx(1)])

    def overwrite(_: BatchRun) -> None:
        old = client.get(e.customer_key("c1"))
        assert isinstance(old, bytes)
        client.set(e.customer_key("c1"), old[:-1] + b"\x01")

    race(monkeypatch, overwrite)
    before = snapshot(client)
    with pytest.raises(FeatureStoreError, match="another writer"):
        e.compute_batch([tx(2, minutes=1, customer="c2"), tx(3, minutes=1)])
    after = snapshot(client)
    changed = [k for k in after if after[k] != before.get(k)]
    assert changed == [e.customer_key("c1").encode()]


@pytest.mark.integration
def test_submitted_batches_equal_confirmed_ones_and_store_the_same_state(
    client: redis.Redis,
) -> None:
    history, _ = synthetic_history(n_customers=30, n_terminals=10, n_days=4, seed=5)
    txs = transactions(history.sort("timestamp"))
    sync, piped = engine(client, namespace="a"), engine(client, namespace="b")
    batches = [txs[i : i + 97] for i in range(0, len(txs), 97)]
    expected = np.vstack([sync.compute_batch(b) for b in batches])
    got = np.vstack([piped.submit(b) for b in batches])  # each submit confirms the last
    assert piped.stats.processed < len(txs)  # the last write is still unconfirmed
    piped.confirm()
    assert np.array_equal(expected, got, equal_nan=True)
    assert piped.stats.processed == sync.stats.processed == len(txs)
    state = {k[2:]: v for k, v in snapshot(client).items() if k.startswith(b"a:")}
    assert state == {k[2:]: v for k, v in snapshot(client).items() if k.startswith(b"b:")}


@pytest.mark.integration
def test_two_engines_with_batches_in_flight_equal_each_alone(client: redis.Redis) -> None:
    """Two partitions' batches in flight on one client (one engine each), as
    bench_features runs them: each partition's features are those it gets alone."""
    history, _ = synthetic_history(n_customers=40, n_terminals=12, n_days=3, seed=9)
    txs = transactions(history.sort("timestamp"))

    def own(t: Transaction, p: int) -> Transaction:  # partitions share no entity
        shared = ("terminal_id", "card_id", "device_id")
        fields = {f: f"{p}-{getattr(t, f)}" for f in shared if getattr(t, f) is not None}
        if t.ip is not None:  # 10.x.y.z -> 11.x.y.z / 12.x.y.z
            fields["ip"] = t.ip.replace("10.", f"{11 + p}.", 1)
        return msgspec.structs.replace(t, **fields)

    parts = [[own(t, p) for t in txs if int(t.customer_id) % 2 == p] for p in (0, 1)]
    batches = [[part[i : i + 20] for i in range(0, len(part), 20)] for part in parts]
    alone = [
        np.vstack([engine(client, namespace=f"alone{p}").compute_batch(b) for b in batches[p]])
        for p in (0, 1)
    ]
    engines = [engine(client, namespace="both"), engine(client, namespace="both")]
    got: list[list[np.ndarray]] = [[], []]
    started = [engines[p].start(batches[p][0]) for p in (0, 1)]
    for k in range(1, max(map(len, batches)) + 1):
        for p in (0, 1):
            if started[p] is not None:
                got[p].append(engines[p].finish(started[p]))
                started[p] = None
            if k < len(batches[p]):
                started[p] = engines[p].start(batches[p][k])
    for p in (0, 1):
        engines[p].confirm()
        assert np.array_equal(np.vstack(got[p]), alone[p], equal_nan=True)
        assert engines[p].stats.processed == len(parts[p])


@pytest.mark.integration
def test_a_submitted_write_that_lost_a_race_is_raised_once(
    client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    e = engine(client)
    e.compute_batch([tx(1)])
    race(monkeypatch, lambda _: client.append(e.customer_key("c1"), b""))  # a touch
    e.submit([tx(2, minutes=1)])
    with pytest.raises(FeatureStoreError, match="another writer"):
        e.submit([tx(3, minutes=2, customer="c2")])  # confirms the first: nothing read
    assert client.get(e.customer_key("c2")) is None
    e.submit([tx(4, minutes=3)])
    with pytest.raises(FeatureStoreError, match="another writer"):
        e.confirm()
    monkeypatch.undo()
    e.compute_batch([tx(2, minutes=1), tx(3, minutes=2, customer="c2"), tx(4, minutes=3)])
    e.confirm()  # nothing pending: a no-op
    assert e.stats.processed == 4 and e.stats.duplicates == 0


@pytest.mark.integration
def test_state_stays_bounded(client: redis.Redis) -> None:
    e = engine(client)
    for day in range(0, 400, 3):
        e.compute_batch(
            [
                tx(
                    day,
                    minutes=day * 1440.0,
                    channel="ecommerce",
                    ip="9.9.9.9",
                    device_id="D",
                    x=None,
                    y=None,
                )
            ]
        )
    assert e.sweep() > 0
    sizes = {len(client.get(k) or b"") for k in client.keys("fs:{c:*")}
    assert sizes == {e.plan.blob.itemsize}
    # The target: at most 4 KB of server memory per customer, key and allocator included, on
    # Valkey (8 embeds the key in its object; Redis 7.0 keeps them apart: 56 bytes more).
    valkey = "valkey_version" in client.info("server")
    limit = 4096 if valkey else 4096 + 64
    assert int(client.memory_usage(e.customer_key("c1"), samples=0) or 0) <= limit
    for tag in ("t:T1", "i:9.9.9.9", "d:D", "k:K1"):
        assert len(client.keys(f"fs:{{{tag}}}:*")) <= 3, tag
    assert all(0 < client.ttl(k) for k in client.keys("fs:*"))


@pytest.mark.integration
def test_customer_state_is_readable(client: redis.Redis) -> None:
    e = engine(client)
    e.compute_batch([tx(1), tx(2, minutes=3)])
    state = e.customer_state("c1")
    assert state["exists"] is True and state["transactions_seen"] == 2
    history = state["history"]
    assert isinstance(history, list) and [h["amount"] for h in history] == [12.0, 11.0]
    seen = state["first_seen"]
    assert isinstance(seen, dict)
    assert seen["merchant"] == {"values": 1, "mode": "exact", "rotated": False}
    assert e.customer_state("nobody") == {"customer_id": "nobody", "exists": False}


def test_backfill_names_the_missing_column() -> None:
    frame = pl.DataFrame({"transaction_id": ["a"], "customer_id": ["c"]})
    with pytest.raises(SchemaError) as err:
        backfill(frame, pl.DataFrame())
    assert err.value.field == "timestamp"
    history, _ = synthetic_history(n_customers=5, n_terminals=5, n_days=2)
    broken = history.with_columns(pl.lit(None, dtype=pl.Datetime("us", "UTC")).alias("timestamp"))
    with pytest.raises(SchemaError, match="timestamp"):
        backfill(broken, None)


@pytest.mark.integration
def test_first_seen_is_point_in_time_within_a_batch(client: redis.Redis) -> None:
    e = engine(client)
    batch = [
        tx(1, merchant_id="M1", product_category="books"),
        tx(2, minutes=1, merchant_id="M2", product_category="books"),
        tx(3, minutes=2, merchant_id="M1"),
        tx(4, minutes=3, customer="c2", merchant_id="M1", product_category="books"),
    ]
    out = e.compute_batch(batch)
    assert col(e, out, "is_first_seen_merchant") == [1.0, 1.0, 0.0, 1.0]
    category = col(e, out, "is_first_seen_product_category")
    assert category[:2] == [1.0, 0.0] and np.isnan(category[2]) and category[3] == 1.0
    assert np.isnan(col(e, out, "is_first_seen_ip")).all()
    again = e.compute_batch([tx(5, minutes=4, merchant_id="M2", ip="1.2.3.4")])
    assert col(e, again, "is_first_seen_merchant") == [0.0]
    assert col(e, again, "is_first_seen_ip") == [1.0]


@pytest.mark.integration
def test_duplicates_and_late_events_teach_nothing(client: redis.Redis) -> None:
    e = engine(client, lateness_s=600)
    e.compute_batch([tx(1, minutes=120, device_id="D1")])
    before = snapshot(client)
    out = e.compute_batch([tx(1, minutes=121, device_id="D2"), tx(2, minutes=60, device_id="D3")])
    assert col(e, out, "is_first_seen_device") == [1.0, 1.0]
    assert snapshot(client) == before
    later = e.compute_batch(
        [tx(3, minutes=122, device_id="D2"), tx(4, minutes=123, device_id="D3")]
    )
    assert col(e, later, "is_first_seen_device") == [1.0, 1.0]


@pytest.mark.integration
def test_on_a_cluster_a_concurrent_writer_keeps_its_customer_and_the_rest_is_stored(
    cluster_client: redis.RedisCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    e = engine(cluster_client)
    other = engine(cluster_client)
    e.compute_batch([tx(1)])

    def other_worker(run: BatchRun) -> None:
        if run.e is e.ctx:  # another worker stores c1 between this batch's read and write
            other.compute_batch([tx(9, minutes=0.5)])

    race(monkeypatch, other_worker)
    with pytest.raises(FeatureStoreError, match="1 customer"):
        e.compute_batch([tx(2, minutes=1, customer="c2"), tx(3, minutes=1)])
    monkeypatch.undo()
    assert e.customer_state("c1")["transactions_seen"] == 2  # t1 and the other's t9
    assert e.customer_state("c2")["transactions_seen"] == 1
    # The retry stores c1's transaction once; c2's is recognised as already applied.
    out = e.compute_batch([tx(2, minutes=1, customer="c2"), tx(3, minutes=1)])
    assert e.customer_state("c1")["transactions_seen"] == 3
    assert e.customer_state("c2")["transactions_seen"] == 1
    assert col(e, out, "terminal_tx_count_1d_delay7d") == [0.0, 0.0]
    assert col(e, out, "card_tx_count_1h") == [3.0, 4.0]


def history_batches() -> list[list[Transaction]]:
    history, _ = synthetic_history(n_customers=40, n_terminals=20, n_days=4, seed=7)
    txs = transactions(history.sort("timestamp"))
    return [txs[i : i + 150] for i in range(0, len(txs), 150)]


@pytest.mark.integration
def test_on_a_cluster_commands_sent_to_a_node_that_lost_their_slot_run_once_where_it_went(
    client: redis.Redis, cluster_client: redis.RedisCluster
) -> None:
    """The client's slot map gone stale (slots migrated, a failover): every node answers
    ``MOVED``, the commands run through the cluster pipeline, once each."""
    batches = history_batches()
    one = engine(client)
    expected = np.vstack([one.compute_batch(b) for b in batches])
    many = engine(cluster_client)
    primaries = cluster_client.get_primaries()  # type: ignore[no-untyped-call]
    names = [p.name for p in primaries]
    got = [many.compute_batch(batches[0])]
    for owners in cluster_client.nodes_manager.slots_cache.values():
        owners[0] = primaries[(names.index(owners[0].name) + 1) % len(primaries)]
    got += [many.compute_batch(b) for b in batches[1:]]
    assert np.array_equal(expected, np.vstack(got), equal_nan=True)
    assert many.stats.processed == one.stats.processed


@pytest.mark.integration
def test_on_a_cluster_a_batch_sends_one_round_trip_per_node_and_equals_one_node(
    client: redis.Redis, cluster_client: redis.RedisCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Per batch each primary gets its read, its customers' puts and its shared increments
    as one send each (redis-py's cluster pipeline: a command at a time); the features and
    the stored state are the one-node engine's."""
    batches = history_batches()
    one = engine(client)
    expected = np.vstack([one.compute_batch(b) for b in batches])
    sends: Counter[int] = Counter()
    send = Session.send

    def counted(self: Session, commands: Any, *, atomic: bool = False) -> None:
        sends[self.conn.port] += 1
        send(self, commands, atomic=atomic)

    monkeypatch.setattr(Session, "send", counted)
    many = engine(cluster_client)
    primaries = cluster_client.get_primaries()  # type: ignore[no-untyped-call]
    got = []
    for b in batches:
        sends.clear()
        got.append(many.compute_batch(b))
        assert sends == {p.port: 3 for p in primaries}
    assert np.array_equal(expected, np.vstack(got), equal_nan=True)
    assert many.stats.processed == one.stats.processed == sum(map(len, batches))


@pytest.mark.integration
def test_the_engine_compiles_its_kernels_before_the_first_batch(client: redis.Redis) -> None:
    """A first batch seconds late (numba compiling) makes a worker lose its leases."""
    from fraudstream.features import blocks, history, resp, seen, windows
    from fraudstream.features import compiled as columns

    e = engine(client)
    kernels: list[Any] = [windows.owned_grid, windows.shared_grid, windows.window_sums]
    kernels += [history._admit, seen._replay, resp._bitfields, resp._keys, resp._sets]
    kernels += [seen._positions, columns._home_cells, columns._centres, columns._columns]
    kernels += [columns._cells, history._mark_new_places]
    kernels += [blocks.block_rows, blocks.family_increments, blocks.new_block_ttls]
    compiled = [len(k.signatures) for k in kernels]
    assert all(compiled)
    e.compute_batch([tx(1, customer="solo")])
    e.compute_batch([tx(i, minutes=i, customer=f"c{i % 3}") for i in range(2, 12)])
    assert [len(k.signatures) for k in kernels] == compiled


@pytest.mark.integration
def test_shared_blocks_of_another_packing_are_never_read(client: redis.Redis) -> None:
    """A terminal's block packs its counters by what the feature set needs: a set that packs
    them otherwise (an upgrade adding a sum) reads its own keys, never the old words."""
    before = FeatureSet((Aggregate("terminal", "count", "1d"), Aggregate("terminal", "risk", "1d")))
    after = FeatureSet((*before.aggregates, Aggregate("terminal", "sum", "1d")))
    old = FeatureEngine(client, before, clock=lambda: FIXED_CLOCK)
    old.compute_batch([tx(i, minutes=i, customer=f"c{i}", terminal_id="T9") for i in range(5)])
    new = FeatureEngine(client, after, clock=lambda: FIXED_CLOCK)
    out = new.compute_batch([tx(9, minutes=9, customer="c9", terminal_id="T9")])
    assert col(new, out, "terminal_tx_count_1d") == [1.0]
    assert col(new, out, "terminal_amount_sum_1d") == [19.0]  # its own amount, nothing else


@pytest.mark.integration
def test_sessions_reuse_receive_buffers_and_never_share_one(client: redis.Redis) -> None:
    """A batch's session takes the receive buffer a closed one gave back (a fresh 256 KB a
    batch costs its zeroing); sessions open at once each have their own."""
    wire = Wire(client)
    first, second = wire.open(), wire.open()
    assert first._buffer is not second._buffer
    assert first.run([("ECHO", "a" * 300_000)]) == [b"a" * 300_000]
    used = first._buffer
    first.close()
    third, fourth = wire.open(), wire.open()
    assert third._buffer is used and fourth._buffer is not used
    assert fourth._buffer is not second._buffer
    assert third.run([("ECHO", "b" * 300_000), ("ECHO", "c")]) == [b"b" * 300_000, b"c"]
    for session in (second, third, fourth):
        session.close()
    assert len(wire._buffers) == 3


@pytest.mark.integration
def test_a_polling_session_reads_quick_and_slow_replies(client: redis.Redis) -> None:
    """With ``spin_s`` (the API's engines), a reply there within the poll is read, and one
    that takes longer (a ``BLPOP`` timing out after 0.2 s) is waited for in ``recv`` as
    without it: the poll only shortens the wait."""
    wire = Wire(client)
    wire.spin_s = 0.001
    with wire.session() as session:
        assert session.spin_s == 0.001
        assert session.run([("ECHO", "a"), ("ECHO", "b" * 300_000)]) == [b"a", b"b" * 300_000]
        started = time.perf_counter()
        assert session.run([("BLPOP", "fs:test:nothing-here", 0.2)]) == [None]
        assert time.perf_counter() - started >= 0.19


def test_polling_returns_as_soon_as_there_is_something_to_read() -> None:
    """`_poll_until_readable` returns when bytes arrive, long before its limit, and at its
    limit when none do."""
    a, b = socket.socketpair()
    with a, b:
        started = time.perf_counter()
        _poll_until_readable(a, 0.05)
        assert time.perf_counter() - started >= 0.05  # nothing to read: polled to the end
        b.sendall(b"+OK\r\n")
        started = time.perf_counter()
        _poll_until_readable(a, 30.0)
        assert time.perf_counter() - started < 5.0
        assert a.recv(16) == b"+OK\r\n"


@pytest.mark.integration
def test_a_held_write_goes_with_the_callers_commands_or_not_at_all(client: redis.Redis) -> None:
    """With ``hold_writes`` a batch's state is stored only by `confirm`, together with the
    caller's commands in one transaction (their replies returned); `abandon` drops it, and
    a new batch cannot start over a held one."""
    e = engine(client)
    e.hold_writes = True
    e.submit([tx(1)])
    empty = snapshot(client)
    assert not any(b"{c:" in k for k in empty)  # computed, nothing stored yet
    with pytest.raises(RuntimeError, match="held write"):
        e.submit([tx(2, minutes=1)])
    assert e.confirm([("SET", "fs:test:mark", "1"), ("INCR", "fs:test:mark")]) == [b"OK", 2]
    stored = snapshot(client)
    assert stored != empty and client.get("fs:test:mark") == b"2"
    out = e.submit([tx(3, minutes=2)])
    e.abandon()  # the caller failed after the features: nothing of this batch is kept
    assert snapshot(client) == stored
    assert col(e, out, "customer_tx_count_1d") == [2.0]
    assert col(e, e.submit([tx(4, minutes=3)]), "customer_tx_count_1d") == [2.0]  # not 3
    assert e.confirm() == []
    # a batch with nothing to store (a repeat) still sends the caller's commands in a
    # transaction under its read's WATCH
    e.submit([tx(4, minutes=3)])
    client.config_resetstat()
    assert e.confirm([("INCR", "fs:test:mark")]) == [3]
    stats: Any = client.info("commandstats")
    assert stats["cmdstat_exec"]["calls"] == 1 and stats["cmdstat_incr"]["calls"] == 1
