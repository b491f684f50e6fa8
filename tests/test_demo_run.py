"""The demo's traffic starts once its consumers read the decisions stream."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from fraudstream.alerts.consumer import ALERTS_GROUP
from fraudstream.config import Settings
from fraudstream.demo import DemoRun
from fraudstream.store.sink import SINK_GROUP
from fraudstream.stream.consumer import ensure_group


def _demo(settings: Settings, client: redis.Redis) -> DemoRun:
    return DemoRun(settings, client, workers=1, tps=1, duration=1, bad_ratio=0, seed=0)


def _read_as(client: redis.Redis, stream: str, group: str) -> None:
    ensure_group(client, stream, group)
    client.xreadgroup(group, f"{group}:host", {stream: ">"}, count=1)


def test_traffic_waits_for_both_consumers_to_read(client: redis.Redis, settings: Settings) -> None:
    demo = _demo(settings, client)
    stream = demo.keys.decisions

    def consumers_come_up() -> None:
        time.sleep(0.4)
        _read_as(client, stream, SINK_GROUP)
        time.sleep(0.4)
        _read_as(client, stream, ALERTS_GROUP)

    thread = threading.Thread(target=consumers_come_up)
    started = time.monotonic()
    thread.start()
    demo._wait_for_consumers(started, timeout=20)
    waited = time.monotonic() - started
    thread.join()
    assert 0.8 <= waited < 5


def test_a_consumer_that_read_before_the_start_does_not_count(
    client: redis.Redis, settings: Settings
) -> None:
    """A consumer name is stable across restarts: its entry from an earlier run, idle since,
    is not a consumer of this run."""
    demo = _demo(settings, client)
    for group in (SINK_GROUP, ALERTS_GROUP):
        _read_as(client, demo.keys.decisions, group)
    time.sleep(0.3)
    started = time.monotonic()
    demo._wait_for_consumers(started, timeout=1.0)
    assert time.monotonic() - started >= 1.0


class KeepsItsWorkers(DemoRun):
    """A run on workers started elsewhere (as the pipeline benchmark's), which fails."""

    def _start_workers(self) -> None:
        pass

    def _wait_for_workers(self, timeout: float = 120.0) -> None:
        raise RuntimeError("no workers")

    def _stop_workers(self) -> None:
        pass


def test_a_run_stops_its_consumers_even_on_workers_it_keeps(
    client: redis.Redis, settings: Settings
) -> None:
    demo = KeepsItsWorkers(settings, client, workers=1, tps=1, duration=1, bad_ratio=0, seed=0)
    with pytest.raises(RuntimeError, match="no workers"):
        demo.run()
    assert len(demo._consumers) == 2
    assert all(proc.poll() is not None for proc in demo._consumers)
