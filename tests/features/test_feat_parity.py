"""Online = offline: a history replayed through the engine equals its backfill.

The replay is in event-time order with labels interleaved at their ``reported_at`` (a label
reported at the same instant as a transaction is known to it), in batches of up to
``BATCH`` transactions, so one batch often holds several transactions of one customer,
card, device or terminal.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest
import redis

from featkit import transactions
from fraudstream.features import Aggregate, FeatureEngine, FeatureSet, backfill, default_feature_set
from fraudstream.features.definitions import ENTITIES, FirstSeen
from fraudstream.features.neighbours import build_neighbourhood, load_neighbours
from fraudstream.features.profiles import load_profiles
from fraudstream.features.sample import synthetic_history
from fraudstream.schema import AMOUNT_CEILING, Label

BATCH = 400
LABEL_FIELDS = set(Label.__struct_fields__)


def labels_of(frame: pl.DataFrame) -> list[Label]:
    cols = [c for c in frame.columns if c in LABEL_FIELDS]
    rows = frame.select(cols).iter_rows(named=True)
    return [Label(**{k: v for k, v in row.items() if v is not None}) for row in rows]


def replay_batches(
    history: pl.DataFrame, labels: pl.DataFrame, batch: int, arrival: str = "timestamp"
) -> Iterator[tuple[list[int], list[Label]]]:
    """(row positions of a transaction batch, labels to apply before it), in the order of
    the ``arrival`` column (event time unless told), labels at their ``reported_at``."""
    order = history.with_row_index("_pos").sort(arrival, maintain_order=True)
    ts = order[arrival].to_list()
    pos = order["_pos"].to_list()
    labs = labels.sort("reported_at", maintain_order=True)
    rep = labs["reported_at"].to_list()
    label_objs = labels_of(labs)
    li = 0
    i = 0
    while i < len(ts):
        due: list[Label] = []
        while li < len(rep) and rep[li] <= ts[i]:
            due.append(label_objs[li])
            li += 1
        j = i
        limit = rep[li] if li < len(rep) else None
        while j < len(ts) and j - i < batch and (limit is None or ts[j] < limit):
            j += 1
        yield pos[i:j], due
        i = j


def run_online(
    engine: FeatureEngine,
    history: pl.DataFrame,
    labels: pl.DataFrame,
    batch: int = BATCH,
    arrival: str = "timestamp",
) -> np.ndarray:
    txs = transactions(history)
    out = np.full((len(txs), len(engine.names)), np.nan)
    sizes = []
    for rows, due in replay_batches(history, labels, batch, arrival):
        engine.apply_labels(due)
        out[rows] = engine.compute_batch([txs[r] for r in rows])
        sizes.append(len(rows))
    assert max(sizes) == batch
    return out


def assert_same(
    names: list[str], online: np.ndarray, offline: np.ndarray, where: np.ndarray | None = None
) -> None:
    """Equal (to rounding of the last bit) where ``where`` says (everywhere by default)."""
    close = np.isclose(online, offline, rtol=1e-9, atol=0.0, equal_nan=True)
    if where is not None:
        close |= ~where
    bad = {names[j]: int((~close[:, j]).sum()) for j in range(len(names)) if not close[:, j].all()}
    if bad:
        j = names.index(next(iter(bad)))
        i = int(np.flatnonzero(~close[:, j])[0])
        detail = f"first: row {i} {names[j]} online={online[i, j]!r} offline={offline[i, j]!r}"
        pytest.fail(f"online != offline for {bad}; {detail}")


@pytest.mark.integration
def test_online_equals_backfill_on_synthetic_history(client: redis.Redis) -> None:
    history, labels = synthetic_history(n_customers=500, n_terminals=400, n_days=31, seed=7)
    engine = FeatureEngine(client, default_feature_set(), clock=lambda: 2e9)
    online = run_online(engine, history, labels)
    offline = backfill(history, labels).drop("transaction_id").to_numpy()
    assert engine.stats.duplicates == engine.stats.late == 0
    assert engine.stats.labels_applied > 50
    assert engine.stats.labels_duplicate > 0
    for name in ("terminal_risk_30d_delay7d", "terminal_days_since_last_fraud", "card_tx_count_1h"):
        j = engine.names.index(name)
        assert np.nanmax(offline[:, j]) > 0, name
    assert_same(engine.names, online, offline)


@pytest.mark.integration
def test_online_equals_backfill_on_simulated_history(client: redis.Redis) -> None:
    from fraudstream.simulate import SimulationConfig, simulate

    config = SimulationConfig(n_customers=500, n_terminals=1000, n_days=31, profile="full", seed=5)
    result = simulate(config)
    history, labels = result.transactions, result.labels
    assert set(history["channel"].unique()) == {"card_present", "ecommerce"}
    # Static profiles for all but a tenth of the customers (those read as "no profile").
    profiles = result.customers.filter(pl.col("customer_id").cast(pl.Int64) % 10 != 3)
    load_profiles(client, profiles)
    # The co-visitation neighbourhood of the first 15 days (hubs: the e-commerce merchants
    # and the busiest terminals), as `features load-neighbours` writes it.
    first: datetime = history["timestamp"].min()  # type: ignore[assignment]
    until = first + timedelta(days=15)
    hood = build_neighbourhood(history, until, days=15, labels=labels, hub_customers=20)
    assert hood.hub.any() and not hood.hub.all()
    load_neighbours(client, hood)
    engine = FeatureEngine(client, default_feature_set(), clock=lambda: 2e9)
    online = run_online(engine, history, labels)
    back = backfill(history, labels, profiles=profiles, neighbours=hood)
    offline = back.drop("transaction_id").to_numpy()
    share = offline[:, engine.names.index("terminal_covisit_share")]
    assert np.nanmin(share) == 0.0 and np.nanmax(share) == 1.0 and np.isnan(share).any()
    assert engine.stats.labels_applied > 100
    assert engine.stats.duplicates == engine.stats.late == 0
    for name in (
        "terminal_risk_7d_delay7d",
        "ip_tx_count_1h",
        "customer_impossible_travel",
        "is_first_seen_terminal",
        "customer_new_terminal_tx_count_7d",
        "customer_rising_days_14d",
        "customer_profile_segment",
        "customer_distance_from_profile_home",
        "customer_is_preferred_card",
    ):
        j = engine.names.index(name)
        assert np.nanmax(offline[:, j]) > 0, name
    unprofiled = (history["customer_id"].cast(pl.Int64) % 10 == 3).to_numpy()
    segment = online[:, engine.names.index("customer_profile_segment")]
    assert np.isnan(segment[unprofiled]).all() and not np.isnan(segment[~unprofiled]).any()
    assert_same(engine.names, online, offline)


TINY = FeatureSet(
    (Aggregate("customer", "count", "1h"),),
    first_seen=(
        FirstSeen("merchant", words=1, fp_rate=0.3),
        FirstSeen("product_category", words=1, fp_rate=0.2),
        FirstSeen("device", words=2),
        FirstSeen("ip", words=1, fp_rate=0.3),
    ),
)
"""Filters small enough that the synthetic history fills them: exact sets turn into Bloom
filters, generations rotate, and false positives happen."""


def exact_first_seen(history: pl.DataFrame, field: str) -> np.ndarray:
    """1 where the customer never used the value before (processing order), NaN where none."""
    frame = history.with_row_index("_i").sort("timestamp", "_i")
    first = frame.select(
        "_i",
        pl.when(pl.col(field).is_null())
        .then(None)
        .otherwise((pl.int_range(pl.len()).over("customer_id", field) == 0).cast(pl.Float64))
        .alias("f"),
    ).sort("_i")
    return first["f"].to_numpy().astype(np.float64)


@pytest.mark.integration
def test_online_equals_backfill_with_full_filters(client: redis.Redis) -> None:
    history, labels = synthetic_history(n_customers=150, n_terminals=120, n_days=31, seed=9)
    e = FeatureEngine(client, TINY, clock=lambda: 2e9)
    online = run_online(e, history, labels, batch=100)
    offline = backfill(history, labels, TINY).drop("transaction_id").to_numpy()
    assert_same(e.names, online, offline)
    false_pos: dict[str, int] = {}
    for spec in TINY.first_seen:
        got = offline[:, e.names.index(spec.name)]
        truth = exact_first_seen(history, spec.field)
        assert np.array_equal(np.isnan(got), np.isnan(truth)), spec.name
        false_pos[spec.what] = int(((got == 0) & (truth == 1)).sum())
    assert false_pos["merchant"] > 0 and false_pos["ip"] > 0, false_pos


EXTREMES = FeatureSet(
    (
        Aggregate("customer", "min", "24h"),
        Aggregate("customer", "max", "7d"),
        Aggregate("customer", "max", "2d", delay="1d"),
        Aggregate("customer", "distinct", "24h", of="merchant"),
        Aggregate("customer", "distinct", "7d", of="terminal"),
        Aggregate("customer", "distinct", "1h", of="card", where="ecommerce"),
        Aggregate("customer", "count", "24h"),
    )
)


@pytest.mark.integration
def test_online_equals_backfill_for_min_max_distinct(client: redis.Redis) -> None:
    from fraudstream.simulate import SimulationConfig, simulate

    config = SimulationConfig(n_customers=300, n_terminals=600, n_days=12, profile="full", seed=2)
    result = simulate(config)
    history, labels = result.transactions, result.labels
    e = FeatureEngine(client, EXTREMES, clock=lambda: 2e9)
    online = run_online(e, history, labels, batch=200)
    offline = backfill(history, labels, EXTREMES).drop("transaction_id").to_numpy()
    assert_same(e.names, online, offline)
    # Against a brute force over the window's tiles for a sample of transactions.
    frame = history.with_row_index("_i").sort("timestamp", "_i").with_row_index("_order")
    day = pl.col("timestamp").dt.truncate("1d")
    hour = pl.col("timestamp").dt.truncate("1h")
    for row in frame.sample(200, seed=1).iter_rows(named=True):
        mine = frame.filter(
            (pl.col("customer_id") == row["customer_id"]) & (pl.col("_order") <= row["_order"])
        )
        t = row["timestamp"]
        week = mine.filter(day >= t.replace(hour=0, minute=0, second=0) - timedelta(days=6))
        got_max = online[row["_i"], e.names.index("customer_amount_max_7d")]
        assert got_max == pytest.approx(week["amount"].max()), row
        this_hour = t.replace(minute=0, second=0, microsecond=0)
        day_tiles = mine.filter(hour >= this_hour - timedelta(hours=23))
        got_min = online[row["_i"], e.names.index("customer_amount_min_24h")]
        assert got_min == pytest.approx(day_tiles["amount"].min()), row
        exact = day_tiles["merchant_id"].n_unique()
        estimate = online[row["_i"], e.names.index("customer_distinct_merchant_24h")]
        assert abs(estimate - exact) <= 0.25 * exact + 0.5, (estimate, exact)


@pytest.mark.integration
def test_online_equals_backfill_on_a_cluster(
    cluster_client: redis.RedisCluster, cluster_nodes: list[redis.Redis]
) -> None:
    history, labels = synthetic_history(n_customers=200, n_terminals=150, n_days=31, seed=11)
    engine = FeatureEngine(cluster_client, default_feature_set(), clock=lambda: 2e9)
    assert engine.cluster
    online = run_online(engine, history, labels, batch=200)
    offline = backfill(history, labels).drop("transaction_id").to_numpy()
    assert engine.stats.labels_applied > 20
    assert_same(engine.names, online, offline)
    sizes = [node.dbsize() for node in cluster_nodes]
    assert min(sizes) > 0.2 * max(sizes), sizes  # spread over the nodes by hash tag
    assert engine.sweep() > 0 and sum(node.dbsize() for node in cluster_nodes) < sum(sizes)


def with_probes(arrived: pl.DataFrame) -> pl.DataFrame:
    """One more transaction per customer, on time, an hour after the history's end: its
    features read the state everything before it left."""
    end = arrived["timestamp"].max()
    assert isinstance(end, datetime)
    last = arrived.sort("timestamp").group_by("customer_id", maintain_order=True).last()
    at = pl.lit(end + timedelta(hours=1)).dt.cast_time_unit("us")
    probes = last.with_columns(
        ("probe-" + pl.col("customer_id").cast(pl.String)).alias("transaction_id"),
        at.alias("timestamp"),
        at.alias("arrival"),
        pl.lit(False).alias("late"),
    ).select(arrived.columns)
    return pl.concat([arrived, probes.cast(arrived.schema)])


def arriving_late(history: pl.DataFrame, share: float, seed: int) -> pl.DataFrame:
    """``history`` with an ``arrival`` time: a ``share`` of its transactions arrive up to
    50 minutes after their event time (within the lateness), the others on time."""
    rng = np.random.default_rng(seed)
    n = history.height
    late = rng.random(n) < share
    delay = np.where(late, rng.integers(1, 3000 * 1_000_000, n), 0)
    return history.with_columns(
        pl.Series("late", late),
        (pl.col("timestamp") + pl.Series(delay).cast(pl.Duration("us"))).alias("arrival"),
    )


def in_order(arrived: pl.DataFrame, column: str) -> np.ndarray:
    """Per row: the transactions of its ``column`` entity that arrived before it are exactly
    those before it in event time (``(timestamp, row)``), so its features have one meaning
    (rows without the entity: True)."""
    frame = arrived.with_row_index("_i").select("_i", column, "timestamp", "arrival")
    by_event = frame.sort("timestamp", "_i").with_columns(
        pl.int_range(pl.len()).over(column).alias("_rank")
    )
    by_arrival = by_event.sort("arrival", "_i").with_columns(
        pl.int_range(pl.len()).over(column).alias("_pos"),
        pl.col("_rank").cum_max().over(column).alias("_max"),
    )
    first = (pl.col("_rank") == pl.col("_pos")) & (pl.col("_max") == pl.col("_pos"))
    ok = by_arrival.select("_i", (pl.col(column).is_null() | first).alias("ok"))
    return ok.sort("_i")["ok"].to_numpy()


def entity_of(name: str) -> str | None:
    """The entity whose transactions a feature reads (None: the transaction's own)."""
    if name.startswith("is_first_seen_"):
        return "customer"
    head = name.split("_", 1)[0]
    return head if head in ENTITIES else None


def follows_arrival(name: str) -> bool:
    """Features counting the transactions at terminals new to their customer."""
    return name.startswith("customer_new_terminal_")


@pytest.mark.integration
def test_online_equals_backfill_when_transactions_arrive_late(client: redis.Redis) -> None:
    """Arrival shuffled within the lateness: every transaction whose entities' earlier
    transactions all arrived before it (and no later one did) gets the backfill's features
    (the late ones and those overtaken by one cannot, see `fraudstream.features`), and a
    transaction after everything sees the state the backfill builds."""
    history, labels = synthetic_history(n_customers=300, n_terminals=250, n_days=31, seed=13)
    arrived = with_probes(arriving_late(history, share=0.1, seed=13))
    # Rows in arrival order: transactions at the same instant are then in the same order
    # for both paths (the backfill takes the input order, the engine the arrival order).
    arrived = arrived.sort("arrival", maintain_order=True)
    history = arrived.drop("late", "arrival")
    engine = FeatureEngine(client, default_feature_set(), clock=lambda: 2e9)
    online = run_online(engine, arrived, labels, batch=200, arrival="arrival")
    offline = backfill(history, labels).drop("transaction_id").to_numpy()
    assert engine.stats.late == engine.stats.duplicates == 0
    clean = {e: in_order(arrived, column) for e, column in ENTITIES.items()}
    every = np.ones(history.height, dtype=bool)
    where = np.column_stack([clean.get(entity_of(n) or "", every) for n in engine.names])
    mixed = ~clean["customer"]  # arrived late, or before an earlier one of its customer
    after_mixed = (
        arrived.with_columns(pl.Series("_m", mixed))
        .with_row_index("_i")
        .sort("arrival", "_i")
        .with_columns((pl.col("_m").cum_sum().over("customer_id") - pl.col("_m")).alias("_n"))
        .sort("_i")["_n"]
        .to_numpy()
        > 0
    )
    assert mixed.sum() > 250 and (after_mixed & ~mixed).sum() > 3000
    assert where.mean() > 0.9
    probes = arrived["transaction_id"].str.starts_with("probe-").to_numpy()
    assert where[probes].all()
    # Counts at first-seen terminals keep each transaction's flag as it was processed: the
    # first *arrival* at a terminal is the new one, so they agree once every earlier
    # transaction of the customer arrived in event-time order (see `fraudstream.features`).
    in_arrival_order = clean["customer"] & ~after_mixed
    for j, name in enumerate(engine.names):
        if follows_arrival(name):
            where[:, j] &= in_arrival_order
    assert in_arrival_order.mean() > 0.5
    assert_same(engine.names, online, offline, where)
    since = online[:, engine.names.index("customer_seconds_since_last_tx")]
    assert (since[~np.isnan(since)] >= 0).all()


@pytest.mark.integration
def test_online_equals_backfill_with_zero_and_ceiling_amounts(client: redis.Redis) -> None:
    """Zero amounts (valid), and amounts at the schema's ceiling whose sums saturate in
    state: both paths clip and saturate alike."""
    history, labels = synthetic_history(n_customers=150, n_terminals=120, n_days=20, seed=17)
    rng = np.random.default_rng(17)
    pick = rng.random(history.height)
    amount = np.where(pick < 0.08, 0.0, history["amount"].to_numpy())
    amount = np.where(pick > 0.995, AMOUNT_CEILING, amount)
    history = history.with_columns(pl.Series("amount", amount))
    engine = FeatureEngine(client, default_feature_set(), clock=lambda: 2e9)
    online = run_online(engine, history, labels, batch=150)
    offline = backfill(history, labels).drop("transaction_id").to_numpy()
    assert_same(engine.names, online, offline)
    sums = offline[:, engine.names.index("customer_amount_sum_24h")]
    assert sums.max() == (2**39 - 1) / 100 and (sums == 0).any()


HANDBOOK_COLUMNS = ("transaction_id", "timestamp", "customer_id", "terminal_id", "amount")


@pytest.mark.integration
def test_online_equals_backfill_on_handbook_columns_only(client: redis.Redis) -> None:
    """The Handbook's data: customer, terminal, amount and time, nothing else (no channel,
    card, device, IP, merchant, place). The features of place novelty, terminal traffic and
    trends are computed from those alone, alike both ways; a sample of the counts at
    first-seen terminals checked against a brute force over the window's day tiles."""
    from fraudstream.simulate import SimulationConfig, simulate

    config = SimulationConfig(n_customers=400, n_terminals=2000, n_days=40, seed=3)
    result = simulate(config)
    history = result.transactions.select(HANDBOOK_COLUMNS)
    labels = result.labels
    # What the schema makes of such a row online (the backfill assumes the same).
    as_sent = history.with_columns(
        pl.col("terminal_id").alias("merchant_id"),
        pl.lit("EUR").alias("currency"),
        pl.lit("card_present").alias("channel"),
    )
    engine = FeatureEngine(client, default_feature_set(), clock=lambda: 2e9)
    online = run_online(engine, as_sent, labels, batch=300)
    offline = backfill(history, labels).drop("transaction_id").to_numpy()
    assert_same(engine.names, online, offline)
    col = {name: offline[:, j] for j, name in enumerate(engine.names)}
    first = col["is_first_seen_terminal"]
    assert not np.isnan(first).any() and 0.05 < first.mean() < 0.9
    assert np.isnan(col["is_first_seen_ip"]).all()  # no such column: NaN, not "new"
    for name in (
        "customer_new_terminal_tx_count_1d",
        "customer_new_terminal_share_7d",
        "customer_amount_mean_ratio_3d_30d",
        "terminal_amount_mean_ratio_7d_28d",
        "terminal_amount_ratio_mean_28d",
        "terminal_tx_count_ratio_1d_28d",
        "customer_rising_days_14d",
        "customer_rising_max_days_14d",
        "customer_amount_ratio_median_before_3d",
    ):
        assert np.nanmax(col[name]) > 0 and not np.isnan(col[name]).all(), name
    share = col["customer_new_terminal_share_7d"]
    assert ((share >= 0) & (share <= 1)).all()
    for name in ("customer_amount_trend_7d", "customer_amount_max_trend_7d"):
        trend = col[name]
        assert np.isnan(trend).any() and (trend > 0).any() and (trend < 0).any(), name
    # Brute force: transactions at first-seen terminals over the last 7 days (whole seconds,
    # and fewer than the 64 the history keeps).
    frame = history.with_row_index("_i").with_columns(pl.Series("new", first))
    frame = frame.sort("timestamp", "_i").with_row_index("_order")
    for row in frame.sample(150, seed=4).iter_rows(named=True):
        week = frame.filter(
            (pl.col("customer_id") == row["customer_id"])
            & (pl.col("_order") <= row["_order"])
            & (pl.col("timestamp") >= row["timestamp"] - timedelta(days=7))
        )
        assert week.height <= 64
        got = col["customer_new_terminal_tx_count_7d"][row["_i"]]
        assert got == week["new"].sum(), row
        at_new = float(week.filter(pl.col("new") == 1)["amount"].sum())
        spent = at_new / float(week["amount"].sum())
        assert share[row["_i"]] == pytest.approx(spent, abs=1e-9), row
