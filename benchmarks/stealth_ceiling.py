"""What the Handbook's four fields can show of a bust-out and of quiet skimming, before any model.

Run: ``python benchmarks/stealth_ceiling.py --data sim/ [--from-day 60] [--json]`` on a
``fraudstream simulate --profile full`` folder (its ``transactions_handbook.parquet``).

Bust-out (scenario 10): per day of the ramp (0 = its first), the payments, their amount
against the victim's *usual* one (the mean of its genuine payments of the 30 days before its
ramp, from the data alone) and the share at least twice it: the Handbook's customers spend
with a standard deviation of half their mean, so below twice the mean a payment is within
two standard deviations of the customer's own. Also the victims whose usual amount is 70 or
more, whose ramp (to under 220) is at most ~3x and mostly within that band.

Quiet skimming (scenario 9), with labels known ``--delay-days`` after the payment (the CSV
protocol): for each payment, the frauds among its terminal's payments of the last
``--window-days`` whose label is already known (dated at least ``delay`` before it), for the
skimmer's payments and for the genuine ones (and, for the skimmer's, whether one of those
known frauds is its own: the share a perfect "this terminal is being skimmed" alarm fed by
reported labels could reach); then the best rule "at least ``c`` such frauds
and a known-fraud share of at least ``r`` of the terminal's payments in the window" keeping
genuine payments flagged under ``--genuine-share`` (a 1 % review rate leaves room for about
0.3 % of genuine payments, the rest being frauds). That is the ceiling of any feature built
on a terminal's reported labels.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

SKIMMING, BUST_OUT = 9, 10
DAY_S = 86_400
I64 = NDArray[np.int64]


def load(folder: Path) -> pl.DataFrame:
    return pl.read_parquet(folder / "transactions_handbook.parquet").select(
        pl.col("CUSTOMER_ID").alias("c"),
        pl.col("TERMINAL_ID").alias("t"),
        pl.col("TX_TIME_SECONDS").alias("s"),
        pl.col("TX_AMOUNT").alias("amount"),
        pl.col("TX_FRAUD").cast(pl.Boolean).alias("fraud"),
        pl.col("TX_FRAUD_SCENARIO").alias("scenario"),
    )


def bust_out(h: pl.DataFrame, from_day: int) -> dict[str, Any]:
    """Per ramp day: payments, median amount / usual, share at least twice the usual."""
    ramp = h.filter(pl.col("scenario") == BUST_OUT).with_columns((pl.col("s") // DAY_S).alias("d"))
    start = ramp.group_by("c").agg(pl.col("d").min().alias("d0"))
    usual = (
        h.join(start, on="c")
        .filter(
            (pl.col("scenario") == 0)
            & (pl.col("s") // DAY_S < pl.col("d0"))
            & (pl.col("s") // DAY_S >= pl.col("d0") - 30)
        )
        .group_by("c")
        .agg(pl.col("amount").mean().alias("usual"))
    )
    rows = (
        ramp.join(start, on="c")
        .join(usual, on="c")
        .filter(pl.col("d") >= from_day)
        .with_columns(
            (pl.col("d") - pl.col("d0")).alias("nth"),
            (pl.col("amount") / pl.col("usual")).alias("x_usual"),
        )
    )
    by_day = (
        rows.group_by("nth")
        .agg(
            pl.len().alias("rows"),
            pl.col("x_usual").median().round(2).alias("median_x_usual"),
            (pl.col("x_usual") >= 2).mean().round(3).alias("share_2x_usual"),
        )
        .sort("nth")
    )
    victims = rows.group_by("c").agg(pl.col("usual").first())
    return {
        "rows": rows.height,
        "by_ramp_day": by_day.to_dicts(),
        "share_2x_usual": round(float(np.mean(rows["x_usual"].to_numpy() >= 2)), 3),
        "victims": victims.height,
        "victims_usual_70_or_more": int((victims["usual"] >= 70).sum()),
    }


def _in_window(keys: I64, at: I64, lo: I64, hi: I64) -> I64:
    """Entries of the sorted ``keys`` in ``[at + lo, at + hi)``."""
    count: I64 = np.searchsorted(keys, at + hi) - np.searchsorted(keys, at + lo)
    return count


def skimming(
    h: pl.DataFrame, from_day: int, window_days: int, delay_days: int, genuine_share: float
) -> dict[str, Any]:
    """Known frauds at the payment's terminal, and the best rule on them (see the docs)."""
    span = (int(h["s"].to_numpy().max(initial=0)) + 1) * 2
    t = h["t"].to_numpy().astype(np.int64)
    s = h["s"].to_numpy().astype(np.int64)
    keys = t * span + s
    every = np.sort(keys)
    frauds = np.sort(keys[h["fraud"].to_numpy()])
    w, delay = window_days * DAY_S, delay_days * DAY_S
    lo, hi = np.full(len(s), -w), np.full(len(s), -delay)
    known = _in_window(frauds, keys, lo, hi)  # reported by now: dated before t - delay
    scenario = h["scenario"].to_numpy()
    own = _in_window(np.sort(keys[scenario == SKIMMING]), keys, lo, hi)
    seen = _in_window(every, keys, lo, np.zeros(len(s), dtype=np.int64))
    day = s // DAY_S
    skim = (scenario == SKIMMING) & (day >= from_day)
    genuine = (scenario == 0) & (day >= from_day)
    best: dict[str, float] = {"recall": 0.0}
    for c in range(1, 6):
        for r in (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3):
            flag = (known >= c) & (known >= r * np.maximum(seen, 1))
            flagged = float(flag[genuine].mean())
            recall = float(flag[skim].mean())
            if flagged <= genuine_share and recall > best["recall"]:
                best = {"recall": recall, "min_known": c, "min_share": r, "genuine": flagged}
    return {
        "rows": int(skim.sum()),
        "known_1_or_more": round(float((known[skim] >= 1).mean()), 3),
        "known_2_or_more": round(float((known[skim] >= 2).mean()), 3),
        "own_episode_known": round(float((own[skim] >= 1).mean()), 3),
        "genuine_known_1_or_more": round(float((known[genuine] >= 1).mean()), 4),
        "genuine_known_2_or_more": round(float((known[genuine] >= 2).mean()), 4),
        "best_rule": {k: round(v, 4) for k, v in best.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="a simulate --profile full folder")
    ap.add_argument("--from-day", type=int, default=60, help="first day measured (history)")
    ap.add_argument("--window-days", type=int, default=14)
    ap.add_argument("--delay-days", type=int, default=7)
    ap.add_argument("--genuine-share", type=float, default=0.003)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    h = load(args.data)
    out = {
        "bust_out": bust_out(h, args.from_day),
        "quiet_skimming": skimming(
            h, args.from_day, args.window_days, args.delay_days, args.genuine_share
        ),
    }
    if args.json:
        print(json.dumps(out))
        return
    b, q = out["bust_out"], out["quiet_skimming"]
    print(
        f"bust-out: {b['rows']} payments of {b['victims']} ramps from day {args.from_day}, "
        f"{b['share_2x_usual']:.0%} at twice the victim's usual amount or more"
    )
    for row in b["by_ramp_day"]:
        print(
            f"  ramp day {row['nth']}: {row['rows']:4d} payments, median {row['median_x_usual']}"
            f" x usual, {row['share_2x_usual']:.0%} at 2x or more"
        )
    print(f"  victims whose usual amount is 70 or more: {b['victims_usual_70_or_more']}")
    print(
        f"quiet skimming: {q['rows']} payments; a known fraud at the terminal in the last "
        f"{args.window_days} d: {q['known_1_or_more']:.0%} (two: {q['known_2_or_more']:.0%}; "
        f"one of the skimmer's own: {q['own_episode_known']:.0%}), "
        f"genuine payments {q['genuine_known_1_or_more']:.1%} "
        f"(two: {q['genuine_known_2_or_more']:.2%}); best rule at <= "
        f"{args.genuine_share:.1%} genuine: {q['best_rule']}"
    )


if __name__ == "__main__":
    main()
