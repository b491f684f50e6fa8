"""The co-visitation neighbourhood: a terminal's customers against the customer's own
neighbours, built from history, loaded online, the same offline."""

from __future__ import annotations

import hashlib
import math
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import redis

from clikit import run_cli
from featkit import transactions
from fraudstream.errors import SchemaError
from fraudstream.features import FeatureEngine, backfill, default_feature_set
from fraudstream.features.neighbours import BITS, build_neighbourhood, load_neighbours

UNTIL = datetime(2024, 6, 1, tzinfo=UTC)
VISITS = {  # customer -> terminals visited in the 30 days before UNTIL
    "a": ["T1", "T2", "H"],
    "b": ["T2", "T3", "H"],
    "c": ["T3", "H"],
    "d": ["T4"],
}
HUB = 3
"""Customers from which a terminal is a hub (H has a, b, c)."""


def _history() -> tuple[pl.DataFrame, pl.DataFrame]:
    rows = []
    for c, terminals in VISITS.items():
        for k, t in enumerate(terminals):
            rows.append((f"{c}{k}", UNTIL - timedelta(days=5, hours=k), c, t))
    rows.append(("old", UNTIL - timedelta(days=31), "d", "T1"))  # before the period
    rows.append(("late", UNTIL, "d", "T1"))  # at its end: not in it
    rows.append(("fraud", UNTIL - timedelta(days=9), "e", "T1"))  # reported before UNTIL
    rows.append(("fraud2", UNTIL - timedelta(days=1), "c", "T4"))  # reported after UNTIL
    history = pl.DataFrame(
        rows, schema=["transaction_id", "timestamp", "customer_id", "terminal_id"], orient="row"
    ).with_columns(pl.lit(20.0).alias("amount"))
    labels = pl.DataFrame(
        {
            "transaction_id": ["fraud", "fraud2"],
            "is_fraud": [True, True],
            "reported_at": [UNTIL - timedelta(days=2), UNTIL + timedelta(days=1)],
        }
    )
    return history, labels


QUERIES = [  # (customer, terminal) after UNTIL
    ("a", "T3"),  # T3's customers {b, c}; a's neighbours {a, b} (T1, T2): 1/2
    ("a", "T4"),  # T4's {d, c}: none is a's neighbour
    ("d", "T1"),  # T1's {a}; d's neighbours {d, c} (T4 with the fraud2 visit): 0
    ("c", "T1"),  # c's neighbours {b, c} (T3) ∪ {d, c} (T4): 0
    ("c", "T2"),  # T2's {a, b}: b is c's neighbour: 1/2
    ("b", "T1"),  # {a} ⊂ b's neighbours {a, b, c}: 1
    ("a", "H"),  # a hub: NaN
    ("a", "T9"),  # unknown terminal: NaN
    ("e", "T1"),  # e's only visit was a known fraud: no neighbours, NaN
    ("z", "T1"),  # unknown customer: NaN
]


def _bit(customer: str) -> int:
    return int.from_bytes(hashlib.blake2b(customer.encode(), digest_size=8).digest(), "little")


def _oracle(customer: str, terminal: str) -> float:
    """The share from its definition, on the sets (the test's ids do not collide)."""
    visits = {c: set(ts) for c, ts in VISITS.items()}
    visits["c"].add("T4")
    of: dict[str, set[str]] = {}
    for c, ts in visits.items():
        for t in ts:
            of.setdefault(t, set()).add(c)
    if terminal not in of or len(of[terminal]) >= HUB or customer not in visits:
        return math.nan
    near = set().union(*(of[t] for t in visits[customer] if len(of[t]) < HUB))
    bits = {_bit(c) % BITS for c in of[terminal]}
    return len(bits & {_bit(c) % BITS for c in near}) / len(bits)


def _queries() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "transaction_id": [f"q{i}" for i in range(len(QUERIES))],
            "timestamp": [UNTIL + timedelta(hours=1 + i) for i in range(len(QUERIES))],
            "customer_id": [c for c, _ in QUERIES],
            "terminal_id": [t for _, t in QUERIES],
            "amount": [20.0] * len(QUERIES),
            "merchant_id": [t for _, t in QUERIES],
            "currency": ["EUR"] * len(QUERIES),
            "channel": ["card_present"] * len(QUERIES),
        }
    )


def test_share_follows_its_definition() -> None:
    assert len({_bit(c) % BITS for c in "abcdez"}) == 6  # no collision: sets = bits
    history, labels = _history()
    hood = build_neighbourhood(history, UNTIL, labels=labels, hub_customers=HUB)
    assert dict(zip(hood.terminals, hood.hub.tolist(), strict=True))["H"]
    assert "e" not in hood.customers
    got = backfill(_queries(), neighbours=hood)["terminal_covisit_share"].to_list()
    expected = [_oracle(c, t) for c, t in QUERIES]
    assert expected[:6] == [0.5, 0.0, 0.0, 0.0, 0.5, 1.0]
    np.testing.assert_array_equal(np.array(got), np.array(expected))


def test_without_a_neighbourhood_the_share_is_nan() -> None:
    got = backfill(_queries())["terminal_covisit_share"].to_numpy()
    assert np.isnan(got).all()


@pytest.mark.integration
def test_online_reads_the_loaded_neighbourhood_as_the_backfill(client: redis.Redis) -> None:
    history, labels = _history()
    hood = build_neighbourhood(history, UNTIL, labels=labels, hub_customers=HUB)
    assert load_neighbours(client, hood) == len(hood.customers) + len(hood.terminals)
    engine = FeatureEngine(client, default_feature_set(), clock=lambda: UNTIL.timestamp() + 9e5)
    queries = _queries()
    online = engine.compute_batch(transactions(queries))
    offline = backfill(queries, neighbours=hood).drop("transaction_id").to_numpy()
    j = engine.names.index("terminal_covisit_share")
    np.testing.assert_array_equal(online[:, j], offline[:, j])
    assert np.nanmax(online[:, j]) == 1.0


@pytest.mark.integration
def test_an_unreadable_record_reads_as_none(client: redis.Redis) -> None:
    history, labels = _history()
    load_neighbours(client, build_neighbourhood(history, UNTIL, labels=labels, hub_customers=HUB))
    client.set("fs:{t:T3}:nb", b"\x07junk")
    engine = FeatureEngine(client, default_feature_set(), clock=lambda: UNTIL.timestamp() + 9e5)
    out = engine.compute_batch(transactions(_queries().head(2)))
    share = out[:, engine.names.index("terminal_covisit_share")]
    assert math.isnan(share[0]) and share[1] == 0.0


def test_bad_input_names_the_field() -> None:
    history, _ = _history()
    with pytest.raises(SchemaError) as err:
        build_neighbourhood(history.drop("terminal_id"), UNTIL)
    assert err.value.field == "terminal_id"
    with pytest.raises(SchemaError) as err:
        build_neighbourhood(history, UNTIL, labels=pl.DataFrame({"transaction_id": ["x"]}))
    assert err.value.field == "reported_at"


@pytest.mark.integration
def test_cli_loads_the_neighbourhood(tmp_path: Path, valkey_url: str, client: redis.Redis) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli("features", "load-neighbours", *args, valkey_url=valkey_url)

    history, labels = _history()
    path = tmp_path / "history.csv"
    history.with_columns(pl.col("timestamp").dt.strftime("%Y-%m-%dT%H:%M:%SZ")).write_csv(path)
    bad = tmp_path / "bad.csv"
    history.drop("terminal_id").write_csv(bad)
    result = cli("--history", str(bad))
    assert result.returncode == 2 and "terminal_id" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    result = cli("--history", str(path), "--until", "June 1st")
    assert result.returncode == 2 and "until: not a date" in result.stderr
    result = cli("--history", str(path), "--until", "2020-01-01")
    assert result.returncode == 2 and "no transactions in" in result.stderr
    assert client.dbsize() == 0
    labels.write_csv(tmp_path / "labels.csv")
    result = cli("--history", str(path), "--until", "2024-06-01")
    assert result.returncode == 0, result.stderr
    assert "5 terminals of which 0 hubs" in result.stdout  # T1..T4, H; hubs from 60
    hood = build_neighbourhood(history, UNTIL, labels=labels)
    for tag, eid, record in hood.records():
        assert client.get(f"fs:{{{tag}:{eid}}}:nb") == record
    assert client.get("fs:{c:e}:nb") is None  # its visit: a fraud known before the end


def test_cli_backfill_takes_the_same_neighbourhood(tmp_path: Path) -> None:
    history, labels = _history()
    both = pl.concat([history, _queries().select(history.columns)])
    path = tmp_path / "history.parquet"
    both.write_parquet(path)
    labels.write_parquet(tmp_path / "labels.parquet")
    out = tmp_path / "features.parquet"
    args = ["--history", str(path), "--out", str(out), "--neighbours-until", "2024-06-01"]
    result = run_cli("features", "backfill", *args)
    assert result.returncode == 0, result.stderr
    hood = build_neighbourhood(both, UNTIL, labels=labels)
    expected = backfill(both, labels, neighbours=hood)["terminal_covisit_share"].to_numpy()
    got = pl.read_parquet(out)["terminal_covisit_share"].to_numpy()
    np.testing.assert_array_equal(got, expected)
    assert np.nanmax(got) == 1.0
