"""A customer's recent transactions online: admission, the newest one, the bounded history.

One compiled pass over a batch, in batch order, on the customers' new state (`admit`):

- what each transaction finds: the kept history (newest first), the newest transaction's
  exact time and the newest located one's place (the "last" features);
- whether it is admitted: not a redelivery (its id among the kept ones, or earlier in the
  batch), not late (older than the customer's newest by more than the lateness: the
  watermark is the customer's, read from its state, so every process agrees), and, when
  the history is full, newer than its oldest entry;
- then, if admitted, the state it leaves: the history keeps the ``k`` newest transactions
  *by event time* (an entry older than some kept ones is inserted in order, the oldest
  dropped), and the newest time and place are maxima by event time.

Replays: a redelivered transaction is found by its id while its entry is kept; once
dropped (``k`` newer ones since, e.g. a card-testing burst within the lateness), it is
older than every kept entry, so it is refused as late. A redelivery never counts twice,
at no cost in state; the price is that a *new* transaction dated before the ``k`` newest
(arriving late within a burst) is not stored either (scored, counted late): the lateness
of a customer is in effect the shorter of ``lateness_s`` and the span of its ``k`` newest
transactions. Entries keep their time to the second, so the comparison is "not newer
than the oldest kept second": an on-time transaction is refused only if all ``k`` kept
ones share its second.

Each entry's id hash keeps, in its top bit, whether the transaction was at a terminal new
to its customer (`mark_new_places`, once the first-seen sets have seen the batch).

So the state after a set of transactions does not depend on the order they arrived in
(within the lateness), which is what the backfill, processing in event-time order, assumes.
Ties in event time go to the later arrival (the later row, offline); the history orders by
the second (what it keeps), so a late transaction sharing its second with kept ones goes
after them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit
from numpy.typing import NDArray

from fraudstream.features.layout import ID_MASK, NEW_PLACE, US

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
ADMITTED, DUPLICATE, LATE = 0, 1, 2


@dataclass
class Found:
    """What each transaction of a batch found of its customer, and whether it was admitted."""

    status: NDArray[np.int8]
    """`ADMITTED`, `DUPLICATE` or `LATE`."""
    prev_ts: I64
    """(n, k) kept history, newest first: time floored to the second (µs), pads NONE_TS."""
    prev_cents: I64
    prev_cell: I64
    prev_new: NDArray[np.bool_]
    """Kept entries at a terminal then new to the customer (`mark_new_places`)."""
    prev_id: NDArray[np.uint64]
    """Their transaction-id hashes (0 pads)."""
    last_ts: I64
    """Exact time of the customer's newest transaction (NONE_TS: none)."""
    loc_sys: NDArray[np.uint8]
    loc_a: F64
    loc_b: F64
    loc_ts: I64
    """Place and time of its newest located transaction (system 0: none)."""
    new_place: NDArray[np.bool_] | None = None
    """The transaction itself at a terminal new to its customer (None: not tracked)."""

    @property
    def admitted(self) -> NDArray[np.bool_]:
        ok: NDArray[np.bool_] = self.status == ADMITTED
        return ok


def admit(
    blobs: np.ndarray,
    cust: I64,
    ts: I64,
    txid: NDArray[np.uint64],
    cents: I64,
    cell: I64,
    place: tuple[NDArray[np.uint8], F64, F64],
    lateness_us: int,
    none_ts: int,
) -> Found:
    """Run the batch through its customers' state ``blobs`` (changed in place; rows indexed
    by ``cust``): ``cents`` already clipped and ``cell`` computed as the history keeps them,
    ``place`` = (system, a, b) of each transaction."""
    n, k = len(ts), blobs["h_ts"].shape[1]
    repeat = np.zeros(n, dtype=bool)
    if n > 1:  # a batch of one repeats nothing of itself (np.unique: ~3 µs)
        _, first = np.unique(txid, return_index=True)
        repeat[:] = True
        repeat[first] = False
    found = Found(
        status=np.zeros(n, dtype=np.int8),
        prev_ts=np.full((n, k), none_ts, dtype=np.int64),
        prev_cents=np.zeros((n, k), dtype=np.int64),
        prev_cell=np.zeros((n, k), dtype=np.int64),
        prev_new=np.zeros((n, k), dtype=bool),
        prev_id=np.zeros((n, k), dtype=np.uint64),
        last_ts=np.full(n, none_ts, dtype=np.int64),
        loc_sys=np.zeros(n, dtype=np.uint8),
        loc_a=np.full(n, np.nan),
        loc_b=np.full(n, np.nan),
        loc_ts=np.full(n, none_ts, dtype=np.int64),
    )
    state = (blobs["head"], blobs["h_ts"], blobs["h_cents"], blobs["h_cell"], blobs["h_id"])
    newest = (blobs["last_ts"], blobs["loc_sys"], blobs["loc_a"], blobs["loc_b"], blobs["loc_ts"])
    _admit(
        cust, ts, txid, repeat, cents, cell, *place, lateness_us, US, ID_MASK, NEW_PLACE,
        *state, *newest,
        found.status, found.prev_ts, found.prev_cents, found.prev_cell, found.prev_new,
        found.prev_id, found.last_ts, found.loc_sys, found.loc_a, found.loc_b, found.loc_ts,
    )  # fmt: skip
    return found


@njit(cache=True)
def _holds(h_id, r, filled, txid, id_mask):  # type: ignore[no-untyped-def]
    for s in range(filled):
        if h_id[r, s] & id_mask == txid:
            return True
    return False


@njit(cache=True)
def _insert(head, h_ts, h_cents, h_cell, h_id, r, sec, cents, cell, txid):  # type: ignore[no-untyped-def]
    """Add an entry to row ``r``'s history, kept in event-time order in a ring (the newest
    at logical position ``head - 1``): the entries newer than it move up one place (a full
    ring's oldest is overwritten), it takes the place they left."""
    k = h_ts.shape[1]
    total = np.int64(head[r])
    low = total - min(total, k)
    j = total - 1
    while j >= low and np.int64(h_ts[r, j % k]) > sec:
        a, b = j % k, (j + 1) % k
        h_ts[r, b], h_cents[r, b], h_cell[r, b], h_id[r, b] = (
            h_ts[r, a], h_cents[r, a], h_cell[r, a], h_id[r, a]
        )  # fmt: skip
        j -= 1
    b = (j + 1) % k
    h_ts[r, b], h_cents[r, b], h_cell[r, b], h_id[r, b] = sec, cents, cell, txid
    head[r] = total + 1


@njit(cache=True)
def _admit(  # type: ignore[no-untyped-def]
    cust, ts, txid, repeat, cents, cell, sys, a, b, lateness, us, id_mask, new_place,
    head, h_ts, h_cents, h_cell, h_id, last_ts, loc_sys, loc_a, loc_b, loc_ts,
    status, prev_ts, prev_cents, prev_cell, prev_new, prev_id, seen_last, seen_sys, seen_a,
    seen_b, seen_loc,
):  # fmt: skip
    k = h_ts.shape[1]
    for i in range(cust.shape[0]):
        r = cust[i]
        total = np.int64(head[r])
        filled = min(total, k)
        for age in range(filled):
            slot = (total - 1 - age) % k
            prev_ts[i, age] = np.int64(h_ts[r, slot]) * us
            prev_cents[i, age] = h_cents[r, slot]
            prev_cell[i, age] = h_cell[r, slot]
            prev_new[i, age] = h_id[r, slot] >= new_place
            prev_id[i, age] = h_id[r, slot] & id_mask
        if total > 0:
            seen_last[i] = last_ts[r]
        if loc_sys[r] > 0:
            seen_sys[i], seen_a[i], seen_b[i] = loc_sys[r], loc_a[r], loc_b[r]
            seen_loc[i] = loc_ts[r]
        if repeat[i] or _holds(h_id, r, filled, txid[i], id_mask):
            status[i] = DUPLICATE
            continue
        sec = ts[i] // us
        if total > 0 and ts[i] < last_ts[r] - lateness:
            status[i] = LATE
            continue
        if filled == k and sec <= np.int64(h_ts[r, total % k]):
            status[i] = LATE  # not newer than all it keeps: maybe one it dropped, again
            continue
        _insert(head, h_ts, h_cents, h_cell, h_id, r, sec, cents[i], cell[i], txid[i])
        if total == 0 or ts[i] >= last_ts[r]:
            last_ts[r] = ts[i]
        if sys[i] > 0 and (loc_sys[r] == 0 or ts[i] >= loc_ts[r]):
            loc_sys[r], loc_a[r], loc_b[r], loc_ts[r] = sys[i], a[i], b[i], ts[i]


def mark_new_places(
    blobs: np.ndarray, found: Found, cust: I64, txid: NDArray[np.uint64], new: NDArray[np.bool_]
) -> None:
    """Flag the history entries of the admitted transactions ``new`` (at a terminal new to
    their customer: known only once the first-seen sets have seen them, after `admit`), in
    the state and in what the batch's later transactions found of it."""
    at = np.flatnonzero(new)
    if len(at):
        _mark_new_places(blobs["h_id"], cust, txid, at, found.prev_id, found.prev_new, NEW_PLACE)


@njit(cache=True)
def _mark_new_places(h_id, cust, txid, at, prev_id, prev_new, flag):  # type: ignore[no-untyped-def]
    """`mark_new_places` in one pass (numpy: a dozen calls, two ``np.isin``, ~30 µs for
    one transaction). Membership by binary search in the sorted rows and ids, as
    ``np.isin`` finds it."""
    m, k = at.shape[0], h_id.shape[1]
    hit_r = np.empty(m * k, dtype=np.int64)
    hit_s = np.empty(m * k, dtype=np.int64)
    h = 0
    for p in range(m):  # the entries first, then flagged: as compared before any flag
        r = cust[at[p]]
        for s in range(k):
            if h_id[r, s] == txid[at[p]]:
                hit_r[h], hit_s[h] = r, s
                h += 1
    for q in range(h):
        h_id[hit_r[q], hit_s[q]] |= flag
    # Later transactions of the same customers found these entries before they were flagged.
    rows = np.sort(cust[at])
    ids = np.sort(txid[at])
    for i in range(cust.shape[0]):
        j = np.searchsorted(rows, cust[i])
        if j == m or rows[j] != cust[i]:
            continue
        for s in range(prev_id.shape[1]):
            t = np.searchsorted(ids, prev_id[i, s])
            if t < m and ids[t] == prev_id[i, s]:
                prev_new[i, s] = True
