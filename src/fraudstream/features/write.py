"""The write half of a batch: the customer blobs updated and the shared-block increments.

Everything goes in one ``MULTI … EXEC`` (after the read's ``WATCH``): one ``SET`` per customer
touched, one ``BITFIELD INCRBY`` per shared tile block touched (every increment of the batch
to that block, summed per tile), an ``EXPIRE`` for a block read as absent. It is sent without
waiting; `FeatureEngine.confirm` reads its outcome.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from fraudstream.features.blocks import family_increments, new_block_ttls
from fraudstream.features.context import Batch, EngineContext
from fraudstream.features.kernels import sketch_bits
from fraudstream.features.layout import (
    EMPTY_LO,
    KEY_TAG,
    Q_CLIP_CENTS,
    SUM_CAPS,
    US,
    Family,
    empty_value,
    record_bytes,
)
from fraudstream.features.resp import bitfield_commands, field_type, set_commands
from fraudstream.features.rings import advance, combine_into
from fraudstream.features.windows import op_of
from fraudstream.features.wire import FeatureStoreError, Packed, Session, StateConflict, first_error

if TYPE_CHECKING:
    from fraudstream.features.layout import Plan

I64 = NDArray[np.int64]
BLOCK_KEY = 1 << 32
"""(entity code, block) packed in one int64 for `numpy.unique`."""


def block_ttl(fam: Family, block: Any, lateness_s: int, now_us: Any) -> Any:
    """Seconds (of event time from ``now_us``) until no window can reach the block (ints
    or arrays of them)."""
    end_us = ((block + 1) * fam.slots + fam.span) * fam.tile_us + lateness_s * US
    return np.maximum(1, (end_us - now_us) // US + 1)


class Writer:
    """Write steps of `fraudstream.features.batch.BatchRun` (its base class)."""

    e: EngineContext
    plan: Plan
    b: Batch
    codes: dict[str, I64]
    n: int
    uniq: dict[str, list[str]]
    _layout: dict[str, Any]
    _commands: list[tuple[Any, ...]]
    _read_keys: list[str]
    _present: dict[str, NDArray[np.bool_]]
    """Entity -> `present`."""
    _contribs: dict[int, tuple[NDArray[np.bool_], dict[str, I64]]]
    """Family index -> (the ``valid`` mask, `_contrib` of it)."""
    _encoded: tuple[NDArray[np.uint8], I64]
    """The read's keys as bytes (`fraudstream.features.resp.encode_keys`)."""
    held: list[Packed] | None = None
    """The write, built and not sent (`EngineContext.hold_writes`)."""

    def prefixes(self, fam: Family) -> list[str]:
        """Block key of each distinct entity of the batch, without the block number."""
        ns, tag = self.e.namespace, KEY_TAG[fam.entity]
        return [f"{ns}:{{{tag}:{v}}}:{fam.tag}:" for v in self.uniq[fam.entity]]

    def _contrib(self, fam: Family, valid: NDArray[np.bool_]) -> dict[str, I64]:
        """Per counter, what each transaction adds to the family's tile (read-only: the
        update, the write and the windows of a batch share one, built once)."""
        cached = self._contribs.get(fam.index)
        if cached is not None and cached[0] is valid:
            return cached[1]
        out = self._contrib_of(fam, valid)
        self._contribs[fam.index] = (valid, out)
        return out

    def _contrib_of(self, fam: Family, valid: NDArray[np.bool_]) -> dict[str, I64]:
        """``n`` (what the write counts by) and the family's counters, nothing else: a
        batch of one spends more on setting up an array than on filling it."""
        b = self.b
        w = valid & self.present(fam.entity)
        if fam.where is not None:
            w &= fam.counts(b.channel, b.cents)
        wi = w.astype(np.int64)
        out = {"n": wi}
        for c in fam.counters:
            if c == "s":
                out[c] = wi * b.cents
            elif c == "f":
                out[c] = np.zeros(self.n, dtype=np.int64)
            elif c == "q":
                out[c] = wi * np.minimum(b.cents, Q_CLIP_CENTS) ** 2
            elif c == "lo":
                out[c] = np.where(w, b.cents, EMPTY_LO)
            elif c == "hi":
                out[c] = np.where(w, b.cents, -1)
            elif c.startswith("d_"):
                out[c] = np.where(w, self.sketch(c[2:]), 0)
        return out

    def present(self, entity: str) -> NDArray[np.bool_]:
        """Which transactions have an id for ``entity`` (read-only: built once a batch,
        families of one entity share it)."""
        if entity not in self._present:
            self._present[entity] = self.codes[entity] >= 0
        return self._present[entity]

    def sketch(self, what: str) -> I64:
        """Per transaction, its ``distinct`` sketch bit for ``what`` (0 if it lacks it)."""
        code = self.codes[what]
        bits = sketch_bits(self.e.hashes.lookup(self.uniq[what]))
        return np.where(code >= 0, bits[np.maximum(code, 0)] if len(bits) else 0, 0)

    # --- write -----------------------------------------------------------------------------

    def _write(
        self,
        session: Session | None,
        blobs: np.ndarray,
        values: list[Any],
        valid: NDArray[np.bool_],
    ) -> int | None:
        """Send the batch's state: on one node one ``MULTI``/``EXEC`` (``session`` holds the
        read's ``WATCH``) left for `FeatureEngine.confirm` (or, with ``hold_writes``, kept
        in `held` for it to send), returning how many transactions it stores; on a cluster
        (``session`` None) `_write_cluster`'s two steps, done here. None: nothing left to
        confirm."""
        self._commands: list[tuple[Any, ...]] = []
        if not valid.any():
            if self.e.hold_writes and session is not None:
                self.held = []  # the caller's commands still go under the read's WATCH
                return 0
            return None
        t = time.perf_counter()
        e = self.e
        rows = np.flatnonzero(self._update_blobs(blobs, valid))
        keys, ttl = self._read_keys, e.ttl_s  # the customer keys lead the read's keys
        if session is None:
            self._write_cluster(self._states(blobs, rows), values, valid, t)
            return None
        blocks = self._block_writes(valid, values)
        if e.record_io:
            sets = [("SET", keys[u], new, "EX", ttl) for u, new in self._states(blobs, rows)]
            self._commands = sets + blocks.commands(keys)
        packed = self._packed_write(blobs, rows, blocks)
        if e.hold_writes:
            self.held = packed
        else:
            session.send(packed, atomic=True)
        e.tick("encode", t)
        return int(valid.sum())

    def _packed_write(self, blobs: np.ndarray, rows: I64, blocks: BlockWrites) -> list[Packed]:
        """The write as protocol bytes: the customers' ``SET``, then the block commands."""
        state = record_bytes(blobs)[rows]
        sets = Packed(set_commands(*self._encoded, rows, state, self.e.ttl_s), len(rows))
        return [sets, blocks.packed(*self._encoded)]

    def _states(self, blobs: np.ndarray, rows: I64) -> list[tuple[int, bytes]]:
        """(customer, its new state's bytes) for each row."""
        size = self.plan.blob.itemsize
        packed = record_bytes(blobs)[rows].tobytes()
        return [(u, packed[j * size : (j + 1) * size]) for j, u in enumerate(rows.tolist())]

    def _write_cluster(
        self,
        states: list[tuple[int, bytes]],
        values: list[Any],
        valid: NDArray[np.bool_],
        started: float,
    ) -> None:
        """A cluster runs no transaction across slots, so: first each customer's state with
        a compare-and-set on its ``seq`` (``fs_put``), then the shared increments of the
        transactions whose customer was stored. A customer changed by another writer keeps
        its state and its transactions count nowhere (`FeatureStoreError`; a retry finds
        the stored ones already applied). A crash between the two steps loses that batch's
        shared increments (never double-counts them)."""
        e, keys, ttl = self.e, self._read_keys, self.e.ttl_s
        puts = [
            ("FCALL", "fs_put", 1, keys[u], (values[u] or b"")[2:6], new, ttl) for u, new in states
        ]
        replies = e.wire.run(puts)
        if (err := first_error(replies)) is not None:
            raise FeatureStoreError(f"writing feature state failed: {err}")
        lost = [u for (u, _), r in zip(states, replies, strict=True) if r != 1]
        stored = valid & ~np.isin(self.codes["customer"], lost)
        commands = self._block_writes(stored, values).commands(keys)
        self._commands = puts + commands
        t = e.tick("encode", started)
        if (err := first_error(e.wire.run(commands))) is not None:
            raise FeatureStoreError(f"writing shared feature state failed: {err}")
        e.tick("write", t)
        e.stats.processed += int(stored.sum())
        if lost:
            e.stats.conflicts += 1
            raise StateConflict(
                f"state of {len(lost)} customer(s) changed by another writer during the batch; "
                "their transactions were not stored (another process scoring the same "
                "customer at the same moment)"
            )

    def _update_blobs(self, blobs: np.ndarray, valid: NDArray[np.bool_]) -> NDArray[np.bool_]:
        """The valid transactions into their customers' tile rings, and each touched
        customer's write count (its history and newest transaction: `history.admit`)."""
        b = self.b
        vb = np.flatnonzero(valid)
        every = len(vb) == self.n  # the usual case: no subset to take (~1 µs per array)
        rows = self.codes["customer"] if every else self.codes["customer"][vb]
        ts = b.ts if every else b.ts[vb]
        for fam in self.plan.owned:  # the loops: `fraudstream.features.rings`
            tile = ts // fam.tile_us
            moved, current = advance(blobs[f"r{fam.index}_tile"], rows, tile, fam.slots)
            contrib = self._contrib(fam, valid)
            slot = tile % fam.slots
            for c in fam.counters:
                arr = blobs[f"r{fam.index}_{c}"]
                added = contrib[c] if every else contrib[c][vb]
                # below the cap + a batch of amounts: no overflow before the cap
                cap = SUM_CAPS.get(c, -1)
                combine_into(arr, moved, rows, slot, current, added, op_of(c), empty_value(c), cap)
        counts = np.bincount(rows, minlength=len(blobs))
        touched = counts > 0
        blobs["seq"][touched] += 1
        return touched

    def _block_writes(self, valid: NDArray[np.bool_], values: list[Any]) -> BlockWrites:
        """Every shared family's increments of the batch, as `BlockWrites` (``values``:
        the read's, a block read as absent gets a TTL)."""
        found = [self._family_writes(fam, valid, values) for fam in self.plan.shared]
        parts = [w for w in found if w is not None]
        if not parts:
            none = np.zeros(0, dtype=np.int64)
            return BlockWrites(none, np.zeros(1, dtype=np.int64), none, none, none, none)
        ops = [w.ops for w in parts]
        for j in range(1, len(ops)):
            ops[j] = ops[j][1:] + ops[j - 1][-1]
        return BlockWrites(
            key=np.concatenate([w.key for w in parts]),
            ops=np.concatenate(ops),
            field=np.concatenate([w.field for w in parts]),
            offset=np.concatenate([w.offset for w in parts]),
            value=np.concatenate([w.value for w in parts]),
            ttl=np.concatenate([w.ttl for w in parts]),
        )

    def _family_writes(
        self, fam: Family, valid: NDArray[np.bool_], values: list[Any]
    ) -> BlockWrites | None:
        """One family's block increments: every increment of the batch to a tile summed,
        the tiles of a block in one ``BITFIELD``, one saturating field per counter
        (`Family.fields`), a block read as absent given its TTL. The keys are the ones the
        read used; the sums and their order: `fraudstream.features.blocks`."""
        start, uniq, rows = self._layout["blocks"][fam.index]
        contrib = self._contrib(fam, valid)
        if not fam.fields or not contrib["n"].any():
            return None
        added = np.array([contrib[c] for _, c, _, _ in fam.fields], dtype=np.int64)
        own = np.ascontiguousarray(rows[:, 1])  # the block of the transaction's own tile
        row, ops, offset, value, first_ts = family_increments(
            own, self.b.ts, contrib["n"], fam.tile_us, fam.slots, added, fam.field_bits, len(uniq)
        )
        absent = np.array([values[start + r] is None for r in row.tolist()], dtype=bool)
        late_us = self.plan.lateness_s * US
        ttl = new_block_ttls(
            uniq, row, first_ts, absent, BLOCK_KEY, fam.slots, fam.span, fam.tile_us, late_us, US
        )
        return BlockWrites(
            key=start + row,
            ops=ops,
            field=np.repeat(fam.field_codes[None, :], len(value) // len(fam.fields), 0).ravel(),
            offset=offset,
            value=value,
            ttl=ttl,
        )


@dataclass
class BlockWrites:
    """A batch's shared-block increments: ``BITFIELD key[j]`` then ``INCRBY field[p]
    offset[p] value[p]`` for ``p`` in ``ops[j]:ops[j + 1]`` (``OVERFLOW SAT`` first if a
    field is narrower than ``i64``), then ``EXPIRE key[j] ttl[j]`` where ``ttl[j] > 0``
    (``key``: indices into the read's keys; ``field``: types coded as
    `fraudstream.features.resp.field_type` reads them)."""

    key: I64
    ops: I64
    field: I64
    offset: I64
    value: I64
    ttl: I64

    def packed(self, blob: NDArray[np.uint8], starts: I64) -> Packed:
        """The commands as protocol bytes, the keys from `encode_keys` (one node)."""
        data = bitfield_commands(
            blob, starts, self.key, self.ops, self.field, self.offset, self.value, self.ttl
        )
        return Packed(data, len(self.key) + int(np.count_nonzero(self.ttl)))

    def commands(self, keys: list[str]) -> list[tuple[Any, ...]]:
        """The same commands as tuples (a cluster routes each to its node)."""
        offset, value, ops = self.offset.tolist(), self.value.tolist(), self.ops.tolist()
        fields = [field_type(f) for f in self.field.tolist()]
        out: list[tuple[Any, ...]] = []
        for j, (k, ttl) in enumerate(zip(self.key.tolist(), self.ttl.tolist(), strict=True)):
            narrow = any(f != "i64" for f in fields[ops[j] : ops[j + 1]])
            args: list[Any] = ["OVERFLOW", "SAT"] if narrow else []
            for p in range(ops[j], ops[j + 1]):
                args += ["INCRBY", fields[p], offset[p], value[p]]
            out.append(("BITFIELD", keys[k], *args))
            if ttl > 0:
                out.append(("EXPIRE", keys[k], ttl))
        return out
