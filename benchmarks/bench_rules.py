"""Rules engine throughput: 50 rules over batches of 500 transactions, on one core.

Run: ``python benchmarks/bench_rules.py [--json] [--lists]``. Prints transactions/s for

- ``vectorised``: `evaluate_columns` + one `RuleResult` per transaction (the worker's call);
- ``vectorised_policy``: the same plus `decide_batch` (final scores and outcomes);
- ``per_row``: the same compiled rules called on batches of one (what vectorising buys);
- ``columns``: building the needed columns from 500 `Transaction` objects.

``--lists`` also measures the list storage choice on the session's Valkey (embedded, temp
dir): memory per entry and the cost of a 500-value lookup for a ZSET (``ZMSCORE``, expiry in
the score: chosen) against a plain SET (``SMISMEMBER``, no expiry).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from fraudstream.rules import (
    RuleContext,
    RuleSchema,
    Thresholds,
    decide_batch,
    evaluate_columns,
    parse_ruleset,
    transaction_columns,
)
from fraudstream.schema import Transaction

BATCH = 500
N_RULES = 50
FEATURES = [
    "customer_tx_count_1h",
    "customer_tx_count_24h",
    "customer_amount_mean_30d",
    "customer_amount_ratio_mean_30d",
    "customer_distance_from_home",
    "customer_speed_from_last_kmh",
    "card_tx_count_1h",
    "terminal_risk_7d_delay7d",
    "is_first_seen_product_category",
    "is_first_seen_device",
]

TEMPLATES = [
    "amount > {a} and customer.tx_count_1h >= {k}",
    "amount > {m} * customer.amount_mean_30d and amount > {a}",
    "customer.distance_from_home > {d} and customer.amount_ratio_mean_30d > {m}",
    "is_first_seen.product_category and amount > {m} * customer.amount_mean_30d",
    'customer.speed_from_last_kmh > {s} and channel == "card_present"',
    "card.tx_count_1h >= {k} and amount < {small}",
    "terminal.risk_7d_delay7d > 0.{k} or model.score >= {score}",
    'ip in list("ip_blocklist") or email_domain in list("disposable")',
    'channel == "ecommerce" and is_first_seen.device and amount > {a}',
    "coalesce(customer.tx_count_24h, 0) > {k}0 and abs(amount - customer.amount_mean_30d) > {a}",
    'startswith(lower(email), "test{k}") and amount > {small}',
    'mcc in ["7995", "6051", "48{k}9"] and amount > {a}',
]


def ruleset_text(n: int = N_RULES) -> str:
    lines = ["mode: all_matched", "rules:"]
    outcomes = ["review", "block", "step_up", "review"]
    for i in range(n):
        when = TEMPLATES[i % len(TEMPLATES)].format(
            a=200 + 37 * i,
            k=2 + i % 7,
            m=2 + i % 4,
            d=100 + 20 * i,
            s=600 + 10 * i,
            small=2 + i % 5,
            score=700 + i,
        )
        lines += [
            f"  - id: r{i:02d}",
            f"    when: '{when}'",
            f"    outcome: {outcomes[i % 4]}",
            f"    score: {10 + i}",
            *(["    shadow: true"] if i % 10 == 9 else []),
        ]
    return "\n".join(lines) + "\n"


def batch_columns(rng: np.random.Generator, n: int = BATCH) -> dict[str, Any]:
    def maybe_null(values: np.ndarray[Any, Any], share: float = 0.05) -> np.ndarray[Any, Any]:
        values = values.astype(np.float64)
        values[rng.random(n) < share] = np.nan
        return values

    domains = np.array(["example.org", "mailinator.com", "bank.test", None], dtype=object)
    return {
        "amount": rng.lognormal(4, 1.2, n),
        "channel": rng.choice(np.array(["ecommerce", "card_present"], dtype=object), n),
        "mcc": rng.choice(np.array(["5411", "7995", "4829", None], dtype=object), n),
        "email": np.array(
            [None if i % 17 == 0 else f"{'test' if i % 5 == 0 else 'u'}{i}@x.io" for i in range(n)],
            dtype=object,
        ),
        "email_domain": rng.choice(domains, n),
        "ip": rng.choice(np.array(["10.0.0.1", "8.8.8.8", None], dtype=object), n),
        "customer_tx_count_1h": maybe_null(rng.poisson(1.5, n)),
        "customer_tx_count_24h": maybe_null(rng.poisson(6, n)),
        "customer_amount_mean_30d": maybe_null(rng.lognormal(4, 0.5, n)),
        "customer_amount_ratio_mean_30d": maybe_null(rng.lognormal(0, 0.7, n)),
        "customer_distance_from_home": maybe_null(rng.exponential(40, n)),
        "customer_speed_from_last_kmh": maybe_null(rng.exponential(60, n)),
        "card_tx_count_1h": maybe_null(rng.poisson(1.2, n)),
        "terminal_risk_7d_delay7d": maybe_null(rng.beta(1, 20, n)),
        "is_first_seen_product_category": maybe_null(rng.random(n) < 0.1),
        "is_first_seen_device": maybe_null(rng.random(n) < 0.05),
        "model_score": rng.integers(0, 1000, n).astype(np.float64),
    }


def memberships(rng: np.random.Generator, ruleset: Any, n: int = BATCH) -> dict[str, Any]:
    return {ref.key: rng.random(n) < 0.01 for ref in ruleset.lists}


def _best_rate(fn: Callable[[], object], tx_per_call: int, seconds: float = 1.0) -> float:
    """Median transactions/s over 5 timed runs of ~seconds/5 each (after a warm-up)."""
    fn()
    rates = []
    for _ in range(5):
        calls, started = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            elapsed = time.perf_counter() - started
            if elapsed >= seconds / 5:
                break
        rates.append(calls * tx_per_call / elapsed)
    return statistics.median(rates)


def transactions(n: int) -> list[Transaction]:
    start = datetime(2024, 5, 1, tzinfo=UTC)
    return [
        Transaction(
            transaction_id=f"tx{i}",
            timestamp=start + timedelta(seconds=i),
            customer_id=f"c{i % 97}",
            terminal_id=f"t{i % 31}",
            merchant_id=f"m{i % 31}",
            amount=10.0 + i,
            currency="EUR",
            channel="ecommerce" if i % 2 else "card_present",
            email=f"u{i}@example.org",
            ip="10.0.0.1",
            mcc="5411",
        )
        for i in range(n)
    ]


def bench_rules() -> dict[str, Any]:
    rng = np.random.default_rng(7)
    schema = RuleSchema.build(FEATURES)
    text = ruleset_text()
    started = time.perf_counter()
    ruleset = parse_ruleset(text, schema)
    compile_ms = (time.perf_counter() - started) * 1000
    cols = batch_columns(rng)
    members = memberships(rng, ruleset)
    thresholds = Thresholds()

    def vectorised() -> object:
        return evaluate_columns(ruleset, RuleContext(cols, members)).results()

    def with_policy() -> object:
        result = evaluate_columns(ruleset, RuleContext(cols, members))
        decide_batch(result, cols["model_score"], thresholds)
        return result.results()

    rows = [
        (
            {k: v[i : i + 1] for k, v in cols.items()},
            {k: v[i : i + 1] for k, v in members.items()},
        )
        for i in range(100)
    ]

    def per_row() -> object:
        return [evaluate_columns(ruleset, RuleContext(c, m)).results() for c, m in rows]

    txs = transactions(BATCH)
    needed = ruleset.columns

    def columns() -> object:
        return transaction_columns(txs, needed)

    hits = evaluate_columns(ruleset, RuleContext(cols, members)).hits
    return {
        "rules": len(ruleset.rules),
        "batch": BATCH,
        "compile_ms": round(compile_ms, 1),
        "hit_rate_per_rule": round(float(hits.mean()), 4),
        "vectorised_tx_per_s": round(_best_rate(vectorised, BATCH)),
        "vectorised_policy_tx_per_s": round(_best_rate(with_policy, BATCH)),
        "per_row_tx_per_s": round(_best_rate(per_row, len(rows))),
        "columns_tx_per_s": round(_best_rate(columns, BATCH)),
    }


def bench_lists(entries: int = 1_000_000) -> dict[str, Any]:
    import redis

    from fraudstream.rules.lists import Lists
    from fraudstream.valkey import EmbeddedValkey

    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedValkey(Path(tmp))
        info = server.ensure()
        try:
            client = redis.Redis(host=info.host, port=info.port, password=info.password)
            lists = Lists(client)
            lists.create("zset_list")
            values = [f"card-{i:08d}" for i in range(entries)]
            base = int(client.info("memory")["used_memory"])
            started = time.perf_counter()
            lists.add("zset_list", values, ttl=86_400)
            load_s = time.perf_counter() - started
            zset_bytes = int(client.info("memory")["used_memory"]) - base
            base = int(client.info("memory")["used_memory"])
            pipe = client.pipeline(transaction=False)
            for i in range(0, entries, 10_000):
                pipe.sadd("set_list", *values[i : i + 10_000])
            pipe.execute()
            set_bytes = int(client.info("memory")["used_memory"]) - base
            rng = np.random.default_rng(1)
            probe = [values[i] for i in rng.integers(0, entries, 450)] + [
                f"x-{i}" for i in range(50)
            ]

            def zset() -> object:
                return lists.contains_many("zset_list", probe)

            def plain() -> object:
                return client.smismember("set_list", probe)

            result = {
                "entries": entries,
                "zset_load_s": round(load_s, 2),
                "zset_bytes_per_entry": round(zset_bytes / entries, 1),
                "set_bytes_per_entry": round(set_bytes / entries, 1),
                "zset_lookup_500_us": round(1e6 * BATCH / _best_rate(zset, BATCH), 1),
                "set_lookup_500_us": round(1e6 * BATCH / _best_rate(plain, BATCH), 1),
            }
            client.close()
            return result
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--lists", action="store_true", help="also measure list storage")
    args = parser.parse_args()
    result = bench_rules()
    if args.lists:
        result["lists"] = bench_lists()
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['rules']} rules, batches of {result['batch']}, one core")
    print(f"  compile (parse + check + compile): {result['compile_ms']} ms")
    print(f"  vectorised evaluation + results:   {result['vectorised_tx_per_s']:>10,} tx/s")
    print(f"  ... plus policy (decide_batch):    {result['vectorised_policy_tx_per_s']:>10,} tx/s")
    print(f"  per-row evaluation (batch of 1):   {result['per_row_tx_per_s']:>10,} tx/s")
    print(f"  columns from Transaction objects:  {result['columns_tx_per_s']:>10,} tx/s")
    if "lists" in result:
        lst = result["lists"]
        print(f"lists, {lst['entries']:,} entries:")
        print(
            f"  ZSET (chosen): {lst['zset_bytes_per_entry']} B/entry, "
            f"500-value lookup {lst['zset_lookup_500_us']} µs, load {lst['zset_load_s']} s"
        )
        print(
            f"  plain SET:     {lst['set_bytes_per_entry']} B/entry, "
            f"500-value lookup {lst['set_lookup_500_us']} µs"
        )


if __name__ == "__main__":
    main()
