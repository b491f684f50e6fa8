"""The customer's history online: the last transaction, the lateness, replays.

What the engine keeps of a customer's recent transactions decides four things: the "last"
transaction (time and place), whether a transaction is too late to store, whether it is a
redelivery, and the bounded history behind the robust amount features. Arrival order must
not change any of them for the transactions that follow.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import redis

from featkit import FIXED_CLOCK, frame_of, tx
from fraudstream.features import FeatureEngine, backfill, default_feature_set
from fraudstream.features.history import Found, mark_new_places
from fraudstream.features.layout import NEW_PLACE

PARIS: dict[str, Any] = {"lat": 48.8566, "lon": 2.3522, "x": None, "y": None}
NEW_YORK: dict[str, Any] = {"lat": 40.7128, "lon": -74.0060, "x": None, "y": None}


def engine(client: redis.Redis, **kw: Any) -> FeatureEngine:
    return FeatureEngine(client, default_feature_set(), clock=lambda: FIXED_CLOCK, **kw)


def snapshot(client: redis.Redis) -> dict[Any, Any]:
    return {k: client.dump(k) for k in sorted(client.keys("*"))}


def value(e: FeatureEngine, out: np.ndarray, name: str, row: int = -1) -> float:
    return float(out[row, e.names.index(name)])


@pytest.mark.integration
@pytest.mark.parametrize("batches", [[1, 1, 1], [3]], ids=["apart", "one batch"])
def test_a_late_transaction_does_not_move_the_last_one_back(
    client: redis.Redis, batches: list[int]
) -> None:
    """Paris at T, New York dated T-20 min arriving late, Paris at T+60 s: the third is 60 s
    and 0 km after the first, as the backfill says, not an impossible trip from New York."""
    arrivals = [
        tx(1, minutes=0, **PARIS),
        tx(2, minutes=-20, **NEW_YORK),
        tx(3, minutes=1, **PARIS),
    ]
    e = engine(client)
    outs, at = [], 0
    for size in batches:
        outs.append(e.compute_batch(arrivals[at : at + size]))
        at += size
    out = np.vstack(outs)
    assert e.stats.late == 0 and e.stats.processed == 3
    assert value(e, out, "customer_seconds_since_last_tx") == 60.0
    assert value(e, out, "customer_distance_from_last") == pytest.approx(0.0, abs=1e-9)
    assert value(e, out, "customer_impossible_travel") == 0.0
    offline = backfill(frame_of(arrivals)).drop("transaction_id").to_numpy()
    for name in ("customer_seconds_since_last_tx", "customer_distance_from_last"):
        assert value(e, out, name) == value(e, offline, name), name
    state = e.customer_state("c1")
    assert state["last_transaction"] == "2024-05-06T12:01:00+00:00"
    assert state["last_location"] == {
        "system": "latlon",
        "a": PARIS["lat"],
        "b": PARIS["lon"],
        "timestamp": "2024-05-06T12:01:00+00:00",
    }


@pytest.mark.integration
def test_a_late_transaction_is_measured_against_the_newest_one(client: redis.Redis) -> None:
    """Its own "last" features cannot be the backfill's (its predecessor in event time is
    not kept exactly): they measure it against the customer's newest transaction, the gap
    taken as positive, so the pair is checked for impossible travel once, as offline."""
    e = engine(client)
    e.compute_batch([tx(1, minutes=0, **PARIS)])
    out = e.compute_batch([tx(2, minutes=-20, **NEW_YORK)])
    assert value(e, out, "customer_seconds_since_last_tx") == 1200.0
    assert value(e, out, "customer_distance_from_last") == pytest.approx(5837, rel=1e-3)
    assert value(e, out, "customer_impossible_travel") == 1.0


@pytest.mark.integration
def test_every_process_judges_lateness_from_the_stored_state(client: redis.Redis) -> None:
    """A transaction two days old for a customer with nothing newer is stored, and one for a
    customer with a transaction since is not, whichever process sees it and however long
    it has been running."""
    later, old = 3 * 24 * 60, 1 * 24 * 60
    recent = [tx(1, minutes=later, customer="busy"), tx(2, minutes=later, customer="other")]
    stale = [tx(3, minutes=old, customer="busy"), tx(4, minutes=old, customer="quiet")]
    running = engine(client, namespace="a")  # one long-running process sees everything
    running.compute_batch(recent)
    running.compute_batch(stale)
    first, fresh = engine(client, namespace="b"), engine(client, namespace="b")
    first.compute_batch(recent)
    fresh.compute_batch(stale)  # a process started since (another worker, the API)
    assert running.stats.late == fresh.stats.late == 1
    assert running.customer_state("quiet")["transactions_seen"] == 1
    assert fresh.customer_state("busy")["transactions_seen"] == 1
    state = snapshot(client)
    assert {k[2:]: v for k, v in state.items() if k.startswith(b"a:")} == {
        k[2:]: v for k, v in state.items() if k.startswith(b"b:")
    }


@pytest.mark.integration
@pytest.mark.parametrize("batch", [1, 70], ids=["one by one", "one batch"])
def test_a_redelivery_never_counts_twice_within_the_lateness(
    client: redis.Redis, batch: int
) -> None:
    """70 transactions of one customer in half an hour (a card-testing burst: more than the
    64 the history keeps, well within the hour of lateness), then the first one again."""
    e = engine(client)
    burst = [tx(i, minutes=i * 0.4, amount=1.0) for i in range(70)]
    for at in range(0, len(burst), batch):
        e.compute_batch(burst[at : at + batch])
    before = snapshot(client)
    e.compute_batch([burst[0]])
    e.compute_batch([burst[3], burst[69]])
    assert snapshot(client) == before
    assert e.stats.processed == 70 and e.stats.duplicates + e.stats.late == 3
    # A new transaction dated before all 64 kept cannot be told from a redelivered one:
    # it is scored, not stored (counted late), as one beyond the lateness would be.
    out = e.compute_batch([tx(100, minutes=1.0, amount=1.0)])
    assert snapshot(client) == before and e.stats.late >= 1
    assert value(e, out, "customer_tx_count_1h") == 70.0


def numpy_mark_new_places(
    h_id: np.ndarray, prev_id: np.ndarray, prev_new: np.ndarray, cust: Any, txid: Any, new: Any
) -> None:
    """`mark_new_places` as numpy did it."""
    at = np.flatnonzero(new)
    if not len(at):
        return
    rows = cust[at]
    ids = h_id[rows]
    hit_row, hit_slot = np.nonzero(ids == txid[at][:, None])
    h_id[rows[hit_row], hit_slot] |= NEW_PLACE
    later = np.flatnonzero(np.isin(cust, rows))
    prev_new[later] |= np.isin(prev_id[later], txid[at])


@pytest.mark.parametrize(("n", "customers", "seed"), [(1, 1, 0), (10, 3, 1), (500, 60, 2)])
def test_new_places_are_flagged_as_numpy_did(n: int, customers: int, seed: int) -> None:
    """The compiled flagging of new places (state and what later transactions found) is
    the numpy one's, ids shared across customers and entries already flagged included."""
    rng = np.random.default_rng(seed)
    k, ids = 8, 10 * n + 20  # few enough ids that entries and later transactions match
    h_id = rng.integers(0, ids, (customers, k)).astype(np.uint64)
    h_id[rng.random((customers, k)) < 0.1] |= NEW_PLACE
    cust = rng.integers(0, customers, n).astype(np.int64)
    txid = rng.integers(0, ids, n).astype(np.uint64)
    prev_id = rng.integers(0, ids, (n, k)).astype(np.uint64)
    prev_new = rng.random((n, k)) < 0.2
    new = rng.random(n) < 0.5
    new[0], h_id[cust[0], 0], prev_id[0, 1], prev_new[0, 1] = True, txid[0], txid[0], False
    want_h, want_prev = h_id.copy(), prev_new.copy()
    numpy_mark_new_places(want_h, prev_id, want_prev, cust, txid, new)
    blobs = np.zeros(customers, dtype=[("h_id", "<u8", (k,))])
    blobs["h_id"] = h_id
    zeros = np.zeros(n, dtype=np.int64)
    found = Found(
        np.zeros(n, np.int8), prev_id.astype(np.int64), prev_id.astype(np.int64),
        prev_id.astype(np.int64), prev_new.copy(), prev_id, zeros, np.zeros(n, np.uint8),
        zeros.astype(float), zeros.astype(float), zeros,
    )  # fmt: skip
    mark_new_places(blobs, found, cust, txid, new)
    assert np.array_equal(blobs["h_id"], want_h)
    assert np.array_equal(found.prev_new, want_prev)
    assert (want_h != h_id).any() and (want_prev != prev_new).any()
