"""`DriftMonitor`: a worker's drift window, fed by the scorer and published between batches.

It is two hooks in one object, so neither the worker loop nor the scorer knows about drift:

- the `Scorer`'s ``on_scored`` callback (``observe``): after each batch whose feature state
  was written (a batch that is retried is not counted twice), the active model's scores and
  the live feature matrix go into the window of that model (a hot swap starts a new one);
- a worker `Monitor` (``tick``): every ``interval_s`` it sets this process's PSI gauges and
  publishes the window's counts for the fleet (`fleet.publish`).

A model without a reference (trained before drift existed) is scored as usual and counted
nowhere; the gauges drop to 0 when it becomes active.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import redis
from numpy.typing import NDArray

from fraudstream import metrics
from fraudstream.drift.fleet import publish
from fraudstream.drift.reference import Reference
from fraudstream.drift.window import MIN_ROWS, WINDOW_ROWS, DriftWindow
from fraudstream.errors import DriftError
from fraudstream.schema import Decision

if TYPE_CHECKING:
    from fraudstream.config import Settings
    from fraudstream.models import ModelBundle
    from fraudstream.scoring import Scorer
    from fraudstream.stream.worker import Worker

log = logging.getLogger(__name__)


class DriftMonitor:
    """One worker process's drift (see the module)."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        columns: Sequence[str],
        *,
        consumer: str = "",
        capacity: int = WINDOW_ROWS,
        min_rows: int = MIN_ROWS,
        interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.columns = list(columns)
        self.consumer = consumer
        self.capacity = capacity
        self.min_rows = min_rows
        self.interval_s = interval_s
        self.clock = clock
        self.window: DriftWindow | None = None
        self._version: str | None = None
        self._next = 0.0
        self._lock = threading.Lock()
        """A worker's lanes score in threads: one batch counted at a time, and the figures
        read between batches."""

    @classmethod
    def attached(
        cls, settings: Settings, client: redis.Redis, scorers: Sequence[Scorer], consumer: str = ""
    ) -> DriftMonitor | None:
        """One window for a process's scorers (a worker's lanes, an API server's), set as
        their ``on_scored``; None when they compute no features (nothing to measure).
        ``consumer``: the window's name for the fleet (a worker takes its own at start)."""
        if not scorers or scorers[0].features is None:
            return None
        monitor = cls(
            client,
            settings.stream_prefix,
            scorers[0].features.names,
            consumer=consumer,
            capacity=settings.drift_window,
        )
        for scorer in scorers:
            scorer.on_scored = monitor.observe
        return monitor

    def observe(
        self, features: NDArray[np.float64], scores: NDArray[np.float64], model: ModelBundle
    ) -> None:
        """The scorer's ``on_scored`` (every lane's): count a batch the model scored."""
        with self._lock:
            self._observe(features, scores, model)

    def _observe(
        self, features: NDArray[np.float64], scores: NDArray[np.float64], model: ModelBundle
    ) -> None:
        if model.version != self._version:
            self._version = model.version
            self.window = self._window(model)
            if self.window is None:
                metrics.drift_figures(None)  # the last model's figures no longer hold
        if self.window is not None:
            self.window.observe(features, scores)

    def _window(self, model: ModelBundle) -> DriftWindow | None:
        try:
            reference = Reference.from_meta(model.meta)
        except DriftError as exc:
            log.warning("model %s: no drift figures: %s", model.version, exc)
            return None
        if reference is None:
            return None
        return DriftWindow(
            reference,
            model.version,
            self.columns,
            capacity=self.capacity,
            min_rows=self.min_rows,
        )

    # --- the worker `Monitor` ---------------------------------------------------------------

    def started(self, worker: Worker) -> None:
        self.consumer = self.consumer or worker.consumer
        self._next = 0.0

    def decided(self, decisions: Sequence[Decision], entries: int) -> None:
        pass

    def tick(self, worker: Worker | None = None, *, force: bool = False) -> None:
        """Every ``interval_s`` (or now, ``force``: a process about to stop): the gauges, and
        the window for the fleet."""
        now = self.clock()
        if (now < self._next and not force) or self.window is None:
            return
        self._next = now + self.interval_s
        with self._lock:  # the lanes wait for one Valkey write every interval
            window = self.window
            if window is None:
                return
            metrics.drift_figures(window.figures())
            try:
                publish(self.client, self.prefix, self.consumer, window)
            except redis.RedisError as exc:  # the worker's own loop meets the outage too
                log.warning("drift: could not publish the window: %s", exc)
