"""How well a co-visitation neighbourhood would separate the low-and-slow takeover, from
customer, terminal and time alone (Handbook columns, no coordinates).

Run: ``python benchmarks/covisitation.py --data sim/ [--test-start 2018-08-08] [--json]`` on a
``fraudstream simulate --profile full`` folder (its ``transactions_handbook.parquet``).

For a test-week payment of customer ``c`` at a terminal ``t`` that ``c`` did not use in the
``--days`` before the week, the *co-visit share* is the share of ``t``'s customers over those
days who also used one of ``c``'s own terminals. Terminals with ``--max-customers`` or more
customers (the e-commerce merchants, which link everyone) are left out of the neighbourhood
and of the rows measured. Printed: the share's quantiles and how often it is 0 (or at most
0.2) for genuine payments at terminals new to their customer (a sample) and for the
takeover's payments (scenario 8). An analysis, not a feature: the online engine has no such
neighbourhood yet (see the README's "Recall per scenario").
"""

from __future__ import annotations

import argparse
import json
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

TAKEOVER = 8


def visits(path: Path) -> pl.DataFrame:
    return pl.read_parquet(path).select(
        pl.col("CUSTOMER_ID").alias("c"),
        pl.col("TERMINAL_ID").alias("t"),
        pl.col("TX_DATETIME").alias("ts"),
        pl.col("TX_FRAUD_SCENARIO").alias("scenario"),
    )


def co_visit_share(rows: pl.DataFrame, past: pl.DataFrame, customers_of: pl.DataFrame) -> pl.Series:
    """Per row (c, t): |customers of t who share a terminal with c| / |customers of t|."""
    rows = rows.select("c", "t").with_row_index("r")
    of_t = rows.join(past.rename({"c": "c2"}), on="t")  # r, c, t, c2
    their = of_t.join(past.rename({"c": "c2", "t": "t2"}), on="c2")  # … and c2's terminals
    mine = past.rename({"t": "t2"})
    shared = their.join(mine, on=["c", "t2"]).select("r", "c2").unique()
    counts = shared.group_by("r").agg(pl.len().alias("near"))
    out = rows.join(counts, on="r", how="left").join(customers_of, on="t", how="left")
    share = pl.col("near").fill_null(0) / pl.col("customers").fill_null(1)
    return out.sort("r").select(share.alias("share"))["share"]


def measure(
    path: Path, test_start: date, days: int, max_customers: int, sample: int
) -> dict[str, dict[str, object]]:
    h = visits(path)
    start = datetime.combine(test_start, datetime.min.time())
    before = h.filter(
        pl.col("ts").is_between(start - timedelta(days=days), start, closed="left")
        & (pl.col("scenario") == 0)
    )
    pairs = before.select("c", "t").unique()
    customers_of = pairs.group_by("t").agg(pl.len().alias("customers"))
    small = customers_of.filter(pl.col("customers") < max_customers).select("t")
    past = pairs.join(small, on="t")
    week = h.filter(pl.col("ts").is_between(start, start + timedelta(days=7), closed="left"))
    new = week.join(small, on="t").join(past, on=["c", "t"], how="anti")
    genuine = new.filter(pl.col("scenario") == 0)
    groups = {
        "genuine at a terminal new to the customer": genuine.sample(
            min(sample, genuine.height), seed=1
        ),
        "low-and-slow takeover": new.filter(pl.col("scenario") == TAKEOVER),
    }
    out: dict[str, dict[str, object]] = {}
    for name, rows in groups.items():
        share = co_visit_share(rows, past, customers_of).to_numpy()
        out[name] = {
            "rows": rows.height,
            "share_p10_p50_p90": [round(float(q), 3) for q in np.quantile(share, [0.1, 0.5, 0.9])],
            "share_is_0": round(float(np.mean(share == 0)), 4),
            "share_at_most_0.2": round(float(np.mean(share <= 0.2)), 4),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="a `simulate` folder")
    parser.add_argument("--test-start", type=date.fromisoformat, default=date(2018, 8, 8))
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--max-customers", type=int, default=60)
    parser.add_argument("--sample", type=int, default=3000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    path = args.data / "transactions_handbook.parquet" if args.data.is_dir() else args.data
    found = measure(path, args.test_start, args.days, args.max_customers, args.sample)
    if args.json:
        print(json.dumps(found))
        return
    for name, figures in found.items():
        print(f"{name}: {figures}")


if __name__ == "__main__":
    main()
