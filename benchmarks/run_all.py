"""``make bench``: run the benchmarks, one after the other, and print one summary table.

Run: ``python benchmarks/run_all.py [--all] [--json]``. Each benchmark runs as its own process
with ``--json``; the table gathers what they measured: the figures with targets
(``bench_pipeline.py``, ``bench_api.py``: median and min–max over their repeats, pass or
MISS), then each other benchmark's headline figures (the median its own repeats report).
``--json`` prints every figure and every benchmark's whole JSON object as one object. A missed
target never fails the run; a benchmark that crashes does (exit 1, its error above).

By default the run stays within ~10 minutes on 2 cores: ``bench_features.py`` (~6 minutes on
its own) and ``bench_models.py`` (needs the ``bench`` extra) run only with ``--all``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from summary import Figure, table

HERE = Path(__file__).parent
DEFAULT = (
    "pipeline",
    "batch_cost",
    "api",
    "sink",
    "generate",
    "rules",
    "schema",
    "simulate",
    "drift",
)
LONG = ("features", "models")

Headline = tuple[str, str, tuple[str | int, ...]]
HEADLINES: dict[str, list[Headline]] = {
    "sink": [
        (f"sink → {db}, {kind}", "decisions/s", ("decisions_per_s", f"{db}_{kind}"))
        for db in ("sqlite", "postgresql")
        for kind in ("sink", "bare")
    ],
    "generate": [("generate, unthrottled into Valkey", "tx/s", ("runs",))],
    "rules": [("50 rules, vectorised, batches of 500", "tx/s", ("vectorised_tx_per_s",))],
    "schema": [
        ("decode + validate one transaction, msgspec", "µs", ("msgspec_us",)),
        ("decode + validate one transaction, pydantic", "µs", ("pydantic_us",)),
    ],
    "simulate": [("simulate the Handbook history (1.77 M tx)", "s", ("seconds",))],
    "drift": [("drift window, score + 5 features, batch of 500", "µs", ("observe_us_per_batch",))],
    "features": [
        ("online features, one partition", "tx/s", ("online", "runs", 0, "tx_per_s")),
        ("online features, two partitions in flight", "tx/s", ("online", "runs", 1, "tx_per_s")),
        ("online features, I/O floor", "tx/s", ("online", "floor_tx_per_s")),
    ],
}
"""Figures picked from the benchmarks that do not report `summary.Figure` themselves."""


def run(name: str, err: Console) -> dict[str, Any] | None:
    """A benchmark's JSON object, None if it failed (its stderr goes to ours as it runs)."""
    err.print(f"[bold]== bench_{name}.py[/]", highlight=False)
    t0 = time.monotonic()
    command = [sys.executable, str(HERE / f"bench_{name}.py"), "--json"]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    err.print(f"   {time.monotonic() - t0:,.0f} s, exit {done.returncode}", highlight=False)
    if done.returncode != 0:
        return None
    text = done.stdout.strip()
    try:
        return dict(json.loads(text))
    except ValueError:  # something printed before the object
        return dict(json.loads(text.splitlines()[-1]))


def figures_of(name: str, result: dict[str, Any]) -> list[Figure]:
    if "figures" in result:
        return [Figure.from_dict(f) for f in result["figures"]]
    out = []
    for what, unit, path in HEADLINES.get(name, []):
        value: Any = result
        for step in path:
            value = value[step]
        out.append(Figure(what, unit, value if isinstance(value, list) else [value]))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--all", action="store_true", help="also the long benchmarks")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    err = Console(stderr=True)
    figures: list[Figure] = []
    results: dict[str, Any] = {}
    failed: list[str] = []
    for name in DEFAULT + LONG * args.all:
        result = run(name, err)
        if result is None:
            failed.append(name)
            continue
        results[name] = result
        figures += figures_of(name, result)
    if args.json:
        dump = {"figures": [f.as_dict() for f in figures], "benchmarks": results}
        print(json.dumps({**dump, "failed": failed}))
    else:
        out = Console() if sys.stdout.isatty() else Console(width=150)
        out.print(table(figures, "make bench (median of repeats; pass/MISS judge the median)"))
        if failed:
            out.print(f"[red]failed:[/] {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
