"""How long the simulator takes to generate the Handbook's full default history.

    python benchmarks/bench_simulate.py            # a line of figures
    python benchmarks/bench_simulate.py --json     # one JSON object
    python benchmarks/bench_simulate.py --profile full --seed 3

The budget is < 60 s on a 2-core machine for 5,000 customers × 183 days (~1.75 M transactions);
the Handbook's figures are printed beside ours for comparison.
"""

from __future__ import annotations

import argparse
import json
import time

from fraudstream.simulate import HANDBOOK_FIGURES, SimulationConfig, simulate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--profile", choices=("handbook", "full"), default="handbook")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result = simulate(SimulationConfig(profile=args.profile, seed=args.seed))
    seconds = time.perf_counter() - started
    tx = result.transactions
    frauds = int(tx["is_fraud"].sum())
    figures = {
        "benchmark": "simulate",
        "profile": args.profile,
        "seconds": round(seconds, 3),
        "transactions": tx.height,
        "frauds": frauds,
        "fraud_rate": round(frauds / tx.height, 5),
        "labels": result.labels.height,
        "stages": {name: round(value, 3) for name, value in result.timings.items()},
        "handbook": HANDBOOK_FIGURES,
    }
    if args.json:
        print(json.dumps(figures))
        return
    print(
        f"simulate ({args.profile}): {seconds:.2f} s, {tx.height:,} transactions, "
        f"{frauds:,} frauds ({frauds / tx.height:.3%}); Handbook: "
        f"{HANDBOOK_FIGURES['transactions']:,.0f} transactions, "
        f"{HANDBOOK_FIGURES['frauds']:,.0f} frauds ({HANDBOOK_FIGURES['fraud_rate']:.3%})"
    )


if __name__ == "__main__":
    main()
