"""The attacks only customer, terminal, amount and time reveal: each has its signature in
those four fields, is switched off by its name, and is drawn the same under the same seed."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from clikit import run_cli
from fraudstream.errors import ConfigError
from fraudstream.simulate import Extensions, Scenario, SimulationResult, simulate
from fraudstream.simulate.arrays import Stream, rng
from fraudstream.simulate.handbook import apply_handbook_frauds, generate_transactions
from fraudstream.simulate.profiles import make_customers, make_terminals
from fraudstream.simulate.scenarios import HIGH_AMOUNT_THRESHOLD
from fraudstream.simulate.stealth import skim_quietly, skimmed_windows

STEALTH = (Scenario.LOW_AND_SLOW_TAKEOVER, Scenario.QUIET_SKIMMING, Scenario.BUST_OUT)
HANDBOOK_FIELDS = ("ip", "device_id", "email", "product_subcategory")
"""Fields a Handbook-format file does not have: these attacks leave them empty."""


def _scenario(result: SimulationResult, scenario: Scenario) -> pl.DataFrame:
    return result.transactions.filter(pl.col("fraud_scenario") == int(scenario))


def _day() -> pl.Expr:
    return pl.col("timestamp").dt.date()


def test_they_are_card_present_payments_with_no_identity_fields(
    small_full: SimulationResult,
) -> None:
    for scenario in STEALTH:
        rows = _scenario(small_full, scenario)
        assert rows.height > 100, scenario.name
        assert (rows["channel"] == "card_present").all()
        assert (rows["terminal_id"].cast(pl.Int64) < small_full.config.n_terminals).all()
        for column in HANDBOOK_FIELDS:
            assert rows[column].null_count() == rows.height, (scenario.name, column)


def test_takeover_pays_at_terminals_the_customer_never_uses_at_usual_amounts_and_hours(
    small_full: SimulationResult,
) -> None:
    tx = small_full.transactions
    takeover = _scenario(small_full, Scenario.LOW_AND_SLOW_TAKEOVER)
    others = tx.filter(pl.col("fraud_scenario") != int(Scenario.LOW_AND_SLOW_TAKEOVER))
    used = others.select("customer_id", "terminal_id").unique()
    assert takeover.join(used, on=["customer_id", "terminal_id"], how="semi").height == 0
    joined = takeover.join(small_full.customers, on="customer_id", suffix="_c")
    ratio = (joined["amount"] / joined["mean_amount"]).mean()
    assert ratio == pytest.approx(1.0, abs=0.1)  # the customer's own amounts
    assert joined.select(pl.col("card_ids").list.contains(pl.col("card_id")).all()).item()
    hours = takeover["timestamp"].dt.hour().cast(pl.Float64)
    assert hours.mean() == pytest.approx(12.0, abs=1.0)  # as genuine payments, around noon
    per_day = takeover.group_by("customer_id", _day()).len()["len"]
    assert 1.5 < per_day.to_numpy().mean() < 3.5  # a few a day
    days = takeover.group_by("customer_id").agg(_day().n_unique())["timestamp"].to_numpy()
    assert 2 <= np.median(days) <= 5 and days.max() <= 5  # one takeover per card: 2-5 days


def _windows(result: SimulationResult) -> np.ndarray:
    config = result.config
    gen = rng(config.seed, Stream.QUIET_SKIMMING)
    return skimmed_windows(gen, config.n_terminals, config.n_days, config.extensions)


def test_skimming_turns_a_share_of_the_terminals_payments_not_all(
    small_full: SimulationResult,
) -> None:
    windows = _windows(small_full)
    start = datetime.combine(small_full.config.start_date, time(), UTC)
    tx = small_full.transactions.with_columns(
        pl.col("terminal_id").cast(pl.Int64).alias("t"),
        (pl.col("timestamp") - pl.lit(start)).dt.total_days().cast(pl.Int64).alias("d"),
    ).filter(pl.col("t") < small_full.config.n_terminals)
    inside = tx.filter(pl.Series(windows[tx["t"].to_numpy(), tx["d"].to_numpy()]))
    skimmed = inside.filter(pl.col("fraud_scenario") == int(Scenario.QUIET_SKIMMING))
    assert skimmed.height == _scenario(small_full, Scenario.QUIET_SKIMMING).height  # all inside
    candidates = inside.filter(pl.col("fraud_scenario").is_in([0, int(Scenario.QUIET_SKIMMING)]))
    assert skimmed.height / candidates.height == pytest.approx(0.3, abs=0.05)
    per_terminal = candidates.group_by("t").agg(
        (pl.col("fraud_scenario") > 0).mean().alias("share"), pl.len()
    )
    busy = per_terminal.filter(pl.col("len") >= 10)
    assert busy.height > 20 and (busy["share"] < 1).all()  # the terminal keeps genuine payments


def test_skimming_raises_the_amount_of_the_payments_it_turns() -> None:
    terminals = make_terminals(300, 1)
    customers = make_customers(200, terminals, 5.0, 1)
    tx = generate_transactions(customers, terminals, 40, 1)
    apply_handbook_frauds(tx, 200, 300, 40, 1)
    before = dataclasses.replace(tx, **{f: getattr(tx, f).copy() for f in ("amount", "scenario")})
    ext = Extensions(quiet_skimming_amount_factor=1.5)
    skim_quietly(tx, 300, 40, 1, ext)
    turned = tx.scenario == Scenario.QUIET_SKIMMING
    assert turned.sum() > 50 and (before.scenario[turned] == 0).all()
    np.testing.assert_array_equal(tx.amount[turned], np.round(before.amount[turned] * 1.5, 2))
    np.testing.assert_array_equal(tx.amount[~turned], before.amount[~turned])
    np.testing.assert_array_equal(tx.scenario[~turned], before.scenario[~turned])
    assert tx.is_fraud[turned].all()


def test_bust_out_ramps_day_after_day_to_just_under_the_amount_limit(
    small_full: SimulationResult,
) -> None:
    ramps = _scenario(small_full, Scenario.BUST_OUT)
    assert (ramps["amount"] < HIGH_AMOUNT_THRESHOLD).all()
    daily = (
        ramps.group_by("customer_id", _day().alias("day"))
        .agg(pl.col("amount").min().alias("low"), pl.col("amount").max().alias("high"))
        .sort("customer_id", "day")
        .with_columns(
            pl.col("high").shift(1).over("customer_id").alias("before"),
            (pl.col("day").diff().over("customer_id").dt.total_days() == 1).alias("next_day"),
        )
    )
    steps = daily.filter(pl.col("next_day"))
    assert steps.height > 100
    assert (steps["low"] > steps["before"]).all()  # every day dearer than the day before
    peaks = daily.group_by("customer_id").agg(pl.col("high").max())["high"]
    assert (peaks.to_numpy() > 0.85 * HIGH_AMOUNT_THRESHOLD).mean() > 0.8  # ramps end near 220
    first = (
        ramps.join(small_full.customers, on="customer_id")
        .group_by("customer_id")
        .agg(pl.col("amount").sort_by("timestamp").first(), pl.col("mean_amount").first())
    )
    assert (
        first["amount"] <= first["mean_amount"] + 0.01
    ).to_numpy().mean() > 0.9  # from the usual


@pytest.mark.parametrize(
    ("name", "scenario"),
    [
        ("low_and_slow_takeover", Scenario.LOW_AND_SLOW_TAKEOVER),
        ("quiet_skimming", Scenario.QUIET_SKIMMING),
        ("bust_out", Scenario.BUST_OUT),
    ],
)
def test_switching_one_off_removes_it_and_leaves_the_rest(
    small_full: SimulationResult, name: str, scenario: Scenario
) -> None:
    config = small_full.config
    off = dataclasses.replace(config, extensions=config.extensions.disabled([name]))
    without = simulate(off).transactions
    tx = small_full.transactions
    assert (without["fraud_scenario"] == int(scenario)).sum() == 0
    key = ["timestamp", "customer_id", "terminal_id", "amount", "card_id", "device_id", "ip"]
    turned = [int(scenario)] + ([0] if scenario == Scenario.QUIET_SKIMMING else [])
    kept = ~pl.col("fraud_scenario").is_in(turned)
    assert without.filter(kept).select(key).equals(tx.filter(kept).select(key))
    added = 0 if scenario == Scenario.QUIET_SKIMMING else (tx["fraud_scenario"] == scenario).sum()
    assert without.height == tx.height - added


def test_same_seed_same_attacks(small_full: SimulationResult) -> None:
    again = simulate(small_full.config).transactions
    mine = pl.col("fraud_scenario").is_in([int(s) for s in STEALTH])
    assert again.filter(mine).equals(small_full.transactions.filter(mine))


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"low_and_slow_takeover_per_day": -1.0}, "low_and_slow_takeover_per_day"),
        ({"low_and_slow_takeover_days": (3, 2)}, "low_and_slow_takeover_days"),
        ({"bust_out_days": (1, 5)}, "bust_out_days"),
        ({"bust_out_tx_per_day": 0.5}, "bust_out_tx_per_day"),
        ({"quiet_skimming_fraction": 0.0}, "quiet_skimming_fraction"),
        ({"quiet_skimming_amount_factor": 0.9}, "quiet_skimming_amount_factor"),
        ({"quiet_skimming_days": 0}, "quiet_skimming_days"),
    ],
)
def test_bad_attack_settings_name_the_field(kwargs: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        Extensions(**kwargs)  # type: ignore[arg-type]
    assert info.value.key == key


def test_the_summary_names_them_and_the_cli_switches_them_off(tmp_path: Path) -> None:
    small = ("--customers", "200", "--terminals", "400", "--days", "30", "--json")
    on = run_cli("simulate", "--profile", "full", "--out", str(tmp_path / "on"), *small)
    assert on.returncode == 0, on.stderr
    counts = {k: v["count"] for k, v in json.loads(on.stdout)["scenarios"].items()}
    assert all(counts[s.name.lower()] > 0 for s in STEALTH), counts
    args = ("--without", "bust_out", "--without", "quiet_skimming")
    off = run_cli("simulate", "--profile", "full", "--out", str(tmp_path / "off"), *small, *args)
    assert off.returncode == 0, off.stderr
    names = set(json.loads(off.stdout)["scenarios"])
    assert "low_and_slow_takeover" in names and not names & {"bust_out", "quiet_skimming"}
    table = run_cli("simulate", "--profile", "full", "--out", str(tmp_path / "t"), *small[:-1])
    assert all(s.name.lower() in table.stdout for s in STEALTH), table.stdout
