"""Send rows at a target rate, in a traffic pattern, or at event time compressed by a speedup.

`Pacer` hands rows to ``send(batch)`` in small batches, one per tick (10 ms by default). Three
modes, chosen by the arguments:

- **rate** (``tps > 0``): at every tick it sends what the pattern's integral says is due by
  now minus what it already sent (credit-based), so the rate is exact over the run whatever
  the tick jitter or the time ``send`` takes — a slow ``send`` is caught up on, never drifts.
  The ``pattern`` (`patterns`) shapes the rate around ``tps``.
- **unthrottled** (``tps == 0``, no ``speedup``): batches of ``max_batch`` as fast as ``send``
  takes them — a throughput test.
- **replay** (``speedup`` set): *event time*, not a rate, decides. A row whose event time is
  ``e`` is sent at wall time ``(e − e₀) / speedup`` after the start, ``e₀`` being the first
  row's event time: ``speedup=1`` replays the history as it happened, ``speedup=3600`` plays
  an hour of history per second, and the bursts and quiet nights of the history are kept.
  ``tps`` and ``pattern`` are ignored. Rows must come in event-time order (a late row is sent
  at once).

``clock`` and ``sleep`` are parameters so tests can run a pattern on a fake clock.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from fraudstream.errors import ConfigError
from fraudstream.simulate.patterns import Pattern, RateCurve, Shape

T = TypeVar("T")


@dataclass(frozen=True)
class PacerStats:
    """How a run went.

    ``target_tps`` is ``tps`` in rate mode, 0 unthrottled, and in replay mode the rate the
    compressed event times asked for (rows sent / the wall time their schedule spans).
    """

    sent: int
    elapsed: float
    target_tps: float
    achieved_tps: float
    expected: float
    """Rows the pattern asked for during ``elapsed`` (rate mode); rows sent otherwise."""


def event_seconds(row: Any) -> float:
    """Event time of a row in seconds: its ``timestamp`` (key or attribute), or the row itself."""
    value = row["timestamp"] if isinstance(row, Mapping) else getattr(row, "timestamp", row)
    return value.timestamp() if isinstance(value, datetime) else float(value)


class Pacer(Generic[T]):
    """Feeds ``send`` at a rate, a pattern or an event-time speedup (see the module doc)."""

    def __init__(
        self,
        send: Callable[[list[T]], None],
        *,
        tps: float = 0.0,
        pattern: Pattern = "constant",
        duration: float | None = None,
        speedup: float | None = None,
        event_time: Callable[[T], float] = event_seconds,
        tick: float = 0.01,
        max_batch: int = 1000,
        shape: Shape | None = None,
        seed: int = 0,
        on_progress: Callable[[int, float], None] | None = None,
        progress_every: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if speedup is not None and not speedup > 0:
            raise ConfigError("speedup", f"must be > 0, got {speedup}")
        if duration is not None and not duration > 0:
            raise ConfigError("duration", f"must be > 0, got {duration}")
        if max_batch < 1:
            raise ConfigError("max_batch", f"must be >= 1, got {max_batch}")
        self.send = send
        self.curve = RateCurve(pattern, tps, duration, seed, shape)
        self.duration, self.speedup, self.event_time = duration, speedup, event_time
        self.tick, self.max_batch = tick, max_batch
        self.on_progress, self.progress_every = on_progress, progress_every
        self.clock, self.sleep = clock, sleep
        self._stop = False
        self._sent = 0
        self._start = 0.0
        self._next_report = progress_every

    def stop(self) -> None:
        """Finish the current batch and return (callable from another thread)."""
        self._stop = True

    def run_batches(self, batches: Iterable[Sequence[T]]) -> PacerStats:
        """`run` over batches of rows (e.g. `iter_transaction_batches`), re-batched per tick."""
        return self.run(itertools.chain.from_iterable(batches))

    def run(self, rows: Iterable[T]) -> PacerStats:
        """Send ``rows`` until they run out, ``duration`` passes or `stop` is called."""
        self._stop, self._sent = False, 0
        self._start = self.clock()
        self._next_report = self.progress_every
        if self.speedup is not None:
            span = self._replay(iter(rows), self.speedup)
            expected = float(self._sent)
            target = self._sent / span if span > 0 else 0.0
        else:
            self._paced(iter(rows))
            target = self.curve.tps
            expected = self.curve.count(self._elapsed()) if target else float(self._sent)
        elapsed = self._elapsed()
        if self.on_progress is not None:
            self.on_progress(self._sent, elapsed)
        return PacerStats(
            sent=self._sent,
            elapsed=elapsed,
            target_tps=target,
            achieved_tps=self._sent / elapsed if elapsed > 0 else 0.0,
            expected=expected,
        )

    def _elapsed(self) -> float:
        return self.clock() - self._start

    def _over(self, now: float) -> bool:
        return self._stop or (self.duration is not None and now >= self.duration)

    def _emit(self, batch: list[T], now: float) -> None:
        self.send(batch)
        self._sent += len(batch)
        if self.on_progress is not None and now >= self._next_report:
            self.on_progress(self._sent, now)
            self._next_report = now + self.progress_every

    def _paced(self, rows: Iterator[T]) -> None:
        """Rate and unthrottled modes: send the credit due at each tick, then sleep to the next."""
        next_tick = 0.0
        while not self._over(now := self._elapsed()):
            if self.curve.tps:
                if self._send_due(rows, self.curve.count(now), now):
                    return
                next_tick = max(next_tick + self.tick, now)
                self.sleep(max(0.0, next_tick - self._elapsed()))
            elif not self._send_up_to(rows, self.max_batch, now):
                return
        if not self._stop and self.duration is not None and self.curve.tps:
            self._send_due(rows, self.curve.count(self.duration), self.duration)

    def _send_due(self, rows: Iterator[T], due: float, now: float) -> bool:
        """Send until ``due`` rows have been sent in all; True when ``rows`` ran out."""
        while (missing := int(due) - self._sent) > 0 and not self._stop:
            if not self._send_up_to(rows, min(missing, self.max_batch), now):
                return True
        return False

    def _send_up_to(self, rows: Iterator[T], n: int, now: float) -> bool:
        """Send the next ``n`` rows; False when fewer were left."""
        batch = list(itertools.islice(rows, n))
        if batch:
            self._emit(batch, now)
        return len(batch) == n

    def _replay(self, rows: Iterator[T], speedup: float) -> float:
        """Replay mode: send each row once its compressed event time has come.

        Returns the wall time the sent rows' event times span (the schedule's length).
        """
        first: float | None = None
        pending: T | None = None
        span = 0.0
        while not self._over(now := self._elapsed()):
            batch: list[T] = []
            wait = self.tick
            while len(batch) < self.max_batch:
                if pending is None and (pending := next(rows, None)) is None:
                    break
                offset = self.event_time(pending)
                first = offset if first is None else first
                due_at = (offset - first) / speedup
                if due_at > now:
                    wait = min(self.tick, due_at - now)
                    break
                batch.append(pending)
                span, pending = max(span, due_at), None
            if batch:
                self._emit(batch, now)
            if pending is None and not batch:
                break
            if len(batch) < self.max_batch:
                self.sleep(wait)
        return span
