"""Terminal neighbourhoods learnt from co-visitation: how far a terminal lies from a
customer's usual ones when no coordinates say it.

Terminals used by the same customers are near each other (a customer shops around home), so
a terminal whose customers never use any of *this* customer's terminals is far from them:
where an account takeover pays. The neighbourhood is computed offline over a period of
history, stored compactly and read online like the static profiles
(`fraudstream.features.profiles`):

- per terminal, a *customer sketch*: a `BITS`-bit set of its customers over the period (bit
  ``blake2b(customer_id) % BITS``, `seen.value_hashes`). A terminal with `HUB_CUSTOMERS` or
  more distinct customers (an e-commerce merchant: it links everyone) is a *hub*: marked,
  without a sketch;
- per customer, a *neighbour sketch*: the OR of the customer sketches of its non-hub
  terminals, i.e. every customer who shared a terminal with it.

Feature ``terminal_covisit_share`` of a transaction of customer ``c`` at terminal ``t``: the
share of ``t``'s sketch bits also set in ``c``'s neighbour sketch (``popcount(t & c) /
popcount(t)``): ~1 at a terminal of the customer's own area, ~0 (the sketch's fill, from hash
collisions) at one whose customers never met it. NaN when ``c`` has no neighbour sketch,
``t`` none (unknown in the period) or ``t`` is a hub.

Transactions known to be fraud when the neighbourhood is built (a label reported before the
period's end) are left out, so a takeover does not make its own terminals neighbours.

Online: records at ``{ns}:{c:ID}:nb`` and ``{ns}:{t:ID}:nb`` (the hash tags of the
customer's and the terminal's state), read in the batch's one ``MGET``; written by
`load_neighbours` (``fraudstream features load-neighbours``). Offline: `backfill` takes the
same `Neighbourhood`; `train` and `evaluate` build it from the `DAYS` days before the
training window. Both read the same bytes and run `covisit_share`, so they agree exactly.
A record is ``[VERSION, kind]`` + the sketch's 32 little-endian 64-bit words (258 bytes), a
hub's ``[VERSION, HUB]`` alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
from numpy.typing import NDArray

from fraudstream.errors import SchemaError
from fraudstream.features.route import wire_for
from fraudstream.features.seen import value_hashes
from fraudstream.features.wire import Client, FeatureStoreError, first_error

BITS = 2048
WORDS = BITS // 64
HUB_CUSTOMERS = 60
"""Distinct customers over the period from which a terminal is a hub (no sketch)."""
DAYS = 30
"""Default period: the days of history before the neighbourhood's end."""
VERSION = 1
NONE, SKETCH, HUB = 0, 1, 2
"""A terminal's kind: unknown in the period, a customer sketch, a hub."""
U64 = NDArray[np.uint64]
I64 = NDArray[np.int64]
F64 = NDArray[np.float64]


def neighbour_key(namespace: str, tag: str, entity_id: str) -> str:
    """``tag``: ``c`` (a customer's neighbour sketch) or ``t`` (a terminal's sketch)."""
    return f"{namespace}:{{{tag}:{entity_id}}}:nb"


@dataclass(frozen=True)
class Neighbourhood:
    """The sketches of a period: rows of ``customer_bits`` / ``terminal_bits`` are
    ``WORDS`` uint64 words; a hub terminal's row is zeros."""

    customers: list[str]
    customer_bits: U64
    terminals: list[str]
    terminal_bits: U64
    hub: NDArray[np.bool_]
    start: datetime
    end: datetime

    def records(self) -> list[tuple[str, str, bytes]]:
        """(tag, id, record bytes) of every customer and terminal."""
        out = [
            ("c", c, bytes((VERSION, SKETCH)) + self.customer_bits[i].astype("<u8").tobytes())
            for i, c in enumerate(self.customers)
        ]
        for i, t in enumerate(self.terminals):
            if self.hub[i]:
                out.append(("t", t, bytes((VERSION, HUB))))
            else:
                bits = self.terminal_bits[i].astype("<u8").tobytes()
                out.append(("t", t, bytes((VERSION, SKETCH)) + bits))
        return out


def build_neighbourhood(
    history: pl.DataFrame,
    until: datetime,
    *,
    days: int = DAYS,
    labels: pl.DataFrame | None = None,
    hub_customers: int = HUB_CUSTOMERS,
) -> Neighbourhood:
    """The neighbourhood of the ``days`` before ``until`` (``[until - days, until)``).

    Args:
        history: ``customer_id``, ``terminal_id``, ``timestamp`` (and ``transaction_id``
            when ``labels`` are given); other columns are ignored.
        labels: ``transaction_id`` + ``reported_at`` (+ ``is_fraud``, false rows ignored):
            the transactions reported as fraud before ``until`` are left out.

    Raises:
        SchemaError: a needed column is missing, naming it.
    """
    if days < 1:
        raise SchemaError("days", f"must be >= 1, got {days}")
    for col in ("customer_id", "terminal_id", "timestamp"):
        if col not in history.columns:
            raise SchemaError(col, "required column is missing")
    if until.tzinfo is None:
        until = until.replace(tzinfo=UTC)
    start = until - timedelta(days=days)
    ts = pl.col("timestamp")
    dtype = history.schema["timestamp"]
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
        ts = ts.dt.replace_time_zone("UTC")
    period = history.filter(ts.is_between(start, until, closed="left"))
    if labels is not None and period.height and labels.height:
        if "transaction_id" not in history.columns:
            raise SchemaError("transaction_id", "required with labels")
        if "reported_at" not in labels.columns:
            raise SchemaError("reported_at", "required column of the labels is missing")
        rep = pl.col("reported_at")
        rep_type = labels.schema["reported_at"]
        if isinstance(rep_type, pl.Datetime) and rep_type.time_zone is None:
            rep = rep.dt.replace_time_zone("UTC")
        known = labels.filter(rep < until)
        if "is_fraud" in known.columns:
            known = known.filter(pl.col("is_fraud"))
        gone = known.select(pl.col("transaction_id").cast(pl.String)).unique()
        period = period.with_columns(pl.col("transaction_id").cast(pl.String)).join(
            gone, on="transaction_id", how="anti"
        )
    pairs = (
        period.select(
            pl.col("customer_id").cast(pl.String).alias("c"),
            pl.col("terminal_id").cast(pl.String).alias("t"),
        )
        .drop_nulls()
        .unique()
        .sort("t", "c")
    )
    terminals = pairs["t"].unique(maintain_order=True)
    t_idx = pairs.select(pl.col("t").rank("dense").cast(pl.Int64) - 1).to_series().to_numpy()
    per_terminal = np.bincount(t_idx, minlength=len(terminals))
    hub = per_terminal >= hub_customers
    c_names = pairs["c"].unique().sort()
    c_idx = pairs.select(pl.col("c").rank("dense").cast(pl.Int64) - 1).to_series().to_numpy()
    bit = (value_hashes(c_names.to_list()) % np.uint64(BITS)).astype(np.int64)[c_idx]
    term_bits = np.zeros((len(terminals), WORDS), dtype=np.uint64)
    np.bitwise_or.at(
        term_bits, (t_idx, bit // 64), np.left_shift(np.uint64(1), (bit % 64).astype(np.uint64))
    )
    term_bits[hub] = 0
    keep = ~hub[t_idx]
    cust_bits = np.zeros((len(c_names), WORDS), dtype=np.uint64)
    for lo in range(0, int(keep.sum()), 1 << 16):  # bounded: 16 MB of rows at a time
        rows = np.flatnonzero(keep)[lo : lo + (1 << 16)]
        np.bitwise_or.at(cust_bits, c_idx[rows], term_bits[t_idx[rows]])
    has = np.zeros(len(c_names), dtype=bool)
    has[c_idx[keep]] = True
    return Neighbourhood(
        customers=c_names.filter(pl.Series(has)).to_list(),
        customer_bits=cust_bits[has],
        terminals=terminals.to_list(),
        terminal_bits=term_bits,
        hub=hub,
        start=start,
        end=until,
    )


def covisit_share(
    customer_bits: U64, customer_has: NDArray[np.bool_], terminal_bits: U64, kind: NDArray[np.uint8]
) -> F64:
    """Per row, ``popcount(terminal & customer) / popcount(terminal)``; NaN unless the
    customer has a sketch and the terminal is `SKETCH` (rows: gathered per transaction)."""
    both = np.bitwise_count(customer_bits & terminal_bits).sum(axis=1, dtype=np.int64)
    own = np.bitwise_count(terminal_bits).sum(axis=1, dtype=np.int64)
    ok = customer_has & (kind == SKETCH) & (own > 0)
    share: F64 = np.where(ok, both / np.maximum(own, 1).astype(np.float64), np.nan)
    return share


@dataclass
class NeighbourInputs:
    """What the feature reads: per transaction, a row of the customer tables and of the
    terminal tables (the last row of each: none)."""

    customer_bits: U64
    customer_has: NDArray[np.bool_]
    terminal_bits: U64
    terminal_kind: NDArray[np.uint8]
    customer_row: I64
    terminal_row: I64

    def take(self, rows: I64) -> NeighbourInputs:
        return NeighbourInputs(
            self.customer_bits,
            self.customer_has,
            self.terminal_bits,
            self.terminal_kind,
            self.customer_row[rows],
            self.terminal_row[rows],
        )

    def share(self) -> F64:
        c, t = self.customer_row, self.terminal_row
        bits, kind = self.terminal_bits[t], self.terminal_kind[t]
        return covisit_share(self.customer_bits[c], self.customer_has[c], bits, kind)

    @classmethod
    def of(
        cls, hood: Neighbourhood | None, customer_ids: pl.Series, terminal_ids: pl.Series
    ) -> NeighbourInputs:
        """Offline: each transaction's rows in ``hood`` (None: nothing known)."""
        if hood is None:
            hood = Neighbourhood([], _bits(0), [], _bits(0), np.zeros(0, bool), EPOCH, EPOCH)
        nc = len(hood.customers)
        return cls(
            np.concatenate([hood.customer_bits, _bits(1)]),
            np.concatenate([np.ones(nc, bool), [False]]),
            np.concatenate([hood.terminal_bits, _bits(1)]),
            np.concatenate([np.where(hood.hub, HUB, SKETCH).astype(np.uint8), [NONE]]).astype(
                np.uint8
            ),
            _rows(customer_ids, hood.customers),
            _rows(terminal_ids, hood.terminals),
        )


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _bits(n: int) -> U64:
    return np.zeros((n, WORDS), dtype=np.uint64)


def _rows(ids: pl.Series, known: list[str]) -> I64:
    """Each id's place in ``known``; ``len(known)`` (the "none" row) when absent."""
    index = pl.DataFrame({"k": pl.Series(known, dtype=pl.String), "_r": np.arange(len(known))})
    at = pl.DataFrame({"k": ids.cast(pl.String)}).join(
        index, on="k", how="left", maintain_order="left"
    )["_r"]
    return at.fill_null(len(known)).to_numpy().astype(np.int64)


def decode_neighbours(
    customer_raws: Sequence[bytes | None],
    terminal_raws: Sequence[bytes | None],
    customer_codes: I64,
    terminal_codes: I64,
) -> tuple[NeighbourInputs, I64, I64]:
    """Online: the records read for a batch's distinct customers and terminals, and each
    transaction's codes into them (-1: none) → the inputs, and the positions of the
    unreadable customer and terminal records (another size or version: read as none)."""
    nc, nt = len(customer_raws), len(terminal_raws)
    cbits, chas, bad_c = _sketches(customer_raws)
    tbits, is_sketch, bad_t = _sketches(terminal_raws)
    hub = np.array([raw == _HUB_RECORD for raw in terminal_raws] + [False], dtype=bool)
    kind = np.where(is_sketch, SKETCH, np.where(hub, HUB, NONE)).astype(np.uint8)
    bad_t = bad_t[~hub[bad_t]]
    inputs = NeighbourInputs(
        cbits,
        chas,
        tbits,
        kind,
        np.where(customer_codes >= 0, customer_codes, nc),
        np.where(terminal_codes >= 0, terminal_codes, nt),
    )
    return inputs, bad_c, bad_t


_SIZE = 2 + 8 * WORDS
_SKETCH_HEAD = bytes((VERSION, SKETCH))
_HUB_RECORD = bytes((VERSION, HUB))
_EMPTY = bytes(_SIZE)


def _sketches(raws: Sequence[bytes | None]) -> tuple[U64, NDArray[np.bool_], I64]:
    """The sketch records among ``raws`` as rows of words (one zero row more, for "none"),
    which rows are sketches, and the positions of those neither absent nor a sketch."""
    ok = [raw is not None and len(raw) == _SIZE and raw[:2] == _SKETCH_HEAD for raw in raws]
    parts = [raw if good and raw else _EMPTY for raw, good in zip(raws, ok, strict=True)]
    buf = np.frombuffer(b"".join(parts) + _EMPTY, dtype=np.uint8).reshape(len(raws) + 1, _SIZE)
    bits = np.ascontiguousarray(buf[:, 2:]).view("<u8").astype(np.uint64)
    has = np.array([*ok, False], dtype=bool)
    pairs = enumerate(zip(raws, ok, strict=True))
    bad = [i for i, (raw, good) in pairs if raw is not None and not good]
    return bits, has, np.array(bad, dtype=np.int64)


def load_neighbours(
    client: Client,
    hood: Neighbourhood,
    *,
    namespace: str = "fs",
    chunk: int = 5000,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write (replace) the records of ``hood``; returns how many were written.

    Raises:
        FeatureStoreError: Valkey refused a write.
    """
    wire = wire_for(client)
    records = hood.records()
    for lo in range(0, len(records), chunk):
        commands = [
            ("SET", neighbour_key(namespace, tag, eid), rec)
            for tag, eid, rec in records[lo : lo + chunk]
        ]
        if (err := first_error(wire.run(commands))) is not None:
            raise FeatureStoreError(f"writing neighbourhoods failed: {err}")
        if progress is not None:
            progress(len(commands))
    return len(records)
