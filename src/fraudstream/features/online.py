"""The online feature engine: point-in-time features for a batch, then the state update.

Per batch, whatever its size: one ``MGET`` of every key the batch needs (the customer blobs,
the shared tile blocks, the terminals' known-fraud stamps; the customer keys ``WATCH``ed)
and one ``MULTI … EXEC`` writing them back (``SET`` per customer, one ``BITFIELD INCRBY``
per shared block). All window arithmetic happens in the worker, vectorised over the batch
(`fraudstream.features.batch` reads and computes, `fraudstream.features.write` builds the
writes, `fraudstream.features.resp` encodes them); the server only copies bytes and adds
integers. The write is sent without waiting for it: the features are computed while the
server applies it, `FeatureEngine.submit` returns them with the write still executing, and
the next batch's read follows it on the same connection (`FeatureEngine.confirm`, or that
batch, collects its outcome). `FeatureEngine.compute_batch` confirms before returning;
`FeatureEngine.start` / `FeatureEngine.finish` let a process keep two partitions' batches
in flight. This module holds the engine's API: keys, validation, labels, sweeping,
inspection.

Point in time: transaction ``i`` sees the stored state plus the earlier transactions of the
same batch (same entity, processing order) plus itself, never a later one. Idempotent: a
transaction whose id is in its customer's kept history (the ``history`` newest
transactions) or earlier in the batch is scored but changes nothing
(`EngineStats.duplicates`). Late: a transaction older than its customer's newest one by
more than ``lateness_s``, or not newer than all of a full history (it may be a redelivery
of one the history dropped), is scored but not stored (`EngineStats.late`); within these
it lands in its own tile, and the state does not depend on the arrival order (see
`fraudstream.features`, "Out of order").
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fraudstream.errors import SchemaError
from fraudstream.features.batch import BatchRun, decode_blobs
from fraudstream.features.context import Batch, EngineContext, EngineStats
from fraudstream.features.definitions import (
    DISTINCT_FIELDS,
    ENTITIES,
    FeatureSet,
    default_feature_set,
)
from fraudstream.features.kernels import to_cents
from fraudstream.features.layout import GRID, KEY_TAG, LATLON, US, Family, Plan, compile_plan
from fraudstream.features.profiles import decode_profiles, profile_key
from fraudstream.features.route import wire_for
from fraudstream.features.wire import (
    FUNCTIONS,
    Client,
    Command,
    Riders,
    is_cluster,
)
from fraudstream.features.write import block_ttl
from fraudstream.schema import Label, Transaction

log = logging.getLogger(__name__)
ID_BITS = (1 << 63) - 1
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


def epoch_us(stamp: datetime) -> int:
    """Exact microseconds since the epoch of an aware datetime."""
    return (stamp - EPOCH) // _ONE_US


def tx_hash(transaction_id: str) -> int:
    """63 bits of BLAKE2b: the history keeps a flag in the top bit (`layout.NEW_PLACE`)."""
    digest = hashlib.blake2b(transaction_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ID_BITS


class FeatureEngine:
    """Online features over Valkey for batches of transactions.

    Args:
        client: a redis-py client (decode_responses must be off).
        definitions: the feature set (default: `default_feature_set`).
        namespace: prefix of every key (``fs:{c:42}``): several engines can share a server.
        lateness_s: how late (event time behind its customer's newest transaction) a
            transaction may be and still update state; it also sizes the tile rings, so
            `backfill` must be given the same.
        max_future_skew_s: a transaction further in the future than this (vs. ``clock``) is
            rejected with a `SchemaError` naming ``timestamp``.
        ttl_s: idle customers and terminals' known-fraud stamps expire after this.
        cas: ``WATCH`` the batch's customer keys between the read and the ``EXEC``: if another
            writer changed one (two workers on a partition), nothing of the batch is written
            and `FeatureStoreError` is raised. Costs ~5 µs of server time per customer at
            ~400 customers a batch (WATCH compares each key with those already watched).
        clock: wall clock in epoch seconds (tests pass a fixed one).
        warm_up: compile the batch kernels now (`_warm_up`); off for an engine that only
            inspects or sweeps state.
    """

    def __init__(
        self,
        client: Client,
        definitions: FeatureSet | None = None,
        *,
        namespace: str = "fs",
        lateness_s: int = 3600,
        max_future_skew_s: float = 300.0,
        ttl_s: int = 90 * 86400,
        cas: bool = True,
        clock: Any = time.time,
        warm_up: bool = True,
    ) -> None:
        self.plan: Plan = compile_plan(definitions or default_feature_set(), lateness_s=lateness_s)
        self.names: list[str] = self.plan.names
        self.max_future_skew_s = max_future_skew_s
        self.clock = clock
        self.client = client
        self.ctx = EngineContext(
            self.plan,
            wire_for(client),
            namespace=namespace,
            ttl_s=ttl_s,
            lateness_s=lateness_s,
            cas=cas,
            cluster=is_cluster(client),
        )
        """What this engine's batches share with it (`fraudstream.features.context`)."""
        self.last_io: tuple[list[str], list[tuple[Any, ...]]] | None = None
        """With ``record_io``: the keys read and commands written by the last batch."""
        self._started = False
        """A batch `start`ed and not yet `finish`ed: its read holds the connection."""
        self._labelled = [f for f in self.plan.shared if "f" in f.counters]
        if self._labelled or self.ctx.wants_known_fraud or self.cluster:
            client.function_load(FUNCTIONS, replace=True)
        if warm_up:
            self._warm_up()

    def _warm_up(self) -> None:
        """Compile the batch kernels (numba; or load them from its cache) now, with the
        argument types of a real batch: otherwise the first batch is seconds late, and a
        worker that late loses its partitions' leases. Reads and writes nothing."""
        when = datetime.fromtimestamp(min(self.clock(), 4e9), UTC)
        # One customer, then two: a lone customer's state is a contiguous array, several
        # customers' are strided views, and numba compiles each layout apart.
        txs = [
            Transaction(
                transaction_id=f"warm-up-{c}", timestamp=when, customer_id=c, terminal_id="w",
                merchant_id="w", amount=1.0, currency="EUR", channel="ecommerce", card_id="w",
                ip="192.0.2.1", device_id="w", product_category="w", lat=0.0, lon=0.0,
            )
            for c in ("w1", "w2")
        ]  # fmt: skip
        watermark, stats = self.ctx.watermark, EngineStats(**vars(self.stats))
        try:
            for batch in (txs[:1], txs):
                run = BatchRun(self.ctx, self._columns(batch))
                run.prepare()
                run.rehearse()
        finally:
            self.ctx.watermark, self.ctx.stats = watermark, stats
            self.timings.clear()

    # --- keys -------------------------------------------------------------------------------

    def customer_key(self, customer_id: str) -> str:
        return self.ctx.customer_key(customer_id)

    def block_key(self, fam: Family, entity_id: str, block: int) -> str:
        return self.ctx.block_key(fam, entity_id, block)

    def known_fraud_key(self, terminal_id: str) -> str:
        return self.ctx.known_fraud_key(terminal_id)

    # --- shared with the batches (`EngineContext`) ----------------------------------------

    @property
    def namespace(self) -> str:
        return self.ctx.namespace

    @property
    def ttl_s(self) -> int:
        return self.ctx.ttl_s

    @property
    def cluster(self) -> bool:
        """A cluster client: per-slot commands, see `Writer._write_cluster`."""
        return self.ctx.cluster

    @property
    def stats(self) -> EngineStats:
        return self.ctx.stats

    @property
    def timings(self) -> dict[str, float]:
        """Seconds spent per phase (columns, read, compute, encode, write), accumulated."""
        return self.ctx.timings

    @property
    def record_io(self) -> bool:
        """Keep the last batch's keys and commands in `last_io` (tests)."""
        return self.ctx.record_io

    @record_io.setter
    def record_io(self, on: bool) -> None:
        self.ctx.record_io = on

    @property
    def reply_spin_s(self) -> float:
        """How long a round trip polls for its reply before sleeping (`wire.Session`): for a
        caller that waits on each batch's replies with nothing else to do (the API's lone
        requests). 0 (sleep at once) by default."""
        return self.ctx.wire.spin_s

    @reply_spin_s.setter
    def reply_spin_s(self, seconds: float) -> None:
        self.ctx.wire.spin_s = seconds

    @property
    def hold_writes(self) -> bool:
        """Keep each batch's write unsent until `confirm`, which sends it with the caller's
        own commands in one transaction (the API keeps its decisions there). One node only:
        a cluster writes a batch's state as it computes it (`Writer._write_cluster`)."""
        return self.ctx.hold_writes

    @hold_writes.setter
    def hold_writes(self, on: bool) -> None:
        if on and self.cluster:
            raise ValueError("a cluster cannot hold a batch's write for one transaction")
        self.ctx.hold_writes = on

    # --- validation ------------------------------------------------------------------------

    def check(self, tx: Transaction) -> int:
        """Event time of ``tx`` in µs.

        Raises:
            SchemaError: naming the field (``timestamp`` too far in the future).
        """
        if tx.timestamp.tzinfo is None:
            raise SchemaError("timestamp", "must carry a timezone")
        ts = epoch_us(tx.timestamp)
        if (ahead := ts / US - self.clock()) > self.max_future_skew_s:
            raise self._too_far(tx.timestamp, ahead)
        return ts

    def _event_times(self, txs: Sequence[Transaction]) -> NDArray[np.int64]:
        """`check` over a batch, the clock read once."""
        stamps = [tx.timestamp for tx in txs]
        if any(stamp.tzinfo is None for stamp in stamps):
            raise SchemaError("timestamp", "must carry a timezone")
        ts = np.array([(stamp - EPOCH) // _ONE_US for stamp in stamps], dtype=np.int64)
        ahead = ts / US - self.clock()
        if (late := np.flatnonzero(ahead > self.max_future_skew_s)).size:
            raise self._too_far(stamps[late[0]], float(ahead[late[0]]))
        return ts

    def _too_far(self, stamp: datetime, ahead: float) -> SchemaError:
        return SchemaError(
            "timestamp",
            f"{stamp.isoformat()} is {ahead:.0f} s in the future "
            f"(max skew {self.max_future_skew_s:g} s)",
        )

    def _columns(self, txs: Sequence[Transaction]) -> Batch:
        ts = self._event_times(txs)
        amount = np.array([tx.amount for tx in txs], dtype=np.float64)
        ids = {e: [getattr(tx, field) for tx in txs] for e, field in ENTITIES.items()}
        for seen in self.plan.features.first_seen:
            if seen.what not in ids:
                ids[seen.what] = [getattr(tx, seen.field) for tx in txs]
        for what in self.plan.features.distinct_of:
            if what not in ids:
                ids[what] = [getattr(tx, DISTINCT_FIELDS[what]) for tx in txs]
        places = [_place(tx) for tx in txs]
        sys = np.array([p[0] for p in places], dtype=np.uint8)
        a = np.array([p[1] for p in places], dtype=np.float64)
        b = np.array([p[2] for p in places], dtype=np.float64)
        return Batch(
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
        """Features of each transaction (rows in order), then the state updated: `submit`
        and `confirm`.

        Raises:
            SchemaError: a transaction is invalid (nothing is read or written then).
            FeatureStoreError: Valkey failed; `StateConflict`: another writer changed a
                customer's state during the batch.
        """
        features = self.submit(txs)
        self.confirm()
        return features

    def submit(
        self,
        txs: Sequence[Transaction],
        labels: Sequence[Label] = (),
        riders: Riders | None = None,
    ) -> NDArray[np.float64]:
        """Features of each transaction, with the state update sent but not yet confirmed:
        the server applies it while the caller goes on (scores the batch, prepares the
        next). Call `confirm` before relying on it (before acknowledging the input); the
        next batch sends its read right behind it and collects its outcome before using
        that read. ``labels`` (as `apply_labels`) go ahead of the batch's read, in the same
        round trip; so do ``riders``, another stage's commands, whose replies are delivered
        to them before the write is sent (`Riders.deliver`). Same as
        ``finish(start(txs, labels, riders))``.

        Raises:
            SchemaError: a transaction or label is invalid (this batch reads and writes
                nothing; an earlier batch's write stays pending).
            FeatureStoreError: as `compute_batch`; also when the previous batch's write
                failed (then nothing of this batch is written either).
            Exception: what ``riders.deliver`` raised (nothing of this batch is written).
        """
        return self.finish(self.start(txs, labels, riders))

    def start(
        self,
        txs: Sequence[Transaction],
        labels: Sequence[Label] = (),
        riders: Riders | None = None,
    ) -> BatchRun | None:
        """The first half of `submit`: the batch's columns and keys, and its read sent
        (behind the previous batch's write, if one is pending; ``labels`` and ``riders``
        ahead of it; an empty batch sends the riders alone);
        `finish` does the rest. In between the caller may work on another engine's batch:
        a process keeping batches of two customer partitions in flight (one engine each)
        computes one while the server serves the other. Raises as `submit`."""
        if self._started:
            raise RuntimeError("finish the started batch first")
        if self.ctx.held is not None:
            raise RuntimeError("confirm or abandon the held write first")
        if self.cluster:
            self.apply_labels(labels)
            labels = ()
        if not txs:
            self.confirm()
            self.apply_labels(labels)
            if riders is not None and riders.commands:
                riders.deliver(self.ctx.wire.run(riders.commands))
            return None
        started = time.perf_counter()
        run = BatchRun(self.ctx, self._columns(txs))
        self.ctx.tick("columns", started)
        run.prepare()
        run.labels = self._label_commands(labels)
        run.riders = riders
        behind, self.ctx.pending = self.ctx.pending, None
        run.send_read(behind)
        self._started = True
        return run

    def finish(self, run: BatchRun | None) -> NDArray[np.float64]:
        """The features of a `start`ed batch, its write sent (`confirm` collects it)."""
        if run is None:
            return np.zeros((0, len(self.names)))
        self._started = False
        features = run.run()
        if self.record_io:
            self.last_io = (run._read_keys, run._commands)
        return features

    def confirm(self, trailer: Sequence[Command] = ()) -> list[Any]:
        """Wait for the last submitted batch's write: once this returns, its state is stored.
        A held write (`hold_writes`) is sent now, with ``trailer`` inside its ``MULTI`` /
        ``EXEC``: both are stored or neither, in one round trip. Without a held write the
        ``trailer`` runs after the write is confirmed, on its own. Returns the ``trailer``'s
        replies (errors as exception objects).

        Raises:
            FeatureStoreError: Valkey failed, or another writer changed one of the batch's
                customers (nothing of the batch, nor the ``trailer`` sent with it, was stored
                then; submit it again).
        """
        if self.ctx.held is not None:
            (session, stored, packed), self.ctx.held = self.ctx.held, None
            try:
                session.send([*packed, *trailer], atomic=True)
                replies = self.ctx.collect(session, stored, trailing=len(trailer))
            except BaseException:
                session.close(broken=True)
                raise
            session.close()
            return replies
        if self.ctx.pending is not None:
            (session, stored), self.ctx.pending = self.ctx.pending, None
            try:
                self.ctx.collect(session, stored)
            except BaseException:
                session.close(broken=True)
                raise
            session.close()
        return self.ctx.wire.run(trailer) if trailer else []

    def abandon(self) -> None:
        """Drop a held write unsent (the batch failed after its features): nothing of the
        batch is stored, and the next batch may start."""
        if self.ctx.held is not None:
            (session, _, _), self.ctx.held = self.ctx.held, None
            session.close()

    def apply_labels(self, labels: Sequence[Label]) -> None:
        """Count fraud labels in the terminal state of their transaction's tile, once each.
        (`start` / `submit` take them too, sent ahead of the batch's read.)

        Raises:
            SchemaError: a fraud label without ``terminal_id`` / ``tx_timestamp``, or
                reported before its transaction.
        """
        commands = self._label_commands(labels)
        if commands:
            self.ctx.count_labels(self.ctx.wire.run(commands))

    def _label_commands(self, labels: Sequence[Label]) -> list[tuple[Any, ...]]:
        if not self._labelled and not self.ctx.wants_known_fraud:
            return []  # no feature of this set reads labels
        commands = []
        for label in labels:
            if not label.is_fraud:
                self.stats.labels_ignored += 1
                continue
            commands.append(self._label_command(label))
        return commands

    def check_label(self, label: Label) -> None:
        """What a fraud label needs beyond its schema to be counted.

        Raises:
            SchemaError: naming the field (no ``terminal_id`` / ``tx_timestamp``, or
                ``reported_at`` before the transaction).
        """
        if not label.is_fraud:
            return
        if label.terminal_id is None:
            raise SchemaError("terminal_id", "a fraud label needs the transaction's terminal")
        if label.tx_timestamp is None:
            raise SchemaError("tx_timestamp", "a fraud label needs the transaction's time")
        if label.tx_timestamp > label.reported_at:
            raise SchemaError("reported_at", "before the labelled transaction")

    def _label_command(self, label: Label) -> tuple[Any, ...]:
        self.check_label(label)
        assert label.terminal_id is not None and label.tx_timestamp is not None
        tx_ts, rep = epoch_us(label.tx_timestamp), epoch_us(label.reported_at)
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
            ttl = int(block_ttl(fam, block, self.plan.lateness_s, rep))
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
            behind = fam.span + self.plan.lateness_s // fam.tile_s
            horizon = self.ctx.watermark // fam.tile_us - behind
            pattern = f"{self.namespace}:{{{KEY_TAG[fam.entity]}:*}}:{fam.tag}:*"
            stale = [
                key
                for key in self.client.scan_iter(match=pattern, count=1000)
                if (int(key.rsplit(b":", 1)[1]) + 1) * fam.slots <= horizon
            ]
            for lo in range(0, len(stale), 1000):
                chunk = stale[lo : lo + 1000]
                if self.cluster:  # one slot per command
                    deleted += sum(self.ctx.wire.run([("UNLINK", key) for key in chunk]))
                else:
                    deleted += int(self.client.unlink(*chunk))
        return deleted

    # --- inspection ------------------------------------------------------------------------

    def profile(self, customer_id: str) -> dict[str, object] | None:
        """The customer's static profile as loaded (None: no profile)."""
        raw = self.client.get(profile_key(self.namespace, customer_id))
        if not isinstance(raw, bytes):
            return None
        records, bad = decode_profiles([raw])
        return None if bad[0] else _profile_view(records[0])

    def customer_state(self, customer_id: str) -> dict[str, object]:
        """The live state of one customer, decoded (for ``fraudstream features show``)."""
        raw = self.client.get(self.customer_key(customer_id))
        profile = self.profile(customer_id)
        if not isinstance(raw, bytes):
            absent: dict[str, object] = {"customer_id": customer_id, "exists": False}
            return absent if profile is None else {**absent, "profile": profile}
        blobs, bad = decode_blobs(self.plan, [raw])
        if bad[0]:
            layout = int.from_bytes(raw[:2], "little") if len(raw) >= 2 else None
            return {
                "customer_id": customer_id,
                "exists": True,
                "readable": False,
                "bytes": len(raw),
                "layout": layout,
                "profile": profile,
            }
        blob = blobs[0]
        k = self.plan.features.history
        head = int(blob["head"])
        recent = [(head - 1 - j) % k for j in range(min(head, k))]
        out: dict[str, object] = {
            "customer_id": customer_id,
            "exists": True,
            "readable": True,
            "bytes": len(raw),
            "writes": int(blob["seq"]),
            "transactions_seen": head,
            "last_transaction": _iso(int(blob["last_ts"])) if head else None,
            "history": [
                {
                    "timestamp": _iso(int(blob["h_ts"][j]) * US),
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
        out["profile"] = profile
        out["first_seen"] = {
            spec.what: {
                "values": int(blob[f"s{j}_n"]),
                "mode": "exact" if blob[f"s{j}_n"] <= spec.words else "bloom",
                "rotated": bool(blob[f"s{j}_prev"].any()),
            }
            for j, spec in enumerate(self.plan.features.first_seen)
        }
        return out


_NOWHERE = (0, math.nan, math.nan)


def _place(tx: Transaction) -> tuple[int, float, float]:
    """(coordinate system, a, b) of the transaction's location, if it has one."""
    if tx.lat is not None and tx.lon is not None:
        return LATLON, tx.lat, tx.lon
    if tx.x is not None and tx.y is not None:
        return GRID, tx.x, tx.y
    return _NOWHERE


def _profile_view(record: np.void) -> dict[str, object]:
    home = None
    if record["home_sys"]:
        system = "latlon" if record["home_sys"] == LATLON else "grid"
        home = {"system": system, "a": float(record["home_a"]), "b": float(record["home_b"])}
    return {
        "segment": int(record["segment"]) if record["segment"] >= 0 else None,
        "home": home,
        "preferred_card": "set" if record["card"] else None,
    }


def _iso(us: int) -> str:
    return (EPOCH + timedelta(microseconds=us)).isoformat()
