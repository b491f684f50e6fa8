"""Customer and terminal profiles, and which terminals each customer can reach.

The Handbook's generative model (Le Borgne et al., section 3.2): customers and terminals are
points on a 100 × 100 grid; a customer spends, on average, ``mean_amount`` per transaction
(standard deviation half of it) and makes ``mean_nb_tx_per_day`` transactions a day, at the
terminals within ``radius`` of home. Geography is what makes terminal-based fraud (scenario 2)
spread over a neighbourhood of customers, as skimming does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fraudstream.simulate.arrays import FloatArray, IntArray, Stream, rng

GRID_SIZE = 100.0
_CHUNK_CELLS = 4_000_000
"""Distances are computed for a block of customers × all terminals at a time: ~32 MB."""


@dataclass(frozen=True)
class Terminals:
    x: FloatArray
    y: FloatArray

    def __len__(self) -> int:
        return len(self.x)


@dataclass(frozen=True)
class Customers:
    """Customer profiles; available terminals in compressed sparse rows.

    The terminals customer ``c`` uses are ``available[offsets[c]:offsets[c + 1]]``, in
    increasing terminal order: one flat array instead of 5,000 Python lists.
    """

    x: FloatArray
    y: FloatArray
    mean_amount: FloatArray
    std_amount: FloatArray
    mean_nb_tx_per_day: FloatArray
    offsets: IntArray
    available: IntArray

    def __len__(self) -> int:
        return len(self.x)

    @property
    def nb_terminals(self) -> IntArray:
        return np.diff(self.offsets)


def make_terminals(n_terminals: int, seed: int) -> Terminals:
    """Terminals uniformly placed on the grid."""
    gen = rng(seed, Stream.TERMINALS)
    return Terminals(
        x=gen.uniform(0, GRID_SIZE, n_terminals), y=gen.uniform(0, GRID_SIZE, n_terminals)
    )


def make_customers(n_customers: int, terminals: Terminals, radius: float, seed: int) -> Customers:
    """Customer profiles drawn as the Handbook does, with their terminals within ``radius``."""
    gen = rng(seed, Stream.CUSTOMERS)
    x = gen.uniform(0, GRID_SIZE, n_customers)
    y = gen.uniform(0, GRID_SIZE, n_customers)
    mean_amount = gen.uniform(5, 100, n_customers)
    mean_nb_tx_per_day = gen.uniform(0, 4, n_customers)
    offsets, available = terminals_within(x, y, terminals, radius)
    return Customers(
        x=x,
        y=y,
        mean_amount=mean_amount,
        std_amount=mean_amount / 2,
        mean_nb_tx_per_day=mean_nb_tx_per_day,
        offsets=offsets,
        available=available,
    )


def terminals_within(
    x: FloatArray, y: FloatArray, terminals: Terminals, radius: float
) -> tuple[IntArray, IntArray]:
    """For each point, the terminals strictly closer than ``radius``, as (offsets, indices).

    Brute force by blocks of points: 5,000 × 10,000 distances take a fraction of a second
    with numpy, which is simpler and no slower here than a spatial index.
    """
    block = max(1, _CHUNK_CELLS // max(1, len(terminals)))
    rows: list[IntArray] = []
    cols: list[IntArray] = []
    r2 = radius * radius
    for start in range(0, len(x), block):
        dx = x[start : start + block, None] - terminals.x[None, :]
        dy = y[start : start + block, None] - terminals.y[None, :]
        row, col = np.nonzero(dx * dx + dy * dy < r2)
        rows.append(row.astype(np.int64) + start)
        cols.append(col.astype(np.int64))
    all_rows = np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)
    counts = np.bincount(all_rows, minlength=len(x))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    available = np.concatenate(cols) if cols else np.empty(0, dtype=np.int64)
    return offsets, available


def pick_available(customers: Customers, customer: IntArray, u: FloatArray) -> IntArray:
    """A terminal uniformly among each customer's available ones (``u`` ~ U[0, 1)).

    Callers must only pass customers with at least one available terminal.
    """
    count = customers.nb_terminals[customer]
    pick = np.minimum((u * count).astype(np.int64), count - 1)
    return customers.available[customers.offsets[customer] + pick]
