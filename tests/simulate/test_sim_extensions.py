"""The ``full`` profile: e-commerce identities and each extension fraud pattern."""

from __future__ import annotations

import dataclasses

import polars as pl
import pytest

from fraudstream.errors import ConfigError
from fraudstream.simulate import Extensions, Scenario, SimulationConfig, SimulationResult, simulate


def _scenario(result: SimulationResult, scenario: Scenario) -> pl.DataFrame:
    return result.transactions.filter(pl.col("fraud_scenario") == int(scenario))


def _minutes(column: str = "timestamp") -> pl.Expr:
    return (pl.col(column).max() - pl.col(column).min()).dt.total_seconds() / 60


def test_every_extension_is_present_and_tagged(small_full: SimulationResult) -> None:
    counts = dict(small_full.transactions.group_by("fraud_scenario").len().iter_rows())
    assert set(counts) == {int(s) for s in Scenario}
    tx = small_full.transactions
    assert (tx["is_fraud"] == (tx["fraud_scenario"] > 0)).all()
    assert tx["timestamp"].is_sorted()
    assert tx["transaction_id"].to_list() == [str(i) for i in range(tx.height)]


def test_online_purchases_use_the_customers_own_identities(small_full: SimulationResult) -> None:
    tx = small_full.transactions.filter(pl.col("fraud_scenario") == 0)
    online = tx.filter(pl.col("channel") == "ecommerce")
    assert online.height / tx.height == pytest.approx(0.3, abs=0.02)
    for column in (
        "card_id",
        "ip",
        "device_id",
        "email",
        "mcc",
        "product_category",
        "product_subcategory",
    ):
        assert online[column].null_count() == 0, column
    in_store = tx.filter(pl.col("channel") == "card_present")
    for column in ("ip", "device_id", "email", "product_subcategory"):
        assert in_store[column].null_count() == in_store.height, column
    assert in_store["card_id"].null_count() == 0
    joined = tx.join(small_full.customers, on="customer_id", suffix="_c")
    assert joined.select(pl.col("card_ids").list.contains(pl.col("card_id")).all()).item()
    online_joined = joined.filter(pl.col("channel") == "ecommerce")
    checks = online_joined.select(
        device=pl.col("device_ids").list.contains(pl.col("device_id")).all(),
        habit=pl.col("habitual_categories").list.contains(pl.col("product_category")).all(),
        email=(pl.col("email") == pl.col("email_c")).all(),
        home=(pl.col("ip") == pl.col("home_ip")).mean(),
    ).row(0, named=True)
    assert checks["device"] and checks["habit"] and checks["email"]
    assert checks["home"] == pytest.approx(0.9, abs=0.02)


def test_card_testing_is_a_burst_of_tiny_amounts_on_one_merchant(
    small_full: SimulationResult,
) -> None:
    probes = _scenario(small_full, Scenario.CARD_TESTING).filter(pl.col("amount") <= 2)
    bursts = probes.group_by("ip").agg(
        pl.len(),
        pl.col("terminal_id").n_unique().alias("merchants"),
        pl.col("card_id").n_unique().alias("cards"),
        _minutes().alias("minutes"),
        pl.col("amount").min().alias("low"),
        pl.col("product_category").first(),
    )
    assert bursts.height > 20
    assert (
        (bursts["len"] >= 5).all()
        and (bursts["merchants"] == 1).all()
        and (bursts["cards"] == 1).all()
    )
    assert (bursts["minutes"] < 30).all() and (bursts["low"] >= 0.5).all()
    assert (bursts["product_category"] == "digital_goods").all()


def test_account_takeover_is_new_device_new_ip_unusual_category_high_amount(
    small_full: SimulationResult,
) -> None:
    ato = _scenario(small_full, Scenario.ACCOUNT_TAKEOVER).join(
        small_full.customers, on="customer_id", suffix="_c"
    )
    assert ato.height > 50
    checks = ato.select(
        new_device=~pl.col("device_ids").list.contains(pl.col("device_id")),
        new_ip=pl.col("ip") != pl.col("home_ip"),
        unusual=~pl.col("habitual_categories").list.contains(pl.col("product_category")),
        high=(pl.col("amount") >= 150) & (pl.col("amount") >= 3 * pl.col("mean_amount") - 0.01),
        own_card=pl.col("card_ids").list.contains(pl.col("card_id")),
        own_email=pl.col("email") == pl.col("email_c"),
    )
    for column in checks.columns:
        assert checks[column].all(), column


def test_impossible_travel_follows_a_genuine_payment_far_away_within_minutes(
    small_full: SimulationResult,
) -> None:
    tx = small_full.transactions
    travel = _scenario(small_full, Scenario.IMPOSSIBLE_TRAVEL).select(
        "transaction_id", "card_id", "timestamp", "x", "y", "channel"
    )
    assert travel.height > 100 and (travel["channel"] == "card_present").all()
    # the holder's own payment: genuine, or overcharged later by a quietly skimmed terminal
    holder = pl.col("fraud_scenario").is_in([0, int(Scenario.QUIET_SKIMMING)])
    genuine = tx.filter(holder & (pl.col("channel") == "card_present"))
    pairs = travel.join(genuine.select("card_id", "timestamp", "x", "y"), on="card_id", suffix="_g")
    gap = (pl.col("timestamp") - pl.col("timestamp_g")).dt.total_seconds()
    distance = ((pl.col("x") - pl.col("x_g")) ** 2 + (pl.col("y") - pl.col("y_g")) ** 2).sqrt()
    explained = pairs.filter(gap.is_between(120, 1800) & (distance >= 50))
    assert explained["transaction_id"].n_unique() == travel.height


def test_bot_bursts_pay_for_many_customers_from_one_ip(small_full: SimulationResult) -> None:
    bursts = (
        _scenario(small_full, Scenario.BOT_BURST)
        .group_by("ip")
        .agg(
            pl.len(),
            pl.col("customer_id").n_unique().alias("customers"),
            pl.col("device_id").n_unique().alias("devices"),
            pl.col("terminal_id").n_unique().alias("merchants"),
            _minutes().alias("minutes"),
        )
    )
    assert bursts.height >= 5
    assert (bursts["len"] >= 20).all() and (bursts["customers"] == bursts["len"]).all()
    assert (bursts["merchants"] <= 3).all() and (bursts["minutes"] <= 10).all()


def test_default_full_profile_fraud_rate_stays_plausible() -> None:
    tx = simulate(SimulationConfig(profile="full")).transactions
    assert 0.01 < tx["is_fraud"].to_numpy().mean() < 0.02
    shares = tx.filter(pl.col("is_fraud"))["fraud_scenario"].value_counts(normalize=True)
    assert (shares["proportion"] < 0.5).all()  # no single pattern dominates


def test_extensions_can_be_switched_off_without_touching_the_rest(
    small_full: SimulationResult,
) -> None:
    config = dataclasses.replace(
        small_full.config, extensions=small_full.config.extensions.disabled(["card_testing"])
    )
    without = simulate(config)
    assert (without.transactions["fraud_scenario"] == Scenario.CARD_TESTING).sum() == 0
    key = ["timestamp", "customer_id", "amount", "fraud_scenario"]
    handbook_part = pl.col("fraud_scenario").is_between(0, 3)
    assert (
        without.transactions.filter(handbook_part)
        .select(key)
        .equals(small_full.transactions.filter(handbook_part).select(key))
    )


def test_unknown_extension_names_are_rejected() -> None:
    with pytest.raises(ConfigError, match="bogus"):
        Extensions().disabled(["bogus"])
    with pytest.raises(ConfigError, match="ecommerce_share"):
        Extensions(ecommerce_share=1.5)
