"""Lanes: a worker keeps one batch in flight per lane, each lane on its own share of the
worker's partitions with its own scorer (and so its own feature engine).

A batch spends much of its time waiting on the server: the stream read, the feature read
and write, the list lookups, the commit. With two lanes (threads) one lane's batch computes
while the other's waits, the way ``benchmarks/bench_features.py`` keeps two partitions in
flight. Every guarantee of one lane holds per lane, because lanes never share a partition:

- a lane reads, claims and commits only its partitions (`share_of`: every ``lanes``-th of the
  partitions held, in order), so a customer's transactions, all in one partition, are
  decided by one lane at a time, in order, and each batch is fenced by its own leases;
- the heartbeat, which is the only thing that changes the partitions held, runs alone
  (`Gate`): it waits for the batches in hand to be committed or dropped and holds new ones
  back, so leases are renewed, shed and taken between batches, as with one lane, and a
  partition changes lane only while no lane has any of its entries in hand.

The lanes beyond the first open only while a backlog lasts (`Width`): a second lane drained
a backlog 15–50 % faster here, but at a steady rate two lanes' small batches each pay a batch's
fixed cost and take turns at the interpreter lock, and `fraudstream demo`'s p99 at 2,000
tx/s doubled (docs/operations.md). The number of open lanes changes alone too, like the
heartbeat: the partitions are shared anew between batches.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


def share_of(held: Sequence[T], lane: int, lanes: int) -> list[T]:
    """The lane's share of the partitions held (in partition order): every ``lanes``-th,
    so shares differ by one partition at most.

    >>> share_of([0, 3, 5, 6, 9], 0, 2), share_of([0, 3, 5, 6, 9], 1, 2)
    ([0, 5, 9], [3, 6])
    """
    return list(held[lane::lanes])


class Width:
    """How many of ``lanes`` are open, from the sizes of the first lane's batches: all of
    them after `WIDEN_AFTER` full batches in a row (a backlog), one after `NARROW_AFTER`
    batches in a row that were not (it is drained)."""

    WIDEN_AFTER = 2
    NARROW_AFTER = 3

    def __init__(self, lanes: int, batch_size: int) -> None:
        self.lanes = lanes
        self.batch_size = batch_size
        self.open = 1
        self._run = 0
        """Batches in a row that argue for the other width."""

    def observe(self, size: int) -> int | None:
        """After a batch of ``size`` entries of the first lane: the new number of open lanes,
        or None to keep it."""
        if self.lanes == 1:
            return None
        full = size >= self.batch_size
        argues = full if self.open == 1 else not full
        self._run = self._run + 1 if argues else 0
        if self._run < (self.WIDEN_AFTER if self.open == 1 else self.NARROW_AFTER):
            return None
        self._run = 0
        self.open = self.lanes if self.open == 1 else 1
        return self.open


class Gate:
    """Batches run side by side (`batch`); the heartbeat runs alone, between them (`alone`).

    `alone` waits for the batches in hand and holds new ones back until it is done (it
    cannot be starved by lanes that keep starting batches). One thread calls `alone`.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active = 0
        self._held_back = False

    @contextmanager
    def batch(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._held_back)
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    @contextmanager
    def alone(self) -> Iterator[None]:
        with self._cond:
            self._held_back = True
            try:
                self._cond.wait_for(lambda: self._active == 0)
            except BaseException:  # a second signal while waiting: let the lanes go on
                self._held_back = False
                self._cond.notify_all()
                raise
        try:
            yield
        finally:
            with self._cond:
                self._held_back = False
                self._cond.notify_all()
