"""One batch through the online engine: its keys, the read, and the point-in-time compute.

`BatchRun` gathers the state a batch needs (customer blobs, shared tile blocks, known-fraud
stamps) with one ``MGET``, then computes every feature over the batch: window sums from stored
tiles plus the earlier transactions of the same batch and the customer's bounded history
(compiled loops, `fraudstream.features.windows`), first-seen sets (`fraudstream.features.seen`),
then the feature matrix (`fraudstream.features.compiled`: `kernels.finalize`, compiled). The
writes are built by `fraudstream.features.write` (its `Writer` is a base of `BatchRun`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fraudstream.features.blocks import block_rows
from fraudstream.features.compiled import cells_of, finalize
from fraudstream.features.context import Batch, EngineContext
from fraudstream.features.definitions import ENTITIES
from fraudstream.features.history import DUPLICATE, LATE, Found, admit, mark_new_places
from fraudstream.features.kernels import NONE_TS, RawInputs, StackedSums, history_entry
from fraudstream.features.layout import (
    BLOB_VERSION,
    SHIFT,
    Family,
    Plan,
    copy_records,
)
from fraudstream.features.neighbours import NeighbourInputs, decode_neighbours, neighbour_key
from fraudstream.features.profiles import StaticInputs, decode_profiles, profile_key
from fraudstream.features.resp import encode_keys, keys_command
from fraudstream.features.seen import SeenState, replay
from fraudstream.features.windows import (
    owned_grid,
    previous_same,
    shared_grid,
    window_sums,
)
from fraudstream.features.wire import FeatureStoreError, Packed, Riders, Session, first_error
from fraudstream.features.write import BLOCK_KEY, Writer

I64 = NDArray[np.int64]


@dataclass
class _State:
    """A batch's state as read, and what the batch makes of it."""

    blobs: np.ndarray
    """The customers' state as read (the features see this)."""
    blocks: dict[int, dict[str, I64]]
    known: tuple[I64, I64]
    found: Found
    """What each transaction found of its customer's history, and whether it was admitted."""
    valid: NDArray[np.bool_]
    new: np.ndarray
    """The customers' state to write."""
    first_seen: dict[str, NDArray[np.bool_]]
    seen_present: dict[str, NDArray[np.bool_]]


def decode_blobs(plan: Plan, raws: Sequence[bytes | None]) -> tuple[np.ndarray, NDArray[np.bool_]]:
    """The customers' states as records (read-only: copy to change), and which of them were
    unreadable: another size or layout version (corrupt, or left by another release or
    feature set). Those read as fresh state, as absent ones do."""
    size = plan.blob.itemsize
    template = plan.fresh_blob
    sized = [raw is None or len(raw) == size for raw in raws]
    parts = [raw if raw and ok else template for raw, ok in zip(raws, sized, strict=True)]
    blobs = np.frombuffer(b"".join(parts), dtype=plan.blob)
    bad = ~np.array(sized, dtype=bool)
    if len(blobs) and (foreign := blobs["version"] != BLOB_VERSION).any():
        bad |= foreign
        parts = [template if b else part for part, b in zip(parts, bad.tolist(), strict=True)]
        blobs = np.frombuffer(b"".join(parts), dtype=plan.blob)
    return blobs, bad


def _stamps(raw: bytes) -> tuple[int, int] | None:
    """A terminal's known-fraud value, ``first_us:last_us`` (None: unreadable)."""
    a, _, z = raw.partition(b":")
    try:
        return int(a), int(z)
    except ValueError:
        return None


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


class BatchRun(Writer):
    """One `compute_batch`: read, compute, write (split out to keep each step small)."""

    def __init__(self, context: EngineContext, batch: Batch) -> None:
        self.e = context
        self.plan = context.plan
        self.b = batch
        self.n = len(batch.ts)
        self.codes: dict[str, I64] = {}
        self.uniq: dict[str, list[str]] = {}
        wanted: set[str] = {s.what for s in self.plan.features.first_seen}
        wanted |= set(self.plan.features.distinct_of)
        for entity in [*ENTITIES, *sorted(wanted - set(ENTITIES))]:
            index: dict[str, int] = {}
            codes = np.array(
                [-1 if v is None else index.setdefault(v, len(index)) for v in batch.ids[entity]],
                dtype=np.int64,
            )
            self.codes[entity] = codes
            self.uniq[entity] = list(index)
        self._prev: dict[str, I64] = {}
        self._contribs = {}
        self._present = {}
        self._layout: dict[str, Any] = {}
        self._session: Session
        """The connection of the read (`send_read`) and then the write (one node)."""
        self.labels: list[tuple[Any, ...]] = []
        """Label commands to send ahead of the read (`FeatureEngine.start`)."""
        self.riders: Riders | None = None
        """Another stage's commands sent with the read, their replies delivered before the
        write (`FeatureEngine.start`)."""
        self._behind: int | None = None
        """The read was sent behind the previous batch's write, which stores this many."""

    def prepare(self) -> None:
        """The keys to read (no I/O): `FeatureEngine.submit` does this while the previous
        batch's write is still executing."""
        t = time.perf_counter()
        self._read_keys, self._layout = self._keys()
        if not self.e.cluster:
            self._encoded = encode_keys(self._read_keys)
        self.e.tick("keys", t)

    def rehearse(self) -> None:
        """Every step of a batch over absent state, without I/O: compiles the kernels
        (`FeatureEngine._warm_up`). After `prepare`."""
        self._encoded = encode_keys(self._read_keys)  # prepare skips it for a cluster
        values: list[Any] = [None] * len(self._read_keys)
        keys_command(b"MGET", *self._encoded, 0, len(values))
        state = self._state(values)
        rows = np.flatnonzero(self._update_blobs(state.new, state.valid))
        self._packed_write(state.new, rows, self._block_writes(state.valid, values))
        self._features(values, state, time.perf_counter())

    def send_read(self, behind: tuple[Session, int] | None) -> None:
        """Send the read (``WATCH`` + ``MGET``, after the `labels`, the `riders` ahead of
        it in the same write) without waiting for it; `run` receives it. ``behind``: the
        previous batch's write still executing (its session, transactions it stores); the
        read goes on its connection right after it, so it sees it and the server goes from
        one to the other without waiting for us. A cluster reads in `run`."""
        e, keys = self.e, self._read_keys
        if e.cluster:
            return
        t = time.perf_counter()
        self._behind = None if behind is None else behind[1]
        self._session = session = e.wire.open() if behind is None else behind[0]
        try:
            blob, starts = self._encoded
            if self.labels:
                session.send(self.labels)
            read: list[Any] = [Packed(keys_command(b"MGET", blob, starts, 0, len(keys)), 1)]
            if e.cas:
                nc = len(self.uniq["customer"])
                watch = keys_command(b"WATCH", blob, starts, 0, nc)
                read.insert(0, Packed(watch, 1, watches=True))
            if self.riders is not None:
                read[:0] = self.riders.commands
            session.send(read)
        except BaseException:
            session.close(broken=True)
            raise
        e.tick("read", t)

    def run(self) -> NDArray[np.float64]:
        """Receive the read (after the previous write's outcome, if it was behind one),
        compute, send the write; return the features. On one node the write is left
        executing on the server (`FeatureEngine.confirm` collects it), so the features
        are computed while the server applies it."""
        e, keys = self.e, self._read_keys
        t = time.perf_counter()
        if e.cluster:
            values = self._read_cluster(keys)
            t = e.tick("read", t)
            return self._process(values, None, t)[0]
        session = self._session
        try:
            if self._behind is not None:
                e.collect(session, self._behind)
                t = time.perf_counter()
            if self.labels:
                e.count_labels(session.receive())
            replies = session.receive()
            self._deliver(replies)
            values = list(replies[-1])
            t = e.tick("read", t)
            features, stored = self._process(values, session, t)
        except BaseException:
            session.close(broken=True)
            raise
        if stored is None:
            session.close()
        elif self.held is not None:
            e.held = (session, stored, self.held)
        else:
            e.pending = (session, stored)
        return features

    def _process(
        self, values: list[Any], session: Session | None, since: float
    ) -> tuple[NDArray[np.float64], int | None]:
        """The new state first (what the write needs), the write sent, then the features
        from the state as read."""
        state = self._state(values)
        since = self.e.tick("compute", since)
        stored = self._write(session, state.new, values, state.valid)
        return self._features(values, state, time.perf_counter()), stored

    def _state(self, values: list[Any]) -> _State:
        """Decode the read and build the customers' new state on a copy: the history
        (admitting the transactions that are neither duplicates nor late), then the
        first-seen sets, with what each transaction found of them."""
        blobs, blocks, known = self._decode(values, self._layout)
        new = copy_records(blobs)
        found = self._admit(new)
        valid = found.admitted
        first_seen, seen_present = self._first_seen(new, valid)
        if (seen := self.plan.features.seen_terminal) is not None:
            at_new = first_seen[seen.name] & seen_present[seen.name]
            mark_new_places(new, found, self.codes["customer"], self.b.txid, valid & at_new)
            found.new_place = at_new
        return _State(blobs, blocks, known, found, valid, new, first_seen, seen_present)

    def _features(self, values: list[Any], st: _State, since: float) -> NDArray[np.float64]:
        raw = self._raw(st)
        raw.static = self._static(values, self._layout)
        raw.neighbours = self._neighbours(values, self._layout)
        features = finalize(self.plan, raw)
        self.e.tick("compute", since)
        return features

    # --- read ------------------------------------------------------------------------------

    def _read_cluster(self, keys: list[str]) -> list[Any]:
        """One ``GET`` per key, pipelined per node (a cluster has no cross-slot ``MGET``),
        the `riders` in the same round trip to their nodes."""
        riders = list(self.riders.commands) if self.riders is not None else []
        replies = self.e.wire.run([*riders, *(("GET", key) for key in keys)])
        self._deliver(replies)
        values = replies[len(riders) :]
        if (err := first_error(values)) is not None:
            raise FeatureStoreError(f"reading feature state failed: {err}")
        return values

    def _deliver(self, replies: list[Any]) -> None:
        """The riders' replies (the first of the read's) to their stage, before any write."""
        if self.riders is not None:
            self.riders.deliver(replies[: len(self.riders.commands)])

    def _keys(self) -> tuple[list[str], dict[str, Any]]:
        e, b = self.e, self.b
        keys = [e.customer_key(c) for c in self.uniq["customer"]]
        layout: dict[str, Any] = {"blocks": {}, "profiles": len(keys)}
        if self.plan.features.uses_profiles:
            keys += [profile_key(e.namespace, c) for c in self.uniq["customer"]]
        for fam in self.plan.shared:
            code = self.codes[fam.entity]
            uniq, rows = block_rows(code, b.ts, fam.tile_us, fam.span, fam.slots, BLOCK_KEY)
            prefix = self.prefixes(fam)
            start = len(keys)
            keys += [prefix[u // BLOCK_KEY] + str(u % BLOCK_KEY) for u in uniq.tolist()]
            layout["blocks"][fam.index] = (start, uniq, rows)
        layout["kf_start"] = len(keys)
        if e.wants_known_fraud:
            keys += [e.known_fraud_key(t) for t in self.uniq["terminal"]]
        layout["nb_start"] = len(keys)
        if self.plan.features.uses_neighbours:
            keys += [neighbour_key(e.namespace, "c", c) for c in self.uniq["customer"]]
            keys += [neighbour_key(e.namespace, "t", t) for t in self.uniq["terminal"]]
        return keys, layout

    def _decode(
        self, values: list[Any], layout: dict[str, Any]
    ) -> tuple[np.ndarray, dict[int, dict[str, I64]], tuple[I64, I64]]:
        nc = len(self.uniq["customer"])
        blobs, bad = decode_blobs(self.plan, values[:nc])
        if bad.any():
            self.e.stats.reset += int(bad.sum())
            consequence = (
                f"customer state (expected {self.plan.blob.itemsize} bytes, layout "
                f"{BLOB_VERSION}) scored without history and reset"
            )
            self._unreadable(np.flatnonzero(bad), values, consequence)
        blocks: dict[int, dict[str, I64]] = {}
        for fam in self.plan.shared:
            start, uniq, _ = layout["blocks"][fam.index]
            raw = values[start : start + len(uniq)]
            size = fam.block_bytes
            fixed = [
                r if r and len(r) == size else (r or b"").ljust(size, b"\0")[:size] for r in raw
            ]
            buf = b"".join(fixed) + bytes(size)
            mat = np.frombuffer(buf, dtype=np.uint8).reshape(len(raw) + 1, size)
            blocks[fam.index] = _unpack(mat, fam)
        nt = len(self.uniq["terminal"])
        first = np.full(nt, NONE_TS, dtype=np.int64)
        last = np.full(nt, NONE_TS, dtype=np.int64)
        if self.e.wants_known_fraud:
            unread: list[int] = []
            for j, v in enumerate(values[layout["kf_start"] : layout["kf_start"] + nt]):
                stamps = _stamps(v) if v else (NONE_TS, NONE_TS)
                if stamps is None:
                    unread.append(layout["kf_start"] + j)
                else:
                    first[j], last[j] = stamps
            if unread:
                self._unreadable(unread, values, "known frauds of the terminal read as none")
        code = self.codes["terminal"]
        return blobs, blocks, (first[code], last[code])

    def _unreadable(self, at: Any, values: list[Any], consequence: str) -> None:
        self.e.unreadable([(self._read_keys[j], values[j]) for j in at], consequence)

    def _static(self, values: list[Any], layout: dict[str, Any]) -> StaticInputs | None:
        if not self.plan.features.uses_profiles:
            return None
        nc, start = len(self.uniq["customer"]), layout["profiles"]
        records, bad = decode_profiles(values[start : start + nc])
        if bad.any():
            self._unreadable(start + np.flatnonzero(bad), values, "profile read as none")
        records = records[self.codes["customer"]]
        code = self.codes["card"]
        hashes = self.e.hashes.lookup(self.uniq["card"])
        card = np.where(code >= 0, hashes[np.maximum(code, 0)] if len(hashes) else 0, 0)
        return StaticInputs.of(records, card.astype(np.uint64))

    def _neighbours(self, values: list[Any], layout: dict[str, Any]) -> NeighbourInputs | None:
        if not self.plan.features.uses_neighbours:
            return None
        nc, nt, start = len(self.uniq["customer"]), len(self.uniq["terminal"]), layout["nb_start"]
        got, bad_c, bad_t = decode_neighbours(
            values[start : start + nc],
            values[start + nc : start + nc + nt],
            self.codes["customer"],
            self.codes["terminal"],
        )
        if len(bad := np.concatenate([start + bad_c, start + nc + bad_t])):
            self._unreadable(bad, values, "neighbourhood read as none")
        return got

    def _admit(self, new: np.ndarray) -> Found:
        """`fraudstream.features.history.admit` over the batch, counted in the stats."""
        b, e = self.b, self.e
        _, kept_cents = history_entry(b.ts, b.cents)
        found = admit(
            new,
            self.codes["customer"],
            b.ts,
            b.txid,
            kept_cents,
            cells_of(self.plan, b.loc_sys, b.loc_a, b.loc_b),
            (b.loc_sys, b.loc_a, b.loc_b),
            e.lateness_us,
            NONE_TS,
        )
        e.stats.duplicates += int(np.count_nonzero(found.status == DUPLICATE))
        e.stats.late += int(np.count_nonzero(found.status == LATE))
        e.watermark = max(e.watermark, int(b.ts.max()))
        return found

    # --- compute ---------------------------------------------------------------------------

    def _windows(
        self, fam: Family, blobs: np.ndarray, blocks: dict[int, dict[str, I64]], valid: Any
    ) -> I64:
        """Per aggregate of the family and counter (row ``aggregate * counters + counter``),
        its value over the aggregate's window as each transaction sees it: stored tiles +
        earlier valid transactions of the batch + itself (`fraudstream.features.windows`)."""
        tile = self.b.ts // fam.tile_us
        counters = fam.counters
        spec = self.e.window_spec(fam)
        if fam.owned:
            ring = np.array([blobs[f"r{fam.index}_{c}"] for c in counters], dtype=np.int64)
            ring_tile = blobs[f"r{fam.index}_tile"].astype(np.int64)
            rows = np.maximum(self.codes[fam.entity], 0)
            grid = owned_grid(ring_tile, ring, rows, tile, fam.span, spec.empty)
        else:
            _, _, idx = self._layout["blocks"][fam.index]
            stored = np.array([blocks[fam.index][c] for c in counters], dtype=np.int64)
            grid = shared_grid(stored, idx, tile, fam.span, fam.slots)
        contrib = self._contrib(fam, valid)
        out = window_sums(
            grid,
            tile,
            self._previous(fam.entity),
            np.array([contrib[c] for c in counters], dtype=np.int64),
            spec.ops,
            spec.caps,
            spec.in_batch,
            spec.lags,
            spec.lengths,
        )
        stacked: I64 = out.reshape(-1, self.n)
        return stacked

    def _previous(self, entity: str) -> I64:
        if entity not in self._prev:
            self._prev[entity] = previous_same(self.codes[entity])
        return self._prev[entity]

    def _raw(self, st: _State) -> RawInputs:
        b = self.b
        blobs, valid = st.blobs, st.valid
        blocks = [self._windows(fam, blobs, st.blocks, valid) for fam in self.plan.families]
        matrix = np.concatenate(blocks) if blocks else np.zeros((0, self.n), dtype=np.int64)
        sums = StackedSums(matrix, self.e.sum_layout)
        found = st.found
        return RawInputs(
            ts=b.ts,
            cents=b.cents,
            amount=b.amount,
            loc_sys=b.loc_sys,
            loc_a=b.loc_a,
            loc_b=b.loc_b,
            sums=sums,
            present={e: self.present(e) for e in ENTITIES},
            prev_ts=found.prev_ts,
            prev_cents=found.prev_cents,
            prev_cell=found.prev_cell,
            prev_new=found.prev_new,
            new_place=np.zeros(self.n, bool) if found.new_place is None else found.new_place,
            last_ts=found.last_ts,
            last_loc_sys=found.loc_sys,
            last_loc_a=found.loc_a,
            last_loc_b=found.loc_b,
            last_loc_ts=found.loc_ts,
            fraud_first=st.known[0],
            fraud_last=st.known[1],
            first_seen=st.first_seen,
            seen_present=st.seen_present,
        )

    def _first_seen(
        self, blobs: np.ndarray, valid: NDArray[np.bool_]
    ) -> tuple[dict[str, NDArray[np.bool_]], dict[str, NDArray[np.bool_]]]:
        """First-seen flags (batch order within each customer), updating the blobs' sets
        with the valid transactions."""
        flags: dict[str, NDArray[np.bool_]] = {}
        present: dict[str, NDArray[np.bool_]] = {}
        cust = self.codes["customer"]
        for j, spec in enumerate(self.plan.features.first_seen):
            code = self.codes[spec.what]
            has = code >= 0
            hashes = self.e.hashes.lookup(self.uniq[spec.what])
            count = blobs[f"s{j}_n"].astype(np.int64)
            state = SeenState(blobs[f"s{j}_cur"], blobs[f"s{j}_prev"], count)
            if has.all():  # the usual case: no subset to take (~1 µs per array)
                first = replay(spec, state, cust, hashes[code], valid)
            else:
                idx = np.flatnonzero(has)
                first = np.zeros(self.n, dtype=bool)
                first[idx] = replay(spec, state, cust[idx], hashes[code[idx]], valid[idx])
            blobs[f"s{j}_n"] = state.count
            flags[spec.name], present[spec.name] = first, has
        return flags, present
