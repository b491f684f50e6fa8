"""The Handbook's generative model and fraud scenarios, checked statistically on seeded runs."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from fraudstream.simulate import HANDBOOK_FIGURES, Scenario, SimulationResult
from fraudstream.simulate.handbook import compromised_terminal_windows

DAY = 86_400


def _phi(z: float) -> float:
    """Standard normal CDF."""
    return (1 + math.erf(z / math.sqrt(2))) / 2


def _seconds(result: SimulationResult) -> pl.Expr:
    start = pl.lit(result.transactions["timestamp"].min()).dt.truncate("1d")
    return (pl.col("timestamp") - start).dt.total_seconds()


def _with_profiles(result: SimulationResult) -> pl.DataFrame:
    customers = result.customers.select(
        "customer_id", pl.col("x").alias("cx"), pl.col("y").alias("cy"), "mean_amount"
    )
    terminals = result.terminals.select(
        "terminal_id", pl.col("x").alias("tx"), pl.col("y").alias("ty")
    )
    return result.transactions.join(customers, on="customer_id").join(terminals, on="terminal_id")


def test_profiles_are_drawn_in_the_handbook_ranges(small: SimulationResult) -> None:
    cfg = small.config
    c = small.customers
    assert c.height == cfg.n_customers and small.terminals.height == cfg.n_terminals
    for column, low, high in [
        ("x", 0, 100),
        ("y", 0, 100),
        ("mean_amount", 5, 100),
        ("mean_nb_tx_per_day", 0, 4),
    ]:
        values = c[column].to_numpy()
        assert values.min() >= low and values.max() < high
        # uniform: the mean sits mid-range (5 standard errors of U(low, high) over 500 draws)
        assert abs(values.mean() - (low + high) / 2) < 5 * (high - low) / math.sqrt(12 * c.height)
    assert np.allclose(c["std_amount"], c["mean_amount"] / 2)
    t = small.terminals
    for column in ("x", "y"):
        values = t[column].to_numpy()
        assert values.min() >= 0 and values.max() < 100


def test_available_terminals_are_exactly_those_within_the_radius(small: SimulationResult) -> None:
    cfg = small.config
    c, t = small.customers, small.terminals
    distance = np.hypot(
        c["x"].to_numpy()[:, None] - t["x"].to_numpy()[None, :],
        c["y"].to_numpy()[:, None] - t["y"].to_numpy()[None, :],
    )
    for row, available in enumerate(c["available_terminals"].to_list()):
        expected = np.flatnonzero(distance[row] < cfg.radius)
        assert [int(i) for i in available] == expected.tolist()
    assert (c["nb_terminals"] == c["available_terminals"].list.len()).all()


def test_every_transaction_is_at_a_terminal_within_reach(small: SimulationResult) -> None:
    cfg = small.config
    tx = _with_profiles(small)
    assert tx.height == small.transactions.height
    distance = np.hypot(tx["cx"] - tx["tx"], tx["cy"] - tx["ty"])
    assert distance.max() < cfg.radius
    assert (tx["x"] == tx["tx"]).all() and (tx["y"] == tx["ty"]).all()


def test_transactions_per_day_follow_each_customers_poisson_mean(small: SimulationResult) -> None:
    cfg = small.config
    # A day keeps a transaction when its N(43200, 20000) time of day falls inside the day.
    kept = 2 * _phi(43_200 / 20_000) - 1
    counts = small.transactions.group_by("customer_id").len()
    c = small.customers.join(counts, on="customer_id", how="left").fill_null(0)
    expected = c["mean_nb_tx_per_day"].to_numpy() * cfg.n_days * kept
    observed = c["len"].to_numpy()
    assert abs(observed.sum() - expected.sum()) < 4 * math.sqrt(expected.sum())
    z = (observed - expected)[expected > 5] / np.sqrt(expected[expected > 5])
    assert abs(z.mean()) < 0.2
    assert 0.85 < z.std() < 1.15  # Poisson dispersion: neither a fixed count nor over-dispersed


def test_times_of_day_and_amounts_follow_the_profiles(small: SimulationResult) -> None:
    tx = _with_profiles(small).with_columns(tod=_seconds(small) % DAY)
    tod = tx["tod"].to_numpy()
    assert tod.min() >= 0 and tod.max() < DAY
    assert abs(tod.mean() - 43_200) < 300
    assert 17_500 < tod.std() < 19_000  # N(43200, 20000) cut to a day
    cents = (tx["amount"] * 100).round()
    assert (tx["amount"] > 0).all() and ((tx["amount"] * 100 - cents).abs() < 1e-6).all()
    genuine = tx.filter(pl.col("fraud_scenario") == Scenario.GENUINE)
    per_customer = genuine.group_by("customer_id").agg(
        pl.col("amount").mean(), pl.col("mean_amount").first()
    )
    assert np.corrcoef(per_customer["amount"], per_customer["mean_amount"])[0, 1] > 0.95
    # the low tail: N(m, m/2) below m/10, plus negative draws redrawn as U(0, 2m) (5 % of them)
    expected = _phi(-1.8) - _phi(-2) + _phi(-2) * 0.05
    low = (genuine["amount"] < genuine["mean_amount"] / 10).to_numpy().mean()
    assert low == pytest.approx(expected, abs=0.003)


def test_ids_are_integers_in_time_order(small: SimulationResult) -> None:
    tx = small.transactions
    assert tx["transaction_id"].to_list() == [str(i) for i in range(tx.height)]
    assert tx["timestamp"].is_sorted()
    assert tx["timestamp"].dtype == pl.Datetime("us", "UTC")
    assert (
        set(tx["channel"].unique()) == {"card_present"} and tx["card_id"].null_count() == tx.height
    )
    assert (tx["merchant_id"] == tx["terminal_id"]).all()


def test_every_amount_above_220_is_fraud_and_only_scenario_1_for_that_reason(
    small: SimulationResult,
) -> None:
    tx = small.transactions
    assert tx.filter(pl.col("amount") > 220)["is_fraud"].all()
    assert (tx.filter(pl.col("fraud_scenario") == 1)["amount"] > 220).all()
    assert (tx["is_fraud"] == (tx["fraud_scenario"] > 0)).all()
    assert set(tx["fraud_scenario"].unique()) == {0, 1, 2, 3}


def test_compromised_terminals_defraud_every_transaction_for_28_days(
    small: SimulationResult,
) -> None:
    cfg = small.config
    windows = compromised_terminal_windows(cfg.n_terminals, cfg.n_days, cfg.seed)
    # two new compromises a day, each lasting 28 days (overlaps merge two windows into one)
    starts = np.diff(windows.astype(np.int8), axis=1, prepend=0) == 1
    assert starts.sum() <= 2 * cfg.n_days and starts.sum() > 1.8 * cfg.n_days
    assert windows[:, 40].sum() == pytest.approx(56, abs=4)
    tx = small.transactions.with_columns(day=(_seconds(small) // DAY).cast(pl.Int64))
    inside = windows[tx["terminal_id"].cast(pl.Int64).to_numpy(), tx["day"].to_numpy()]
    scenario = tx["fraud_scenario"].to_numpy()
    assert tx["is_fraud"].to_numpy()[inside].all()
    assert (scenario[inside] >= 2).all()  # tagged 2, unless scenario 3 overrode the tag
    assert (scenario[~inside] != 2).all()


def test_compromised_customers_pay_five_times_their_amount(small: SimulationResult) -> None:
    tx = _with_profiles(small)
    cents = np.round(tx["amount"].to_numpy() * 100).astype(np.int64)
    scenario = tx["fraud_scenario"].to_numpy()
    assert (scenario == 3).sum() > 100
    assert (cents[scenario == 3] % 5 == 0).all()  # ×5 of whole cents…
    assert (cents[scenario == 0] % 5 == 0).mean() < 0.3  # …which genuine amounts are not, mostly
    s3 = tx.filter(pl.col("fraud_scenario") == 3)
    ratio = s3["amount"].to_numpy().mean() / s3["mean_amount"].to_numpy().mean()
    assert 4.0 < ratio < 6.0


def test_compromised_customers_lose_a_third_of_their_transactions(small: SimulationResult) -> None:
    cfg = small.config
    # each day 3 customers × their daily rate × 14 days (cut at the end of the run) / 3
    window_days = sum(min(14, cfg.n_days - day) for day in range(cfg.n_days))
    kept = 2 * _phi(43_200 / 20_000) - 1
    expected = small.customers["mean_nb_tx_per_day"].to_numpy().mean() * kept * window_days
    observed = (small.transactions["fraud_scenario"] == 3).sum()
    assert observed == pytest.approx(expected, rel=0.2)


def test_default_run_reproduces_the_handbook_figures(default_handbook: SimulationResult) -> None:
    tx = default_handbook.transactions
    frauds = int(tx["is_fraud"].sum())
    assert tx.height == pytest.approx(HANDBOOK_FIGURES["transactions"], rel=0.03)
    assert frauds == pytest.approx(HANDBOOK_FIGURES["frauds"], rel=0.1)
    assert 0.007 < frauds / tx.height < 0.01
    by = dict(tx.group_by("fraud_scenario").len().iter_rows())
    assert by[2] > by[3] > by[1] > 0  # terminals dominate, then customers, then high amounts
