"""Benchmark traffic as a running deployment meets it: customers and terminals with history.

The demo's small simulated world (2,000 customers, 60 days, ~3 % fraud): its first
`WARM_DAYS` days go through a feature engine set up as the one measured (same settings, same
Valkey), then the benchmark sends the days after, in event-time order (the world repeats,
shifted forward in time, when a benchmark needs more). ~3–4 % of the decisions are then
flagged, each paying for its explanation. Sent to a cold state instead (every customer new,
every entity id fresh), 24–30 % were flagged: a benchmark of a deployment's first minutes.
"""

from __future__ import annotations

from functools import cache

import polars as pl
import redis

from fraudstream.config import Settings
from fraudstream.generate import GenerateOptions, encode_rows, load_history, select
from fraudstream.schema import decode_transaction
from fraudstream.scoring import build_scorer
from fraudstream.simulate import iter_transaction_json
from fraudstream.stream.keys import StreamKeys

WARM_DAYS = 30


@cache
def world() -> pl.DataFrame:
    """The demo's simulated history (not at import: `streamfloor`'s processes re-import the
    benchmarks that import this)."""
    return load_history(None, seed=1)[0]


class WarmWorld:
    """`world`'s first `WARM_DAYS` days stored as features, and ``rows`` transactions after
    them, handed out in order (`bodies`, `entries`); ids prefixed with ``run_id``."""

    def __init__(self, settings: Settings, client: redis.Redis, rows: int, run_id: str) -> None:
        history = world()
        warm_until = history["timestamp"].min() + pl.duration(days=WARM_DAYS)
        n_warm = history.filter(pl.col("timestamp") < warm_until).height
        picked = select(history, n_warm + rows, GenerateOptions(run_id=run_id, isolate=True))
        engine = build_scorer(settings, client).features
        assert engine is not None, "the benchmark's settings have features on"
        for chunk in iter_transaction_json(picked.head(n_warm), 500):
            engine.compute_batch([decode_transaction(b) for b in chunk])
        self._rows = picked.slice(n_warm)
        self._next = 0

    @property
    def left(self) -> int:
        return self._rows.height - self._next

    def _take(self, n: int) -> pl.DataFrame:
        if n > self.left:
            raise RuntimeError(f"the prepared traffic ran out: {n:,} wanted, {self.left:,} left")
        taken = self._rows.slice(self._next, n)
        self._next += n
        return taken

    def bodies(self, n: int) -> list[bytes]:
        """The next ``n`` transactions as request bodies."""
        return [b for chunk in iter_transaction_json(self._take(n), 500) for b in chunk]

    def entries(self, keys: StreamKeys, n: int, batch: int) -> list[tuple[str, bytes]]:
        """The next ``n`` transactions as input stream entries (stream, payload)."""
        picked = self._take(n)
        return [(s, b) for _, s, b in encode_rows(picked, picked.head(0), keys, False, batch)]
