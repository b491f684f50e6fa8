"""How a `FeatureSet` is laid out in state: tiled families, the customer blob, shared blocks.

A *family* is the tiled state of one (entity, tile length, channel filter): per tile, the
counters its aggregates need (`AGG_COUNTERS`). Owned families (the customer) live in one
fixed-size blob per customer, a ring of ``span + lateness + 1`` tiles, read with one ``MGET``
and written with one ``SET`` (guarded by ``WATCH``); the blob also holds the customer's
recent history and its first-seen sets (`fraudstream.features.seen`). Shared families (card,
terminal, merchant, device, ip) live in *blocks*: strings of ``L`` tiles (``L`` a power of
two > span + lateness), one big-endian int64 *word* per tile packing two counters
(``n | s << 24`` or ``n | f << 32``), updated with one ``BITFIELD … INCRBY`` per block and
batch (commutative, so concurrent workers never lose a count) and read with the same
``MGET``. A window never touches more than two blocks; a block expires once no window can
reach it (TTL set when it is created), so an entity holds at most three live blocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from fraudstream.features.definitions import (
    OWNED,
    Aggregate,
    FeatureSet,
)

Bools = NDArray[np.bool_]
COUNTERS = ("n", "s", "q", "f", "lo", "hi")
"""Counter order in state; ``d_<field>`` sketches (``distinct``) follow, sorted."""
WIDTH = {"n": 4, "s": 8, "q": 8, "f": 4, "lo": 8, "hi": 8}
"""Bytes per counter per tile in the customer blob (count, frauds: int32; cents and the
64-bit distinct sketches: int64)."""
EMPTY_LO = np.iinfo(np.int64).max
EMPTY = {"lo": EMPTY_LO, "hi": -1}
"""A tile's value before any transaction: the identity of the counter's combination (0 for
sums and sketches, see `combine`)."""


def empty_value(counter: str) -> int:
    return EMPTY.get(counter, 0)


def combine(counter: str) -> np.ufunc:
    """How two values of a counter merge (per tile, and tiles into a window)."""
    if counter == "lo":
        return np.minimum
    if counter == "hi":
        return np.maximum
    if counter.startswith("d_"):
        return np.bitwise_or
    return np.add


SHIFT = {"s": 24, "f": 32}
"""In a shared block, ``s`` or ``f`` rides above ``n`` in one int64 word: per tile up to
16.7 M transactions and 5.5 G in currency units, or 4.3 G transactions and 2.1 G frauds.
A batch adds to each counter of a word as its own saturating field (`Family.fields`), so a
full one stays at its maximum and never carries into its neighbour."""
SUM_BITS = 64 - SHIFT["s"]
S_CAP = (1 << (SUM_BITS - 1)) - 1
"""The largest amount in cents (5,497,558,138.87) that state holds: a transaction's
(`fraudstream.features.kernels.to_cents` clips), a tile's and a window's sum (they
saturate there: the width of a shared block's sum field, the narrowest one). Sums only
add non-negative amounts, so saturating is the same whatever the order: the backfill
gets the same values."""
Q_CAP = (1 << 62) - 1
"""Where sums of squared cents saturate (a window adds two of them without overflow)."""
SUM_CAPS = {"s": S_CAP, "q": Q_CAP}
COUNT_CAP = (1 << 62) - 1
"""Counts and frauds: never reached, but the window sums saturate alike."""


def cap_of(counter: str) -> int:
    """Where a sum counter saturates (counters that combine otherwise: unused)."""
    return SUM_CAPS.get(counter, COUNT_CAP)


KEY_TAG = {
    "customer": "c",
    "card": "k",
    "terminal": "t",
    "merchant": "m",
    "device": "d",
    "ip": "i",
}
US = 1_000_000
GRID, LATLON = 1, 2
"""Coordinate systems of a stored place (``loc_sys``, ``home_sys``; 0: none): x/y on the
simulator's grid, or latitude/longitude."""
MIN_BLOCK_TILES = 64
"""Shared blocks hold at least 64 tiles (64 hours for the ``…h`` windows): a block is created
(one ``EXPIRE``) half as often as with 32, and a 24-tile window straddles two blocks 36 % of
the time instead of 72 %, so fewer keys are read. Costs 256 bytes more per hourly block."""
HISTORY_CENTS_MAX = (1 << 31) - 1
"""The history keeps amounts as int32 cents: those above 21,474,836.47 are kept as that (the
robust ratios compare against the median / max of the history, so a clip that far up changes
nothing a fraud analyst could see). Halves the history's amount column (256 bytes)."""
Q_CLIP_CENTS = 10_000_000
"""Squared cents are summed in int64: each amount is clipped at 100,000.00 for q only, so a
30-day window overflows only beyond ~92,000 such transactions."""


@dataclass(frozen=True)
class Family:
    """The tiled state shared by the aggregates of one (entity, tile, filter)."""

    index: int
    entity: str
    tile_s: int
    where: str | None
    counters: tuple[str, ...]
    span: int
    """Most recent tiles any of its windows touches (the transaction's own included)."""
    slots: int
    """Ring length (owned) or block length (shared) in tiles."""
    aggregates: tuple[Aggregate, ...]

    @property
    def owned(self) -> bool:
        return self.entity in OWNED

    def counts(self, channel: NDArray[np.object_], cents: NDArray[np.int64]) -> Bools | bool:
        """Which transactions the family's filter lets count (online and offline alike)."""
        if self.where is None:
            return True
        if self.where == "zero_amount":
            zero: Bools = cents == 0
            return zero
        same: Bools = channel == self.where
        return same

    @property
    def tile_us(self) -> int:
        return self.tile_s * US

    @cached_property
    def tag(self) -> str:
        """The family's part of a shared key: tile, filter and how the counters are packed
        (``1d.ns.f``), so a feature set that packs them otherwise (a counter added by an
        upgrade) starts its own keys and never reads another's words; the old ones expire."""
        tile = f"{self.tile_s // 86400}d" if self.tile_s % 86400 == 0 else f"{self.tile_s}s"
        packing = ".".join("".join(word) for word in self.words) if not self.owned else ""
        return tile + (f"_{self.where}" if self.where else "") + (f".{packing}" if packing else "")

    @cached_property
    def words(self) -> tuple[tuple[str, ...], ...]:
        """Shared blocks: the counters packed in each int64 word (low one first)."""
        rest = list(self.counters)
        out: list[tuple[str, ...]] = []
        if "n" in rest:
            high = next((c for c in ("s", "f") if c in rest), None)
            out.append(("n", high) if high else ("n",))
            rest = [c for c in rest if c not in out[0]]
        out += [(c,) for c in rest]
        return tuple(out)

    @cached_property
    def block_bytes(self) -> int:
        return self.slots * 8 * len(self.words)

    @cached_property
    def fields(self) -> tuple[tuple[int, str, int, str], ...]:
        """Shared blocks: what a batch adds to a tile with ``BITFIELD`` (labels add ``f``,
        see `FUNCTIONS`): (word, counter, bit offset in the word's big-endian bytes, type).
        A word holding a sum takes one saturating field per counter (the sum signed 40
        bits, at most `S_CAP`; the count beside it unsigned), so a full sum stays full and
        never carries into the count. Other words hold counts only (the batch adds to the
        low one; billions a tile away from a carry) and take the word as one ``i64``."""
        out: list[tuple[int, str, int, str]] = []
        for w, members in enumerate(self.words):
            if "s" not in members:
                if members[0] != "f":
                    out.append((w, members[0], 0, "i64"))
                continue
            low = SHIFT["s"] if len(members) > 1 else 0
            out.append((w, "s", 64 - low - SUM_BITS, f"i{SUM_BITS}"))
            if low:
                out.append((w, members[0], 64 - low, f"u{low}"))
        return tuple(out)

    @cached_property
    def field_bits(self) -> NDArray[np.int64]:
        """Shared blocks: each of `fields`' bit offset in a block's first tile (built once,
        every batch's write reads it: never change it; left writeable, as the compiled
        kernels that read it were compiled for)."""
        bits = [w * self.slots * 64 + bit for w, _, bit, _ in self.fields]
        return np.array(bits, dtype=np.int64)

    @cached_property
    def field_codes(self) -> NDArray[np.int64]:
        """Shared blocks: each of `fields`' type as a number, ``i40`` -> 40, ``u24`` -> -24
        (`fraudstream.features.resp.field_type` reads them back; never change it)."""
        codes = [int(kind[1:]) * (1 if kind[0] == "i" else -1) for *_, kind in self.fields]
        return np.array(codes, dtype=np.int64)

    def word_of(self, counter: str) -> tuple[int, int]:
        """(word index, bit shift) of a counter in a shared block."""
        for w, members in enumerate(self.words):
            if counter in members:
                return w, SHIFT[counter] if members.index(counter) else 0
        raise KeyError(counter)

    def bit_offset(self, counter: str, slot: int) -> int:
        return (self.word_of(counter)[0] * self.slots + slot) * 64


@dataclass(frozen=True)
class Plan:
    """A `FeatureSet` compiled for a given allowed lateness."""

    features: FeatureSet
    families: tuple[Family, ...]
    lateness_s: int
    blob: np.dtype[np.void]

    @property
    def names(self) -> list[str]:
        return self.features.names

    @cached_property
    def owned(self) -> list[Family]:
        """The owned families (built once: every batch walks them; do not change it)."""
        return [f for f in self.families if f.owned]

    @cached_property
    def shared(self) -> list[Family]:
        """The shared families (built once, as `owned`)."""
        return [f for f in self.families if not f.owned]

    @cached_property
    def fresh_blob(self) -> bytes:
        """The state of a customer never seen (`empty_blobs`), built once: what an absent or
        unreadable blob reads as."""
        return empty_blobs(self, 1).tobytes()

    def family_of(self, agg: Aggregate) -> Family:
        for fam in self.families:
            if agg in fam.aggregates:
                return fam
        raise KeyError(agg.name)


def compile_plan(features: FeatureSet, *, lateness_s: int = 3600) -> Plan:
    families: list[Family] = []
    for i, ((entity, tile_s, where), aggs) in enumerate(features.families().items()):
        used = {c for a in aggs for c in a.counters}
        counters = tuple(c for c in COUNTERS if c in used) + tuple(
            sorted(c for c in used if c.startswith("d_"))
        )
        span = max(a.span for a in aggs)
        late = math.ceil(lateness_s / tile_s)
        slots = span + late + 1
        if entity not in OWNED:
            slots = max(MIN_BLOCK_TILES, 1 << (slots - 1).bit_length())
        families.append(Family(i, entity, tile_s, where, counters, span, slots, tuple(aggs)))
    plan_families = tuple(families)
    return Plan(features, plan_families, lateness_s, _blob_dtype(features, plan_families))


def _blob_dtype(features: FeatureSet, families: tuple[Family, ...]) -> np.dtype[np.void]:
    """The customer blob: a fixed little-endian record, so a batch of blobs decodes with one
    ``numpy.frombuffer`` and every field is a column over the batch."""
    fields: list[tuple[str, str] | tuple[str, str, tuple[int, ...]]] = [
        ("version", "<u2"),
        ("seq", "<u4"),
        ("head", "<u4"),
        ("loc_sys", "<u1"),
        ("loc_a", "<f8"),
        ("loc_b", "<f8"),
        ("loc_ts", "<i8"),
        ("last_ts", "<i8"),
    ]
    for fam in families:
        if not fam.owned:
            continue
        fields.append((f"r{fam.index}_tile", "<i4", (fam.slots,)))
        for c in fam.counters:
            fields.append((f"r{fam.index}_{c}", f"<i{WIDTH.get(c, 8)}", (fam.slots,)))
    k = (features.history,)
    # h_ts in whole seconds (u32, until 2106), h_cents clipped at HISTORY_CENTS_MAX: 20 bytes
    # an entry instead of 28. The previous transaction's exact time is ``last_ts``.
    fields += [("h_ts", "<u4", k), ("h_cents", "<i4", k), ("h_cell", "<u4", k), ("h_id", "<u8", k)]
    for j, seen in enumerate(features.first_seen):
        fields += [
            (f"s{j}_n", "<u4"),
            (f"s{j}_cur", "<u8", (seen.words,)),
            (f"s{j}_prev", "<u8", (seen.words,)),
        ]
    return np.dtype(fields)


NEW_PLACE = np.uint64(1 << 63)
"""The top bit of a history entry's id hash: the transaction was at a terminal new to its
customer (``is_first_seen_terminal`` as it was processed). Ids are hashed to 63 bits
(`ID_MASK`), so the flag costs no byte."""
ID_MASK = np.uint64((1 << 63) - 1)
BLOB_VERSION = 4
"""Layout version of the customer blob (its first two bytes). Bump it when the layout, or
the meaning of a field, changes: a blob of another version reads as unreadable, and its
customer starts afresh (`fraudstream.features.online.EngineStats.reset`)."""


def empty_blobs(plan: Plan, n: int) -> np.ndarray:
    """Fresh state for ``n`` customers never seen."""
    out = np.zeros(n, dtype=plan.blob)
    out["version"] = BLOB_VERSION
    for fam in plan.owned:
        out[f"r{fam.index}_tile"] = -1
        for c in fam.counters:
            if empty_value(c):
                out[f"r{fam.index}_{c}"] = empty_value(c)
    return out


def record_bytes(records: np.ndarray) -> NDArray[np.uint8]:
    """Contiguous records as rows of bytes (a view). Copying or indexing them so is ~5x
    faster than as records (numpy goes field by field through the blob's ~40 fields):
    ~10 µs -> ~2 µs for one customer's blob."""
    return records.view(np.uint8).reshape(len(records), records.dtype.itemsize)


def copy_records(records: np.ndarray) -> np.ndarray:
    """A writeable copy of contiguous records, byte for byte (see `record_bytes`)."""
    return record_bytes(records).copy().view(records.dtype).reshape(len(records))
