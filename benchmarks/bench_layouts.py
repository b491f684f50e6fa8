"""Reading a PaySim-size file in a known public layout: seconds and peak memory.

Run: ``python benchmarks/bench_layouts.py [--rows 6362620] [--repeats 3] [--json]``.
Writes made-up files (no dataset content) to a temporary folder: one in PaySim's layout
(row-number ids and step-hour times derived while reading), one with the same rows in our
own columns (ISO times, ids in the file) as the baseline, and one in Sparkov's layout at
fraudTrain.csv's size (quoted merchant names, naive times, personal columns not read).
Each read is a fresh process (`fraudstream.history.read_history`, the loader of train /
evaluate / backtest); its wall time and peak resident memory (ru_maxrss) are reported as the
median and range of the repeats.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

PAYSIM_ROWS = 6_362_620
SPARKOV_ROWS = 1_296_675
TYPES = ["CASH_IN", "CASH_OUT", "DEBIT", "PAYMENT", "TRANSFER"]
READ = """
import resource, sys, time
from pathlib import Path
from fraudstream.history import read_history
start = time.perf_counter()
history = read_history(Path(sys.argv[1]))
took = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{took} {peak} {history.frame.height} {history.layout is not None}")
"""


def paysim_frame(rows: int) -> pl.DataFrame:
    """PaySim-shaped rows: 743 steps, five types, amounts from 0 to ~9.2e7, 1 in 800 fraud."""
    i = pl.col("i")
    amount = ((i * 2_654_435_761) % 1_000_003).cast(pl.Float64) / 100.0
    amount = pl.when(i == 0).then(0.0).when(i == 1).then(92_445_516.64).otherwise(amount)
    frame = pl.DataFrame({"i": pl.int_range(0, rows, dtype=pl.Int64, eager=True)})
    return frame.select(
        (i * 743 // rows + 1).alias("step"),
        (i % 5).replace_strict(list(range(5)), TYPES, return_dtype=pl.String).alias("type"),
        amount.alias("amount"),
        pl.format("C{}", (i * 7_919) % 6_353_307).alias("nameOrig"),
        (amount * 3).alias("oldbalanceOrg"),
        (amount * 2).alias("newbalanceOrig"),
        pl.format("M{}", (i * 104_729) % 2_722_362).alias("nameDest"),
        amount.alias("oldbalanceDest"),
        (amount * 2).alias("newbalanceDest"),
        (i % 800 == 0).cast(pl.Int8).alias("isFraud"),
        pl.lit(0, dtype=pl.Int8).alias("isFlaggedFraud"),
    )


def sparkov_frame(rows: int) -> pl.DataFrame:
    """Sparkov-shaped rows over 1.5 years: 16-digit card numbers, quoted merchant names with
    commas, naive times, the personal columns (made-up values)."""
    i = pl.col("i")
    start = datetime(2019, 1, 1)
    frame = pl.DataFrame({"i": pl.int_range(0, rows, dtype=pl.Int64, eager=True)})
    return frame.select(
        pl.col("i").alias(""),
        (pl.lit(start) + pl.duration(seconds=i * 37))
        .dt.strftime("%Y-%m-%d %H:%M:%S")
        .alias("trans_date_trans_time"),
        (4_000_000_000_000_000 + (i * 7_919) % 1_000 * 1_000_003).alias("cc_num"),
        pl.format("fraud_Shop {}, Sons and Co", (i * 104_729) % 693).alias("merchant"),
        pl.lit("misc_net").alias("category"),
        (((i * 2_654_435_761) % 100_003).cast(pl.Float64) / 100.0).alias("amt"),
        pl.lit("Zebediah").alias("first"),
        pl.lit("Quillfeather").alias("last"),
        pl.lit("F").alias("gender"),
        pl.lit("42 Nowhere Lane").alias("street"),
        pl.lit("Springfield").alias("city"),
        pl.lit("XX").alias("state"),
        pl.lit(99999).alias("zip"),
        pl.lit(-33.5).alias("lat"),
        pl.lit(151.25).alias("long"),
        pl.lit(1234).alias("city_pop"),
        pl.lit("Cartographer").alias("job"),
        pl.lit("1901-02-03").alias("dob"),
        pl.format("{}", (i * 2_654_435_761) % 10**12).alias("trans_num"),
        (1_546_300_800 + i * 37).alias("unix_time"),
        pl.lit(40.5).alias("merch_lat"),
        pl.lit(-74.25).alias("merch_long"),
        (i % 170 == 0).cast(pl.Int8).alias("is_fraud"),
    )


def own_frame(paysim: pl.DataFrame) -> pl.DataFrame:
    origin = datetime(2017, 1, 1, tzinfo=UTC)
    return paysim.with_row_index("row", offset=1).select(
        pl.format("paysim-{}", "row").alias("transaction_id"),
        (pl.lit(origin) + pl.duration(hours="step", microseconds="row")).alias("timestamp"),
        pl.col("nameOrig").alias("customer_id"),
        pl.col("nameDest").alias("terminal_id"),
        "amount",
        pl.col("isFraud").alias("is_fraud"),
    )


def read(path: Path, repeats: int) -> dict[str, object]:
    times, peaks = [], []
    rows, recognised = 0, False
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", READ, str(path)], capture_output=True, text=True, check=True
        ).stdout.split()
        times.append(float(out[0]))
        peaks.append(float(out[1]))
        rows, recognised = int(out[2]), out[3] == "True"
    return {
        "file": path.name,
        "rows": rows,
        "megabytes": round(path.stat().st_size / 2**20),
        "recognised_layout": recognised,
        "seconds_median": round(statistics.median(times), 2),
        "seconds_range": [round(min(times), 2), round(max(times), 2)],
        "peak_mb_median": round(statistics.median(peaks)),
        "peak_mb_range": [round(min(peaks)), round(max(peaks))],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=PAYSIM_ROWS)
    parser.add_argument("--sparkov-rows", type=int, default=SPARKOV_ROWS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paysim = paysim_frame(args.rows)
        paysim_csv = Path(tmp) / "PS_synthetic_log.csv"
        paysim.write_csv(paysim_csv)
        own_csv = Path(tmp) / "own_columns.csv"
        own_frame(paysim).write_csv(own_csv)
        del paysim
        sparkov_csv = Path(tmp) / "sparkov_synthetic.csv"
        sparkov_frame(args.sparkov_rows).write_csv(sparkov_csv)
        results = [
            read(paysim_csv, args.repeats),
            read(own_csv, args.repeats),
            read(sparkov_csv, args.repeats),
        ]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(
                f"{r['file']}: {r['rows']:,} rows ({r['megabytes']} MB), "
                f"{r['seconds_median']} s {r['seconds_range']}, "
                f"peak {r['peak_mb_median']} MB {r['peak_mb_range']}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
