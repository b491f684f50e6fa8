"""The fleet's drift: every worker publishes its window's counts to one Valkey hash, and
readers (the console, `fraudstream drift check`, the alerts consumer) add up the live ones.

``{prefix}.drift.windows`` — HASH: field = worker consumer name, value = a `Published` as
JSON (model version, time, rows, the flat counts and the model's reference, so a reader
needs neither the model registry nor its key). A worker writes it every few seconds
(`DriftMonitor.tick`); a reader drops the entries older than `STALE_S` (workers that
stopped or died), sums the counts per model version, and computes one PSI per
distribution over the fleet's last ~10,000 × workers transactions.
"""

from __future__ import annotations

import logging
import time

import msgspec
import numpy as np
import redis

from fraudstream.drift.reference import Reference
from fraudstream.drift.window import MIN_ROWS, DriftFigures, DriftWindow, Layout, figures
from fraudstream.errors import DriftError

log = logging.getLogger(__name__)

STALE_S = 60.0
"""A worker's window older than this is left out (and removed)."""


def windows_key(prefix: str) -> str:
    return f"{prefix}.drift.windows"


class Published(msgspec.Struct, frozen=True):
    """One worker's window as stored in the hash."""

    model_version: str
    at: float
    rows: int
    counts: list[int]
    reference: dict[str, object]


_decoder = msgspec.json.Decoder(Published)


def publish(client: redis.Redis, prefix: str, consumer: str, window: DriftWindow) -> None:
    """Store ``window``'s counts as ``consumer``'s entry."""
    entry = Published(
        window.version,
        time.time(),
        window.rows,
        window.counts.tolist(),
        window.reference.to_meta(),
    )
    client.hset(windows_key(prefix), consumer, msgspec.json.encode(entry))


def fleet_figures(
    client: redis.Redis, prefix: str, *, min_rows: int = MIN_ROWS, stale_s: float = STALE_S
) -> list[DriftFigures]:
    """The drift of the live workers' windows summed, per model version, the version with
    the most rows first (during a model swap both show)."""
    key = windows_key(prefix)
    raw: dict[bytes, bytes] = client.hgetall(key)  # type: ignore[assignment]
    now = time.time()
    live: list[Published] = []
    stale: list[bytes] = []
    for consumer, value in raw.items():
        try:
            entry = _decoder.decode(value)
        except msgspec.DecodeError:
            entry = None
        if entry is None or now - entry.at > stale_s:
            stale.append(consumer)
        else:
            live.append(entry)
    if stale:
        client.hdel(key, *stale)
    return sorted(_per_version(live, min_rows), key=lambda f: -f.rows)


def _per_version(entries: list[Published], min_rows: int) -> list[DriftFigures]:
    found = []
    for version in {e.model_version for e in entries}:
        mine = [e for e in entries if e.model_version == version]
        try:
            reference = Reference.from_meta({"drift": mine[0].reference})
        except (DriftError, KeyError, TypeError) as exc:
            log.warning("drift: model %s: unreadable reference: %r", version, exc)
            continue
        if reference is None:
            continue
        size = Layout(reference).size
        counts = np.zeros(size, dtype=np.int64)
        for e in mine:
            if len(e.counts) == size:
                counts += np.asarray(e.counts, dtype=np.int64)
        rows = sum(e.rows for e in mine if len(e.counts) == size)
        found.append(figures(reference, version, counts, rows, min_rows))
    return found
