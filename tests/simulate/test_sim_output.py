"""Files, feeding rows to the stream, summaries, and determinism."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal
from rich.console import Console

from fraudstream.errors import ConfigError
from fraudstream.schema import Transaction, decode_transaction, transaction_from_record
from fraudstream.simulate import (
    PROFILES,
    Profile,
    SimulationConfig,
    SimulationResult,
    iter_transaction_batches,
    iter_transaction_json,
    simulate,
    summarize,
    summary_table,
    write_history,
)

TINY = SimulationConfig(n_customers=200, n_terminals=400, n_days=20, seed=11)
FRAMES = ("transactions", "labels", "customers", "terminals")


@pytest.mark.parametrize("profile", PROFILES)
def test_same_seed_same_history_other_seed_other_history(profile: Profile) -> None:
    config = dataclasses.replace(TINY, profile=profile)
    first, again = simulate(config), simulate(config)
    for name in FRAMES:
        assert_frame_equal(getattr(first, name), getattr(again, name))
    other = simulate(dataclasses.replace(config, seed=12))
    assert not other.transactions.equals(first.transactions)


def test_parquet_and_csv_files_round_trip(small_full: SimulationResult, tmp_path: Path) -> None:
    paths = write_history(small_full, tmp_path, formats=("parquet", "csv"))
    names = {p.name for p in paths}
    for name in (*FRAMES, "transactions_handbook"):
        assert {f"{name}.parquet", f"{name}.csv"} <= names
    for name in FRAMES:
        assert_frame_equal(pl.read_parquet(tmp_path / f"{name}.parquet"), getattr(small_full, name))
    csv = pl.read_csv(tmp_path / "transactions_handbook.csv")
    assert csv["TX_DATETIME"][0] == str(small_full.handbook_transactions["TX_DATETIME"][0])
    customers = pl.read_csv(tmp_path / "customers.csv")
    assert customers["available_terminals"][0] == " ".join(
        small_full.customers["available_terminals"][0]
    )


def test_handbook_format_maps_back_onto_our_transactions(
    small: SimulationResult, tmp_path: Path
) -> None:
    write_history(small, tmp_path)
    hb = pl.read_parquet(tmp_path / "transactions_handbook.parquet")
    assert hb.columns == [
        "TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT",
        "TX_TIME_SECONDS", "TX_TIME_DAYS", "TX_FRAUD", "TX_FRAUD_SCENARIO",
    ]  # fmt: skip
    assert hb["TX_DATETIME"].dtype == pl.Datetime("us")  # naive, as the Handbook's
    start = datetime(2018, 4, 1)
    seconds = (hb["TX_DATETIME"] - start).dt.total_seconds()
    assert (seconds == hb["TX_TIME_SECONDS"]).all()
    assert (hb["TX_TIME_SECONDS"] // 86_400 == hb["TX_TIME_DAYS"]).all()
    ours = small.transactions
    assert (hb["TX_FRAUD"] == ours["is_fraud"].cast(pl.Int8)).all()
    assert (hb["TX_FRAUD_SCENARIO"] == ours["fraud_scenario"]).all()
    # the schema's importer reads Handbook rows back into exactly our transactions
    expected = [
        {k: v for k, v in row.items() if v is not None}
        for row in ours.drop("x", "y", "is_fraud", "fraud_scenario").head(300).to_dicts()
    ]
    imported = [msgspec.to_builtins(transaction_from_record(r)) for r in hb.head(300).to_dicts()]
    assert imported == [msgspec.to_builtins(msgspec.convert(r, Transaction)) for r in expected]


def test_unknown_format_is_refused(small: SimulationResult, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="formats"):
        write_history(small, tmp_path, formats=("xlsx",))


def test_batches_are_schema_rows_without_ground_truth(small_full: SimulationResult) -> None:
    batches = list(iter_transaction_batches(small_full.transactions, 1000))
    assert sum(len(b) for b in batches) == small_full.transactions.height
    assert all(len(b) == 1000 for b in batches[:-1]) and 0 < len(batches[-1]) <= 1000
    channels = set()
    for row in (row for batch in batches for row in batch):
        assert "is_fraud" not in row and "fraud_scenario" not in row
        assert None not in row.values()
        channels.add(msgspec.convert(row, Transaction).channel)
    assert channels == {"card_present", "ecommerce"}
    first = batches[0][0]
    assert first["timestamp"].tzinfo is not None
    assert first["timestamp"].utcoffset().total_seconds() == 0
    assert first["timestamp"] >= datetime(2018, 4, 1, tzinfo=UTC)
    with pytest.raises(ConfigError):
        next(iter_transaction_batches(small_full.transactions, 0))


def test_json_batches_decode_to_the_same_transactions(small_full: SimulationResult) -> None:
    dicts = [
        row for batch in iter_transaction_batches(small_full.transactions, 700) for row in batch
    ]
    blobs = list(iter_transaction_json(small_full.transactions, 700))
    assert all(len(b) == 700 for b in blobs[:-1]) and len(blobs[-1]) <= 700
    decoded = [decode_transaction(blob) for batch in blobs for blob in batch]
    assert len(decoded) == len(dicts) == small_full.transactions.height
    for row, tx in zip(dicts[::97], decoded[::97], strict=True):
        assert msgspec.convert(row, Transaction) == tx
    assert b"is_fraud" not in blobs[0][0]


def test_summary_counts_and_table(default_handbook: SimulationResult) -> None:
    summary = summarize(default_handbook)
    tx = default_handbook.transactions
    assert summary["transactions"] == tx.height
    assert summary["frauds"] == tx["is_fraud"].sum() == summary["labels"]
    scenarios = summary["scenarios"]
    assert isinstance(scenarios, dict)
    assert sum(s["count"] for s in scenarios.values()) == summary["frauds"]
    assert sum(s["share"] for s in scenarios.values()) == pytest.approx(1.0)
    assert summary["handbook"] == {
        "transactions": 1_754_155,
        "frauds": 14_681,
        "fraud_rate": pytest.approx(0.00837, abs=1e-5),
    }
    median, longest = summary["label_delay_median_hours"], summary["label_delay_max_hours"]
    assert isinstance(median, float) and isinstance(longest, float)
    assert 0 < median < longest <= 168
    console = Console(record=True, width=120)
    console.print(summary_table(summary))
    text = console.export_text()
    assert "1,754,155" in text and "compromised_terminal" in text and f"{tx.height:,}" in text


def test_progress_reports_every_day_then_the_final_steps() -> None:
    calls: list[tuple[int, int]] = []
    simulate(TINY, progress=lambda done, total: calls.append((done, total)))
    total = TINY.n_days + 3
    assert [done for done, _ in calls] == list(range(1, total + 1))
    assert {t for _, t in calls} == {total}


@settings(max_examples=25, deadline=None)
@given(
    n_customers=st.integers(1, 30),
    n_terminals=st.integers(1, 40),
    n_days=st.integers(1, 6),
    radius=st.floats(0.5, 150),
    profile=st.sampled_from(PROFILES),
    seed=st.integers(0, 2**32),
)
def test_any_small_world_simulates_consistently(
    n_customers: int, n_terminals: int, n_days: int, radius: float, profile: Profile, seed: int
) -> None:
    config = SimulationConfig(
        n_customers=n_customers,
        n_terminals=n_terminals,
        n_days=n_days,
        radius=radius,
        profile=profile,
        seed=seed,
    )
    result = simulate(config)
    tx = result.transactions
    assert tx["transaction_id"].to_list() == [str(i) for i in range(tx.height)]
    assert tx["timestamp"].is_sorted() and (tx["amount"] > 0).all()
    end = datetime(2018, 4, 1, tzinfo=UTC) + timedelta(days=n_days)
    assert tx.height == 0 or tx["timestamp"].max() < end  # type: ignore[operator]
    assert (tx["is_fraud"] == (tx["fraud_scenario"] > 0)).all()
    assert result.labels.height == tx["is_fraud"].sum()
    assert result.customers.height == n_customers


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [({"n_days": 0}, "n_days"), ({"radius": -1.0}, "radius"), ({"profile": "huge"}, "profile")],
)
def test_bad_config_names_the_field(kwargs: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        SimulationConfig(**kwargs)  # type: ignore[arg-type]
    assert info.value.key == key
