"""Traffic for the console: decision entries appended to ``tx.decisions`` as the workers
append them (the decision and its transaction), at chosen times, and a flagged decision
stored with its feature contributions and an open review."""

from __future__ import annotations

import math
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import redis
import sqlalchemy as sa
from redis.typing import EncodableT, FieldT

from fraudstream.schema import Decision, Transaction, encode
from fraudstream.store import tables
from fraudstream.store.reviews import open_reviews
from fraudstream.store.write import decision_values, store_transactions
from fraudstream.stream.keys import PAYLOAD, TX

STREAM = "tx.decisions"
OUTCOMES = ("approve",) * 93 + ("review",) * 4 + ("block",) * 2 + ("step_up",) * 1
REASONS = {
    "approve": [],
    "review": ["amount_policy", "rule:new_device_high_amount"],
    "block": ["model:terminal_risk_7d", "rule:ip_blocklist"],
    "step_up": ["rule:first_seen_device"],
}

SCORES = {"approve": (0, 499, 70), "review": (500, 799, 90), "step_up": (560, 799, 80)}
"""outcome -> lowest and highest score, mean above the lowest (block: 800-1000)."""


def transaction(n: int, customer: str, amount: float, at: datetime) -> Transaction:
    return Transaction(
        transaction_id=f"tx-{n}",
        timestamp=at,
        customer_id=customer,
        terminal_id=f"term-{n % 40}",
        merchant_id=f"merchant-{n % 25}",
        amount=amount,
        currency="EUR",
        channel="ecommerce" if n % 3 else "card_present",
    )


def entry(n: int, outcome: str, rng: random.Random, at: datetime) -> dict[FieldT, EncodableT]:
    """A decision entry; any outcome string, as a newer pipeline may send."""
    low, high, mean = SCORES.get(outcome, (800, 1000, 60))
    score = min(high, low + int(rng.expovariate(1 / mean)))
    decision = Decision(
        transaction_id=f"tx-{n}",
        score=score,
        outcome="review",
        reasons=REASONS.get(outcome, ["rule:other"]),
        model_version="lgbm-3f9c2e1",
        rules_version="rules-v14",
        latency_ms=rng.lognormvariate(math.log(9.0), 0.55),
        decided_at=at,
    )
    fields: dict[str, Any] = msgspec.to_builtins(decision)
    fields["outcome"] = outcome
    amount = round(rng.lognormvariate(math.log(60.0), 0.9) * (6 if score > 500 else 1), 2)
    tx = transaction(n, f"cust-{rng.randint(1, 900)}", amount, at)
    return {PAYLOAD: msgspec.json.encode(fields), TX: encode(tx)}


def backfill(client: redis.Redis, seconds: int, rate: float, seed: int = 7) -> int:
    """Decisions from ``seconds`` ago up to now (entry ids in the past, a gentle wave around
    ``rate`` a second), so the console's window is full from the start; returns the next
    entry number. Fills until it has caught up with the clock, so live traffic can follow
    without a gap."""
    rng = random.Random(seed)
    done_ms = int(time.time() * 1000) - seconds * 1000
    n = 0
    while (now_ms := int(time.time() * 1000)) - done_ms > 50:
        pipe = client.pipeline(transaction=False)
        for ms in range(done_ms, now_ms):
            if rng.random() < rate * (1 + 0.35 * math.sin(ms / 7000)) / 1000:
                at = datetime.fromtimestamp(ms / 1000, UTC)
                pipe.xadd(STREAM, entry(n, rng.choice(OUTCOMES), rng, at), id=f"{ms}-0")
                n += 1
        pipe.execute()
        done_ms = now_ms
    return n


class Traffic:
    """Appends decisions at about ``rate`` a second in a thread until stopped."""

    def __init__(self, client: redis.Redis, rate: float, first: int, seed: int = 11) -> None:
        self.client = client
        self.rate = rate
        self.n = first
        self.rng = random.Random(seed)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)

    def _run(self) -> None:
        while not self.stopping.wait(0.1):
            pipe = self.client.pipeline(transaction=False)
            for _ in range(int(self.rate / 10)):
                at = datetime.now(UTC)
                pipe.xadd(STREAM, entry(self.n, self.rng.choice(OUTCOMES), self.rng, at))
                self.n += 1
            pipe.execute()


CONTRIBUTIONS = {
    "terminal_risk_7d": 212.4,
    "amount_ratio_to_mean_30d": 148.9,
    "customer_is_new_device": 96.2,
    "distance_from_home_km": 61.7,
    "velocity_1h": 33.0,
    "customer_tx_count_7d": -41.5,
    "hour_of_day": -12.8,
}


def store_flagged(engine: sa.Engine, transaction_id: str, customer: str) -> None:
    """A review decision with its features and contributions, its transaction, a few
    earlier transactions of the customer, and its open review — as the sink stores them."""
    now = datetime.now(UTC)
    earlier = [transaction(900 + k, customer, 20.0 + 7 * k, now) for k in range(4)]
    txs = [
        msgspec.structs.replace(
            tx, transaction_id=f"{transaction_id}-{k}", timestamp=now - timedelta(days=k + 1)
        )
        for k, tx in enumerate(earlier)
    ]
    flagged = msgspec.structs.replace(
        transaction(0, customer, 1_240.0, now), transaction_id=transaction_id
    )
    decision = Decision(
        transaction_id=transaction_id,
        score=742,
        outcome="review",
        reasons=["amount_policy", "rule:new_device_high_amount"],
        model_version="lgbm-3f9c2e1",
        rules_version="rules-v14",
        latency_ms=11.8,
        decided_at=now,
        stages={"queue": 2.1, "features": 4.9, "model": 2.6, "rules": 0.7},
    )
    row = dict(
        zip([c.name for c in tables.decisions.columns], decision_values(decision), strict=True)
    )
    row.update(
        reasons=decision.reasons,
        shadow=[],
        stage_ms=decision.stages,
        features={"terminal_risk_7d": 0.31, "amount_ratio_to_mean_30d": 9.4},
        contributions=CONTRIBUTIONS,
    )
    with engine.begin() as connection:
        store_transactions(connection, [*txs, flagged])
        connection.execute(sa.insert(tables.decisions), [row])
        open_reviews(connection, [decision])
