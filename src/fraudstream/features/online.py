"""The online feature engine: point-in-time features for a batch, then the state update.

Per batch, two round trips whatever its size: one ``MGET`` of every key the batch needs (the
customer blobs, the shared tile blocks, the terminals' known-fraud stamps) and one
``MULTI … EXEC`` writing them back (``SET … IFEQ old`` per customer, one ``BITFIELD INCRBY``
per shared block). All window arithmetic happens here, vectorised over the batch with numpy;
the server only copies bytes and adds integers.

Point in time: transaction ``i`` sees the stored state plus the earlier transactions of the
same batch (same entity, processing order) plus itself, never a later one. Idempotent: a
transaction whose id is in its customer's recent history (the last ``history`` transactions)
or earlier in the batch is scored but changes nothing (`EngineStats.duplicates`). Late: a
transaction older than the engine's watermark minus ``lateness_s`` is scored but not stored
(`EngineStats.late`); within the lateness it lands in its own tile.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import redis
from numpy.typing import NDArray

from fraudstream.errors import SchemaError
from fraudstream.features.definitions import ENTITIES, FeatureSet, default_feature_set
from fraudstream.features.kernels import (
    GRID,
    LATLON,
    NONE_TS,
    RawInputs,
    cells,
    finalize,
    to_cents,
)
from fraudstream.features.layout import (
    KEY_TAG,
    Q_CLIP_CENTS,
    SHIFT,
    US,
    Family,
    Plan,
    compile_plan,
    empty_blobs,
)
from fraudstream.features.wire import (
    LABEL_FUNCTION,
    FeatureStoreError,
    Session,
    WatchConflict,
    Wire,
    first_error,
)
from fraudstream.schema import Label, Transaction

I64 = NDArray[np.int64]
_BLOCK_KEY = 1 << 32
"""(entity code, block) packed in one int64 for `numpy.unique`."""
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


@dataclass
class EngineStats:
    processed: int = 0
    duplicates: int = 0
    late: int = 0
    labels_applied: int = 0
    labels_duplicate: int = 0
    labels_late: int = 0
    labels_ignored: int = 0
    """Labels saying "genuine": they change no feature."""


@dataclass
class _Batch:
    """Columns of one batch of transactions."""

    ts: I64
    cents: I64
    amount: NDArray[np.float64]
    channel: NDArray[np.object_]
    ids: dict[str, list[str | None]]
    txid: NDArray[np.uint64]
    loc_sys: NDArray[np.uint8]
    loc_a: NDArray[np.float64]
    loc_b: NDArray[np.float64]


def epoch_us(stamp: datetime) -> int:
    """Exact microseconds since the epoch of an aware datetime."""
    return (stamp - EPOCH) // _ONE_US


def tx_hash(transaction_id: str) -> int:
    digest = hashlib.blake2b(transaction_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class FeatureEngine:
    """Online features over Valkey for batches of transactions.

    Args:
        client: a redis-py client (decode_responses must be off).
        definitions: the feature set (default: `default_feature_set`).
        namespace: prefix of every key (``fs:{c:42}``): several engines can share a server.
        lateness_s: how late (event time behind the watermark) a transaction may be and still
            update state; it also sizes the tile rings, so `backfill` must be given the same.
        max_future_skew_s: a transaction further in the future than this (vs. ``clock``) is
            rejected with a `SchemaError` naming ``timestamp``.
        ttl_s: idle customers and terminals' known-fraud stamps expire after this.
        cas: ``WATCH`` the batch's customer keys between the read and the ``EXEC``: if another
            writer changed one (two workers on a partition), nothing of the batch is written
            and `FeatureStoreError` is raised. Costs ~0.3 µs of server time per customer.
        clock: wall clock in epoch seconds (tests pass a fixed one).
    """

    def __init__(
        self,
        client: redis.Redis,
        definitions: FeatureSet | None = None,
        *,
        namespace: str = "fs",
        lateness_s: int = 3600,
        max_future_skew_s: float = 300.0,
        ttl_s: int = 90 * 86400,
        cas: bool = True,
        clock: Any = time.time,
    ) -> None:
        self.plan: Plan = compile_plan(definitions or default_feature_set(), lateness_s=lateness_s)
        self.names: list[str] = self.plan.names
        self.namespace = namespace
        self.lateness_us = lateness_s * US
        self.max_future_skew_s = max_future_skew_s
        self.ttl_s = ttl_s
        self.clock = clock
        self.client = client
        self.stats = EngineStats()
        self.timings: dict[str, float] = {}
        """Seconds spent per phase (columns, read, compute, encode, write), accumulated."""
        self.last_io: tuple[list[str], list[tuple[Any, ...]]] | None = None
        """With ``record_io``: the keys read and commands written by the last batch."""
        self.record_io = False
        self._wire = Wire(client)
        self._watermark = -(1 << 62)  # "no event yet", far from int64 overflow
        self._cas = cas
        self._labelled = [f for f in self.plan.shared if "f" in f.counters]
        if self._labelled or self._wants_known_fraud():
            client.function_load(LABEL_FUNCTION, replace=True)

    # --- keys -------------------------------------------------------------------------------

    def customer_key(self, customer_id: str) -> str:
        return f"{self.namespace}:{{c:{customer_id}}}"

    def block_key(self, fam: Family, entity_id: str, block: int) -> str:
        return f"{self.namespace}:{{{KEY_TAG[fam.entity]}:{entity_id}}}:{fam.tag}:{block}"

    def known_fraud_key(self, terminal_id: str) -> str:
        return f"{self.namespace}:{{t:{terminal_id}}}:kf"

    def _wants_known_fraud(self) -> bool:
        return any(d.kind.startswith("days_since") for d in self.plan.features.derived)

    # --- validation ------------------------------------------------------------------------

    def check(self, tx: Transaction) -> int:
        """Event time of ``tx`` in µs.

        Raises:
            SchemaError: naming the field (``timestamp`` too far in the future).
        """
        if tx.timestamp.tzinfo is None:
            raise SchemaError("timestamp", "must carry a timezone")
        ts = epoch_us(tx.timestamp)
        ahead = ts / US - self.clock()
        if ahead > self.max_future_skew_s:
            raise SchemaError(
                "timestamp",
                f"{tx.timestamp.isoformat()} is {ahead:.0f} s in the future "
                f"(max skew {self.max_future_skew_s:g} s)",
            )
        return ts

    def _columns(self, txs: Sequence[Transaction]) -> _Batch:
        ts = np.array([self.check(tx) for tx in txs], dtype=np.int64)
        amount = np.array([tx.amount for tx in txs], dtype=np.float64)
        ids = {e: [getattr(tx, field) for tx in txs] for e, field in ENTITIES.items()}
        sys = np.zeros(len(txs), dtype=np.uint8)
        a = np.full(len(txs), np.nan)
        b = np.full(len(txs), np.nan)
        for i, tx in enumerate(txs):
            if tx.lat is not None and tx.lon is not None:
                sys[i], a[i], b[i] = LATLON, tx.lat, tx.lon
            elif tx.x is not None and tx.y is not None:
                sys[i], a[i], b[i] = GRID, tx.x, tx.y
        return _Batch(
            ts=ts,
            cents=to_cents(amount),
            amount=amount,
            channel=np.array([tx.channel for tx in txs], dtype=object),
            ids=ids,
            txid=np.array([tx_hash(tx.transaction_id) for tx in txs], dtype=np.uint64),
            loc_sys=sys,
            loc_a=a,
            loc_b=b,
        )

    # --- the batch -------------------------------------------------------------------------

    def compute_batch(self, txs: Sequence[Transaction]) -> NDArray[np.float64]:
        """Features of each transaction (rows in order), then the state updated.

        Raises:
            SchemaError: a transaction is invalid (nothing is read or written then).
            FeatureStoreError: Valkey failed, or another writer changed a customer's state
                during the batch (two workers own one partition).
        """
        if not txs:
            return np.zeros((0, len(self.names)))
        started = time.perf_counter()
        batch = self._columns(txs)
        self._tick("columns", started)
        return _BatchRun(self, batch).run()

    def _tick(self, phase: str, since: float) -> float:
        now = time.perf_counter()
        self.timings[phase] = self.timings.get(phase, 0.0) + now - since
        return now

    def apply_labels(self, labels: Sequence[Label]) -> None:
        """Count fraud labels in the terminal state of their transaction's tile, once each.

        Raises:
            SchemaError: a fraud label without ``terminal_id`` / ``tx_timestamp``, or
                reported before its transaction.
        """
        commands = []
        for label in labels:
            if not label.is_fraud:
                self.stats.labels_ignored += 1
                continue
            commands.append(self._label_command(label))
        if not commands:
            return
        replies = self._wire.run(commands)
        if (err := first_error(replies)) is not None:
            raise FeatureStoreError(f"applying labels failed: {err}")
        applied = sum(1 for r in replies if r == 1)
        self.stats.labels_applied += applied
        self.stats.labels_duplicate += len(replies) - applied

    def _label_command(self, label: Label) -> tuple[Any, ...]:
        if label.terminal_id is None:
            raise SchemaError("terminal_id", "a fraud label needs the transaction's terminal")
        if label.tx_timestamp is None:
            raise SchemaError("tx_timestamp", "a fraud label needs the transaction's time")
        tx_ts, rep = epoch_us(label.tx_timestamp), epoch_us(label.reported_at)
        if tx_ts > rep:
            raise SchemaError("reported_at", "before the labelled transaction")
        tid = label.terminal_id
        keys = [
            f"{self.namespace}:{{t:{tid}}}:lb:{label.transaction_id}",
            self.known_fraud_key(tid),
        ]
        args: list[Any] = [self._label_marker_ttl(), tx_ts, self.ttl_s]
        for fam in self._labelled:
            x, now = tx_ts // fam.tile_us, rep // fam.tile_us
            if x < now - fam.span + 1:
                self.stats.labels_late += 1
                continue
            block = x // fam.slots
            keys.append(self.block_key(fam, tid, block))
            shift = fam.word_of("f")[1]
            ttl = _block_ttl(fam, block, self.plan.lateness_s, rep)
            args += [fam.bit_offset("f", x % fam.slots), 1 << shift, ttl]
        return ("FCALL", "fs_label", len(keys), *keys, *args)

    def _label_marker_ttl(self) -> int:
        spans = [f.span * f.tile_s for f in self._labelled] or [86400]
        return max(spans) + self.plan.lateness_s + 86400

    def sweep(self) -> int:
        """Delete the tile blocks no window can reach any more (as of the watermark).

        In real time their TTLs do this; after a replay, where event time ran faster than the
        wall clock, call it to get the steady-state footprint. Returns the keys deleted.
        """
        deleted = 0
        for fam in self.plan.shared:
            horizon = self._watermark // fam.tile_us - fam.span - self.plan.lateness_s // fam.tile_s
            pattern = f"{self.namespace}:{{{KEY_TAG[fam.entity]}:*}}:{fam.tag}:*"
            stale = [
                key
                for key in self.client.scan_iter(match=pattern, count=1000)
                if (int(key.rsplit(b":", 1)[1]) + 1) * fam.slots <= horizon
            ]
            for lo in range(0, len(stale), 1000):
                deleted += int(self.client.unlink(*stale[lo : lo + 1000]))
        return deleted

    # --- inspection ------------------------------------------------------------------------

    def customer_state(self, customer_id: str) -> dict[str, object]:
        """The live state of one customer, decoded (for ``fraudstream features show``)."""
        raw = self.client.get(self.customer_key(customer_id))
        if not isinstance(raw, bytes):
            return {"customer_id": customer_id, "exists": False}
        blob = _decode_blobs(self.plan, [raw])[0]
        k = self.plan.features.history
        head = int(blob["head"])
        recent = [(head - 1 - j) % k for j in range(min(head, k))]
        out: dict[str, object] = {
            "customer_id": customer_id,
            "exists": True,
            "bytes": len(raw),
            "writes": int(blob["seq"]),
            "transactions_seen": head,
            "history": [
                {
                    "timestamp": _iso(int(blob["h_ts"][j])),
                    "amount": int(blob["h_cents"][j]) / 100,
                    "cell": int(blob["h_cell"][j]),
                }
                for j in recent
            ],
        }
        if blob["loc_sys"]:
            out["last_location"] = {
                "system": "latlon" if blob["loc_sys"] == LATLON else "grid",
                "a": float(blob["loc_a"]),
                "b": float(blob["loc_b"]),
                "timestamp": _iso(int(blob["loc_ts"])),
            }
        tiles: dict[str, object] = {}
        for fam in self.plan.owned:
            live = blob[f"r{fam.index}_tile"] >= 0
            tiles[fam.tag] = {
                int(t): {c: int(blob[f"r{fam.index}_{c}"][s]) for c in fam.counters}
                for s, t in sorted(
                    zip(np.flatnonzero(live), blob[f"r{fam.index}_tile"][live], strict=True),
                    key=lambda p: int(p[1]),
                )
            }
        out["tiles"] = tiles
        return out


def _iso(us: int) -> str:
    return (EPOCH + timedelta(microseconds=us)).isoformat()


def _block_ttl(fam: Family, block: int, lateness_s: int, now_us: int) -> int:
    """Seconds (of event time from ``now_us``) until no window can reach the block."""
    end_us = ((block + 1) * fam.slots + fam.span) * fam.tile_us + lateness_s * US
    return max(1, int((end_us - now_us) // US) + 1)


def _decode_blobs(plan: Plan, raws: Sequence[bytes | None]) -> np.ndarray:
    size = plan.blob.itemsize
    template = empty_blobs(plan, 1).tobytes()
    parts = []
    for raw in raws:
        if raw is None:
            parts.append(template)
        elif len(raw) != size:
            raise FeatureStoreError(
                f"customer state has {len(raw)} bytes, expected {size} "
                "(written by another feature set? use another namespace)"
            )
        else:
            parts.append(raw)
    return np.frombuffer(b"".join(parts), dtype=plan.blob).copy()


def _unpack(mat: NDArray[np.uint8], fam: Family) -> dict[str, I64]:
    """Every counter of every block row (BITFIELD words are big-endian int64)."""
    out: dict[str, I64] = {}
    size = fam.slots * 8
    for w, members in enumerate(fam.words):
        raw = np.ascontiguousarray(mat[:, w * size : (w + 1) * size])
        word = raw.view(">i8").astype(np.int64)
        if len(members) == 1:
            out[members[0]] = word
        else:
            shift = SHIFT[members[1]]
            out[members[0]] = word & ((1 << shift) - 1)
            out[members[1]] = word >> shift
    return out


def _pairs(codes: I64) -> tuple[I64, I64]:
    """All (later, earlier) positions with the same code (codes < 0 never pair)."""
    order = np.argsort(codes, kind="stable")
    sc = codes[order]
    later: list[I64] = []
    earlier: list[I64] = []
    k = 1
    while k < len(sc):
        same = (sc[k:] == sc[:-k]) & (sc[k:] >= 0)
        if not same.any():
            break
        later.append(order[k:][same])
        earlier.append(order[:-k][same])
        k += 1
    if not later:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    return np.concatenate(later), np.concatenate(earlier)


class _BatchRun:
    """One `compute_batch`: read, compute, write (split out to keep each step small)."""

    def __init__(self, engine: FeatureEngine, batch: _Batch) -> None:
        self.e = engine
        self.plan = engine.plan
        self.b = batch
        self.n = len(batch.ts)
        self.codes: dict[str, I64] = {}
        self.uniq: dict[str, list[str]] = {}
        for entity in ENTITIES:
            index: dict[str, int] = {}
            codes = np.array(
                [-1 if v is None else index.setdefault(v, len(index)) for v in batch.ids[entity]],
                dtype=np.int64,
            )
            self.codes[entity] = codes
            self.uniq[entity] = list(index)
        self._pairs: dict[str, tuple[I64, I64]] = {}
        self._layout: dict[str, Any] = {}
        self._runs: tuple[I64, I64, I64] = (np.zeros(0, np.int64),) * 3

    def run(self) -> NDArray[np.float64]:
        e = self.e
        t = time.perf_counter()
        keys, layout = self._keys()
        self._layout = layout
        t = e._tick("keys", t)
        with e._wire.session() as session:
            read: list[tuple[Any, ...]] = [("MGET", *keys)]
            if e._cas:
                read.insert(0, ("WATCH", *keys[: len(self.uniq["customer"])]))
            values = list(session.run(read)[-1])
            t = e._tick("read", t)
            blobs, blocks, known = self._decode(values, layout)
            valid = self._valid(blobs)
            raw = self._raw(blobs, blocks, known, valid)
            features = finalize(self.plan, raw)
            e._tick("compute", t)
            self._write(session, blobs, values, valid)
        if e.record_io:
            e.last_io = (keys, self._commands)
        return features

    # --- read ------------------------------------------------------------------------------

    def prefixes(self, fam: Family) -> list[str]:
        """Block key of each distinct entity of the batch, without the block number."""
        ns, tag = self.e.namespace, KEY_TAG[fam.entity]
        return [f"{ns}:{{{tag}:{v}}}:{fam.tag}:" for v in self.uniq[fam.entity]]

    def _keys(self) -> tuple[list[str], dict[str, Any]]:
        e, b = self.e, self.b
        keys = [e.customer_key(c) for c in self.uniq["customer"]]
        layout: dict[str, Any] = {"blocks": {}}
        for fam in self.plan.shared:
            code = self.codes[fam.entity]
            tile = b.ts // fam.tile_us
            blocks = np.stack([(tile - fam.span + 1) // fam.slots, tile // fam.slots], axis=1)
            has = code >= 0
            combo = code[has, None] * _BLOCK_KEY + blocks[has]
            uniq, inverse = np.unique(combo, return_inverse=True)
            rows = np.full((self.n, 2), -1, dtype=np.int64)
            rows[has] = inverse.reshape(-1, 2)
            prefix = self.prefixes(fam)
            start = len(keys)
            keys += [prefix[int(u // _BLOCK_KEY)] + str(int(u % _BLOCK_KEY)) for u in uniq]
            layout["blocks"][fam.index] = (start, uniq, rows)
        layout["kf_start"] = len(keys)
        if e._wants_known_fraud():
            keys += [e.known_fraud_key(t) for t in self.uniq["terminal"]]
        return keys, layout

    def _decode(
        self, values: list[Any], layout: dict[str, Any]
    ) -> tuple[np.ndarray, dict[int, dict[str, I64]], tuple[I64, I64]]:
        nc = len(self.uniq["customer"])
        blobs = _decode_blobs(self.plan, values[:nc])
        blocks: dict[int, dict[str, I64]] = {}
        for fam in self.plan.shared:
            start, uniq, _ = layout["blocks"][fam.index]
            raw = values[start : start + len(uniq)]
            size = fam.block_bytes
            buf = b"".join([(r or b"").ljust(size, b"\0")[:size] for r in raw]) + bytes(size)
            mat = np.frombuffer(buf, dtype=np.uint8).reshape(len(raw) + 1, size)
            blocks[fam.index] = _unpack(mat, fam)
        nt = len(self.uniq["terminal"])
        first = np.full(nt, NONE_TS, dtype=np.int64)
        last = np.full(nt, NONE_TS, dtype=np.int64)
        if self.e._wants_known_fraud():
            for j, v in enumerate(values[layout["kf_start"] : layout["kf_start"] + nt]):
                if v:
                    a, _, z = v.partition(b":")
                    first[j], last[j] = int(a), int(z)
        code = self.codes["terminal"]
        return blobs, blocks, (first[code], last[code])

    def _valid(self, blobs: np.ndarray) -> NDArray[np.bool_]:
        """Not a duplicate (of the customer's recent history or earlier in the batch), not
        late; advances the watermark."""
        b, e = self.b, self.e
        cust = self.codes["customer"]
        k = self.plan.features.history
        ring = blobs["h_id"][cust]
        filled = np.arange(k)[None, :] < np.minimum(blobs["head"][cust], k)[:, None]
        dup = ((ring == b.txid[:, None]) & filled).any(axis=1)
        _, first = np.unique(b.txid, return_index=True)
        repeat = np.ones(self.n, dtype=bool)
        repeat[first] = False
        dup |= repeat
        marks = np.maximum.accumulate(np.concatenate([[e._watermark], b.ts]))
        late = b.ts < marks[:-1] - e.lateness_us
        e._watermark = int(marks[-1])
        e.stats.duplicates += int(dup.sum())
        e.stats.late += int((late & ~dup).sum())
        valid: NDArray[np.bool_] = ~dup & ~late
        return valid

    # --- compute ---------------------------------------------------------------------------

    def _contrib(self, fam: Family, valid: NDArray[np.bool_]) -> dict[str, I64]:
        b = self.b
        w = valid & (self.codes[fam.entity] >= 0)
        if fam.where:
            w &= b.channel == fam.where
        wi = w.astype(np.int64)
        out = {"n": wi, "s": wi * b.cents, "f": np.zeros(self.n, dtype=np.int64)}
        out["q"] = wi * np.minimum(b.cents, Q_CLIP_CENTS) ** 2
        return out

    def _grid(
        self, fam: Family, blobs: np.ndarray, blocks: dict[int, dict[str, I64]], valid: Any
    ) -> dict[str, I64]:
        """Per transaction, the counters of the ``span`` tiles ending with its own, as it
        sees them: stored state + earlier valid transactions of the batch + itself."""
        s = fam.span
        tile = self.b.ts // fam.tile_us
        tiles = tile[:, None] - s + 1 + np.arange(s)[None, :]
        code = self.codes[fam.entity]
        if fam.owned:
            rows = np.maximum(code, 0)
            slot = tiles % fam.slots
            held = blobs[f"r{fam.index}_tile"][rows[:, None], slot] == tiles
            grid = {
                c: np.where(held, blobs[f"r{fam.index}_{c}"][rows[:, None], slot], 0).astype(
                    np.int64
                )
                for c in fam.counters
            }
        else:
            _, _, idx = self._layout["blocks"][fam.index]
            missing = len(blocks[fam.index][fam.counters[0]]) - 1
            first_blk = (tile - s + 1) // fam.slots
            use_first = (tiles // fam.slots) == first_blk[:, None]
            row = np.where(use_first, idx[:, 0:1], idx[:, 1:2])
            row = np.where(row < 0, missing, row)
            grid = {c: blocks[fam.index][c][row, tiles % fam.slots] for c in fam.counters}
        contrib = self._contrib(fam, valid)
        later, earlier = self._pair_cache(fam.entity)
        off = tile[earlier] - (tile[later] - s + 1)
        keep = (off >= 0) & (off < s) & valid[earlier]
        for c in fam.counters:
            if c == "f":
                continue
            np.add.at(grid[c], (later[keep], off[keep]), contrib[c][earlier[keep]])
            grid[c][:, s - 1] += contrib[c]
        return grid

    def _pair_cache(self, entity: str) -> tuple[I64, I64]:
        if entity not in self._pairs:
            self._pairs[entity] = _pairs(self.codes[entity])
        return self._pairs[entity]

    def _raw(
        self,
        blobs: np.ndarray,
        blocks: dict[int, dict[str, I64]],
        known: tuple[I64, I64],
        valid: NDArray[np.bool_],
    ) -> RawInputs:
        b = self.b
        sums: dict[str, dict[str, I64]] = {}
        for fam in self.plan.families:
            grid = self._grid(fam, blobs, blocks, valid)
            for agg in fam.aggregates:
                hi = fam.span - agg.lag
                sums[agg.name] = {c: grid[c][:, hi - agg.tiles : hi].sum(axis=1) for c in grid}
        prev_ts, prev_cents, prev_cell, last = self._history(blobs, valid)
        return RawInputs(
            ts=b.ts,
            cents=b.cents,
            amount=b.amount,
            loc_sys=b.loc_sys,
            loc_a=b.loc_a,
            loc_b=b.loc_b,
            sums=sums,
            present={e: self.codes[e] >= 0 for e in ENTITIES},
            prev_ts=prev_ts,
            prev_cents=prev_cents,
            prev_cell=prev_cell,
            last_loc_sys=last[0].astype(np.uint8),
            last_loc_a=last[1],
            last_loc_b=last[2],
            last_loc_ts=last[3].astype(np.int64),
            fraud_first=known[0],
            fraud_last=known[1],
        )

    def _customer_runs(self, valid: NDArray[np.bool_]) -> tuple[I64, I64, I64]:
        """Valid transactions grouped by customer (batch order inside a group), each group's
        start, and per transaction how many valid ones of its customer precede it."""
        cust = self.codes["customer"]
        vb = np.flatnonzero(valid)
        vb = vb[np.argsort(cust[vb], kind="stable")]
        nc = len(self.uniq["customer"])
        starts = np.searchsorted(cust[vb], np.arange(nc), side="left")
        before = np.zeros(self.n, dtype=np.int64)
        later, earlier = self._pair_cache("customer")
        np.add.at(before, later, valid[earlier].astype(np.int64))
        return vb, starts, before

    def _history(self, blobs: np.ndarray, valid: NDArray[np.bool_]) -> tuple[Any, Any, Any, Any]:
        b, k = self.b, self.plan.features.history
        cust = self.codes["customer"]
        vb, starts, before = self._customer_runs(valid)
        self._runs = (vb, starts, before)
        cols = np.arange(k)[None, :]
        in_batch = cols < before[:, None]
        if len(vb):
            bi = vb[np.clip(starts[cust][:, None] + before[:, None] - 1 - cols, 0, len(vb) - 1)]
        else:
            bi = np.zeros((self.n, k), dtype=np.int64)
        head = blobs["head"][cust].astype(np.int64)
        age = cols - before[:, None]
        in_ring = ~in_batch & (age < np.minimum(head, k)[:, None])
        ri = (head[:, None] - 1 - age) % k
        rows = cust[:, None]
        cell_now = cells(self.plan, b.loc_sys, b.loc_a, b.loc_b)
        bi_ok = np.where(in_batch, bi, 0)
        prev_ts = np.where(
            in_batch, b.ts[bi_ok], np.where(in_ring, blobs["h_ts"][rows, ri], NONE_TS)
        )
        prev_cents = np.where(
            in_batch, b.cents[bi_ok], np.where(in_ring, blobs["h_cents"][rows, ri], 0)
        )
        prev_cell = np.where(
            in_batch,
            cell_now[bi_ok],
            np.where(in_ring, blobs["h_cell"][rows, ri].astype(np.int64), 0),
        )
        return prev_ts, prev_cents, prev_cell, self._last_location(blobs, vb, starts, before)

    def _last_location(self, blobs: np.ndarray, vb: I64, starts: I64, before: I64) -> Any:
        b = self.b
        cust = self.codes["customer"]
        located = b.loc_sys[vb] > 0
        acc = np.maximum.accumulate(np.where(located, np.arange(len(vb)), -1)) if len(vb) else vb
        p = starts[cust] + before - 1
        has = (before > 0) & (acc[np.clip(p, 0, None)] >= starts[cust]) if len(vb) else before < 0
        src = vb[acc[np.clip(p, 0, None)]] if len(vb) else np.zeros(self.n, dtype=np.int64)
        src = np.where(has, src, 0)
        bl = blobs[cust]
        sys = np.where(has, b.loc_sys[src], bl["loc_sys"])
        a = np.where(has, b.loc_a[src], np.where(bl["loc_sys"] > 0, bl["loc_a"], np.nan))
        bb = np.where(has, b.loc_b[src], np.where(bl["loc_sys"] > 0, bl["loc_b"], np.nan))
        ts = np.where(has, b.ts[src], np.where(bl["loc_sys"] > 0, bl["loc_ts"], NONE_TS))
        return sys, a, bb, ts

    # --- write -----------------------------------------------------------------------------

    def _write(
        self, session: Session, blobs: np.ndarray, values: list[Any], valid: NDArray[np.bool_]
    ) -> None:
        self._commands: list[tuple[Any, ...]] = []
        if not valid.any():
            return
        t = time.perf_counter()
        commands: list[tuple[Any, ...]] = []
        touched = self._update_blobs(blobs, valid)
        e = self.e
        rows = np.flatnonzero(touched).tolist()
        size = self.plan.blob.itemsize
        packed = blobs[rows].tobytes()
        names = self.uniq["customer"]
        for j, u in enumerate(rows):
            new = packed[j * size : (j + 1) * size]
            commands.append(("SET", e.customer_key(names[u]), new, "EX", e.ttl_s))
        for fam in self.plan.shared:
            commands += self._block_commands(fam, values, valid)
        self._commands = commands
        t = e._tick("encode", t)
        try:
            replies = session.run(commands, atomic=True)
        except WatchConflict:
            raise FeatureStoreError(
                "customer state changed by another writer during the batch; nothing was "
                "written (two workers own one partition?)"
            ) from None
        e._tick("write", t)
        if (err := first_error(replies)) is not None:
            raise FeatureStoreError(f"writing feature state failed: {err}")
        e.stats.processed += int(valid.sum())

    def _update_blobs(self, blobs: np.ndarray, valid: NDArray[np.bool_]) -> NDArray[np.bool_]:
        b = self.b
        cust = self.codes["customer"]
        vb = np.flatnonzero(valid)
        rows = cust[vb]
        for fam in self.plan.owned:
            tile = (b.ts[vb] // fam.tile_us).astype(np.int64)
            slot = tile % fam.slots
            tiles = blobs[f"r{fam.index}_tile"]
            before_tiles = tiles.copy()
            np.maximum.at(tiles, (rows, slot), tile)
            moved = tiles != before_tiles
            contrib = self._contrib(fam, valid)
            current = tiles[rows, slot] == tile
            for c in fam.counters:
                arr = blobs[f"r{fam.index}_{c}"]
                arr[moved] = 0
                np.add.at(arr, (rows[current], slot[current]), contrib[c][vb][current])
        k = self.plan.features.history
        vbs, starts, before = self._runs
        head = blobs["head"].astype(np.int64)
        pos = (head[rows] + before[vb]) % k
        blobs["h_ts"][rows, pos] = b.ts[vb]
        blobs["h_cents"][rows, pos] = b.cents[vb]
        blobs["h_cell"][rows, pos] = cells(self.plan, b.loc_sys, b.loc_a, b.loc_b)[vb]
        blobs["h_id"][rows, pos] = b.txid[vb]
        counts = np.bincount(rows, minlength=len(blobs))
        blobs["head"] = (head + counts).astype(np.uint32)
        located = vb[b.loc_sys[vb] > 0]
        blobs["loc_sys"][cust[located]] = b.loc_sys[located]
        blobs["loc_a"][cust[located]] = b.loc_a[located]
        blobs["loc_b"][cust[located]] = b.loc_b[located]
        blobs["loc_ts"][cust[located]] = b.ts[located]
        touched = counts > 0
        blobs["seq"][touched] += 1
        return touched

    def _block_commands(
        self, fam: Family, values: list[Any], valid: NDArray[np.bool_]
    ) -> list[tuple[Any, ...]]:
        """One ``BITFIELD`` per touched block with every increment of the batch (summed per
        tile); a block read as absent also gets its TTL and deletes its stale predecessors."""
        start, uniq, rows = self._layout["blocks"][fam.index]
        contrib = self._contrib(fam, valid)
        counted = [c for c in fam.counters if c != "f"]
        use = np.flatnonzero(contrib["n"] > 0)
        if not counted or not len(use):
            return []
        slots = fam.slots
        combo = rows[use, 1] * slots + (self.b.ts[use] // fam.tile_us) % slots
        cells, inverse = np.unique(combo, return_inverse=True)
        totals = {
            c: np.bincount(inverse, weights=contrib[c][use]).astype(np.int64) for c in counted
        }
        first_ts = np.full(len(uniq), np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(first_ts, rows[use, 1], self.b.ts[use])
        prefix = self.prefixes(fam)
        words = []
        for w, members in enumerate(fam.words):
            value = np.zeros(len(cells), dtype=np.int64)
            for c in members:
                if c != "f":
                    value += totals[c] << fam.word_of(c)[1]
            if members != ("f",):
                words.append((w * slots * 64, value.tolist()))
        out: list[tuple[Any, ...]] = []
        current = -1
        args: list[Any] = []
        after: list[tuple[Any, ...]] = []
        for j, cell in enumerate(cells.tolist()):
            row, slot = divmod(cell, slots)
            if row != current:
                if args:
                    out += [tuple(args), *after]
                current = row
                code, block = divmod(int(uniq[row]), _BLOCK_KEY)
                key = prefix[code] + str(block)
                args = ["BITFIELD", key, "OVERFLOW", "WRAP"]
                after = []
                if values[start + row] is None:
                    ttl = _block_ttl(fam, block, self.plan.lateness_s, int(first_ts[row]))
                    after = [("EXPIRE", key, ttl)]
            for base, increments in words:
                args += ["INCRBY", "i64", base + slot * 64, increments[j]]
        if args:
            out += [tuple(args), *after]
        return out
