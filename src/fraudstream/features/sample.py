"""A small synthetic history for feature tests and benchmarks (no simulator needed).

It is not a fraud model (see `fraudstream.simulate` for that): it exercises what the feature
engine must get right. Both channels; product categories (some missing); grid and lat/lon
customers; several cards per customer; devices and IPs shared between customers; bursts of
transactions minutes apart (several of one customer in one batch, and the same entity twice
in one tile); equal timestamps; far-away terminals minutes later (impossible travel);
compromised terminals; labels reported hours to days later, some genuine, some repeated.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl

START = datetime(2024, 3, 1, tzinfo=UTC)
US = 1_000_000


def synthetic_history(
    *,
    n_customers: int = 500,
    n_terminals: int = 400,
    n_days: int = 31,
    seed: int = 0,
    fraud_rate: float = 0.006,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(transactions, labels)`` as polars frames with our schema's columns."""
    rng = np.random.default_rng(seed)
    home = rng.uniform(0, 100, size=(n_customers, 2))
    latlon_customer = rng.random(n_customers) < 0.15
    rate = rng.uniform(0.3, 3.0, n_customers)
    term_xy = rng.uniform(0, 100, size=(n_terminals, 2))

    per_day = rng.poisson(rate[None, :].repeat(n_days, axis=0))
    day_idx, cust = np.nonzero(per_day)
    reps = per_day[day_idx, cust]
    cust = np.repeat(cust, reps)
    day = np.repeat(day_idx, reps)
    n = len(cust)
    base = int(START.timestamp()) * US
    ts = base + day * 86_400 * US + rng.integers(0, 86_400 * US, n)

    burst = rng.random(n) < 0.03
    extra = rng.integers(1, 4, burst.sum())
    b_cust = np.repeat(cust[burst], extra)
    b_ts = np.repeat(ts[burst], extra) + rng.integers(1, 600 * US, extra.sum())
    cust = np.concatenate([cust, b_cust])
    ts = np.concatenate([ts, b_ts])
    n = len(cust)
    tie = rng.random(n) < 0.01
    order = np.lexsort((ts, cust))
    prev = np.concatenate([[order[0]], order[:-1]])
    same = cust[prev] == cust[order]
    ts[order[tie[order] & same]] = ts[prev[tie[order] & same]]

    ecommerce = rng.random(n) < 0.3
    near = _nearest_terminals(home[cust], term_xy, rng)
    far = rng.random(n) < 0.01
    terminal = np.where(far, rng.integers(0, n_terminals, n), near)
    merchant = rng.integers(0, 60, n)
    x = term_xy[terminal, 0]
    y = term_xy[terminal, 1]
    amount = np.round(np.exp(rng.normal(3.6, 0.9, n)), 2) + 0.01
    amount = np.where(rng.random(n) < 0.02, np.round(amount * 7, 2), amount)
    device = np.where(rng.random(n) < 0.9, cust, rng.integers(0, 40, n) + n_customers)
    ip = np.where(rng.random(n) < 0.7, cust % 300, rng.integers(0, 25, n))
    card = cust * 2 + (rng.random(n) < 0.2)

    compromised = rng.choice(n_terminals, size=max(1, n_terminals // 50), replace=False)
    comp_start = base + rng.integers(0, n_days * 86_400, len(compromised)) * US
    hit = np.zeros(n, dtype=bool)
    for t, s in zip(compromised, comp_start, strict=True):
        hit |= (terminal == t) & (ts >= s) & (ts < s + 5 * 86_400 * US) & ~ecommerce
    is_fraud = (rng.random(n) < fraud_rate) | (hit & (rng.random(n) < 0.5))

    terminal_id = np.where(ecommerce, np.char.add("e", merchant.astype(str)), terminal.astype(str))
    merchant_id = np.where(ecommerce, np.char.add("m", merchant.astype(str)), terminal_id)
    ll = latlon_customer[cust] & ~ecommerce
    xy = ~latlon_customer[cust] & ~ecommerce
    tx = pl.DataFrame(
        {
            "transaction_id": [f"tx{i}" for i in range(n)],
            "timestamp": ts,
            "customer_id": cust.astype(str),
            "terminal_id": terminal_id,
            "merchant_id": merchant_id,
            "amount": amount,
            "currency": "EUR",
            "channel": np.where(ecommerce, "ecommerce", "card_present"),
            "card_id": np.char.add("c", card.astype(str)),
            "product_category": _category(ecommerce, merchant, terminal),
            "ip": _only(ecommerce, _ipv4(ip)),
            "device_id": _only(ecommerce, np.char.add("d", device.astype(str))),
            "lat": np.where(ll, 45.0 + y / 100.0, np.nan),
            "lon": np.where(ll, 5.0 + x / 100.0, np.nan),
            "x": np.where(xy, x, np.nan),
            "y": np.where(xy, y, np.nan),
            "is_fraud": is_fraud,
        },
        strict=False,
    ).with_columns(
        pl.from_epoch("timestamp", time_unit="us").dt.replace_time_zone("UTC"),
        pl.col("lat", "lon", "x", "y").fill_nan(None),
    )
    tx = tx.sort("timestamp", maintain_order=True)
    return tx, _labels(tx, rng)


def _category(ecommerce: np.ndarray, merchant: np.ndarray, terminal: np.ndarray) -> pl.Series:
    """One of 12 categories per merchant or terminal; every 11th terminal reports none."""
    code = np.where(ecommerce, merchant % 12, (terminal * 7) % 12)
    names = pl.Series(np.char.add("cat", code.astype(str)))
    return names.set(pl.Series(~ecommerce & (terminal % 11 == 0)), None)


def _only(mask: np.ndarray, values: np.ndarray) -> pl.Series:
    return pl.Series(values).set(pl.Series(~mask), None)


def _nearest_terminals(
    points: np.ndarray, terminals: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """A random one of the 5 terminals nearest each point."""
    out = np.empty(len(points), dtype=np.int64)
    k = min(5, len(terminals))
    for lo in range(0, len(points), 4096):
        p = points[lo : lo + 4096]
        d = ((p[:, None, :] - terminals[None, :, :]) ** 2).sum(axis=2)
        top = (
            np.argsort(d, axis=1)[:, :k]
            if k == len(terminals)
            else np.argpartition(d, k, axis=1)[:, :k]
        )
        out[lo : lo + 4096] = top[np.arange(len(p)), rng.integers(0, k, len(p))]
    return out


def _labels(tx: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    fraud = tx.filter(pl.col("is_fraud"))
    genuine = tx.filter(~pl.col("is_fraud")).sample(fraction=0.01, seed=int(rng.integers(1 << 31)))
    picked = pl.concat([fraud, genuine])
    delay_s = np.minimum(rng.exponential(2 * 86_400, picked.height) + 1, 7 * 86_400)
    labels = picked.select(
        "transaction_id",
        "is_fraud",
        (pl.col("timestamp") + pl.Series(delay_s * US).cast(pl.Duration("us"))).alias(
            "reported_at"
        ),
        "customer_id",
        "terminal_id",
        pl.col("timestamp").alias("tx_timestamp"),
    )
    again = labels.sample(fraction=0.05, seed=int(rng.integers(1 << 31))).with_columns(
        pl.col("reported_at") + pl.duration(hours=6)
    )
    return pl.concat([labels, again]).sort("reported_at", maintain_order=True)


def _ipv4(number: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Addresses in 10.0.0.0/16, one per number (< 65,536).

    >>> _ipv4(np.array([4, 299])).tolist()
    ['10.0.0.4', '10.0.1.43']
    """
    high, low = (number // 256).astype(str), (number % 256).astype(str)
    return np.char.add(np.char.add("10.0.", high), np.char.add(".", low))
