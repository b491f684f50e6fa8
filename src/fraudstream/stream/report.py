"""A worker's figures over an interval, written as one JSON line for its supervisor.

A worker started by ``fraudstream worker --processes N`` (`fraudstream.stream.supervisor`)
writes to its stdout, which is a pipe to the supervisor, one `Report` when it starts working
and one every interval after that. A pipe needs no key in Valkey, nothing expires or is left
behind when a process dies, and its end tells each side that the other is gone: a worker whose
supervisor died (the write fails) finishes its batch and stops.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TextIO

import msgspec

from fraudstream.schema import Decision
from fraudstream.stream.keys import GROUP

if TYPE_CHECKING:
    from fraudstream.stream.worker import Worker


class Report(msgspec.Struct, frozen=True):
    """What one worker did over the last interval (all zero in the ``ready`` report)."""

    pid: int
    ready: bool = False
    """The first report: the worker is past its start-up and works."""
    tps: float = 0.0
    """Entries decided or dead-lettered per second."""
    lag: int = 0
    """Entries in its partitions not decided yet (unread or pending)."""
    pending: int = 0
    """Entries of its partitions read by a consumer and not acked (a dead one's, say)."""
    p99_ms: float | None = None
    """99th percentile of the decisions' latency (stream arrival to decision), None if none."""
    partitions: int = 0


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Report)


def encode_report(report: Report) -> bytes:
    return _encoder.encode(report)


def decode_report(line: bytes) -> Report | None:
    """The report a line carries, or None if it is not one (a stray print)."""
    try:
        return _decoder.decode(line)
    except msgspec.DecodeError:
        return None


def p99(values: Sequence[float]) -> float | None:
    """Nearest-rank 99th percentile.

    >>> p99([float(v) for v in range(1, 201)]), p99([3.0]), p99([])
    (198.0, 3.0, None)
    """
    if not values:
        return None
    ordered = sorted(values)
    return ordered[math.ceil(0.99 * len(ordered)) - 1]


class IntervalReporter:
    """The worker's `Monitor` that writes its reports (see `Worker.run`)."""

    def __init__(
        self,
        interval_s: float,
        out: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval_s = interval_s
        self.out = out or sys.stdout
        self.clock = clock
        self._since = clock()
        self._entries = 0
        self._latencies: list[float] = []

    def started(self, worker: Worker) -> None:
        self._since = self.clock()
        self._write(worker, Report(pid=os.getpid(), ready=True))

    def decided(self, decisions: Sequence[Decision], entries: int) -> None:
        self._entries += entries
        self._latencies.extend(d.latency_ms for d in decisions)

    def tick(self, worker: Worker) -> None:
        """Write the interval's report once the interval is over."""
        now = self.clock()
        if now - self._since < self.interval_s:
            return
        lag, pending = backlog(worker)
        report = Report(
            pid=os.getpid(),
            tps=self._entries / (now - self._since),
            lag=lag,
            pending=pending,
            p99_ms=p99(self._latencies),
            partitions=len(worker.leases.owned),
        )
        self._since, self._entries, self._latencies = now, 0, []
        self._write(worker, report)

    def _write(self, worker: Worker, report: Report) -> None:
        try:
            self.out.write(encode_report(report).decode() + "\n")
            self.out.flush()
        except BrokenPipeError:  # the supervisor is gone: finish the batch in hand and stop
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.out.fileno())  # nothing more to flush into the dead pipe
            worker.request_stop()


def backlog(worker: Worker) -> tuple[int, int]:
    """Entries in the worker's partitions (processed ones are deleted, so a stream's length
    is what is unread or pending), and how many of them are pending."""
    owned = sorted(worker.leases.owned)
    if not owned:
        return 0, 0
    pipe = worker.client.pipeline(transaction=False)
    for p in owned:
        pipe.xlen(worker.keys.input(p))
        pipe.xpending(worker.keys.input(p), GROUP)
    replies = pipe.execute()
    return sum(replies[0::2]), sum(int(r["pending"]) for r in replies[1::2])
