"""Traffic patterns (pure shapes) and the pacer (rate, replay, unthrottled)."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fraudstream.errors import ConfigError
from fraudstream.simulate.patterns import PATTERNS, Pattern, RateCurve, Shape, rate_at
from fraudstream.simulate.traffic import Pacer


class FakeClock:
    """Time that passes only when the pacer sleeps: a pattern runs in no wall time."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_pacing_holds_a_fixed_rate_within_five_percent() -> None:
    sent: list[int] = []
    stats = Pacer(sent.extend, tps=2000, duration=3.0).run(itertools.count())
    assert len(sent) == stats.sent
    assert stats.sent == pytest.approx(6000, rel=0.05)
    assert stats.achieved_tps == pytest.approx(2000, rel=0.05)
    assert sent == list(range(len(sent)))  # in order, none lost or repeated


def test_constant_and_wave_shapes() -> None:
    assert rate_at("constant", 12.3, 100) == 100
    period = 60.0
    assert rate_at("wave", period / 4, 100, duration=120) == pytest.approx(150)
    assert rate_at("wave", 3 * period / 4, 100, duration=120) == pytest.approx(50)
    assert rate_at("wave", period / 2, 100, duration=120) == pytest.approx(100)
    assert RateCurve("wave", 100, duration=120).count(120) == pytest.approx(12_000)


def test_spike_shape_bursts_five_fold_for_a_few_seconds() -> None:
    times = np.arange(0, 90, 0.5)
    rates = np.array([rate_at("spike", t, 100) for t in times])
    assert set(rates) == {100.0, 500.0}
    assert (rates == 500).mean() == pytest.approx(3 / 30)
    assert rate_at("spike", 28.5, 100) == 500 and rate_at("spike", 30.5, 100) == 100


def test_random_shape_is_a_reproducible_walk_around_the_target() -> None:
    curve = RateCurve("random", 100, seed=4)
    rates = np.array([curve.rate(float(t)) for t in range(3600)])
    assert 9.99 <= rates.min() and rates.max() <= 190.01  # within ±90 %
    assert rates.mean() == pytest.approx(100, rel=0.1)
    assert rates.std() > 15  # it does move…
    assert np.corrcoef(rates[:-1], rates[1:])[0, 1] > 0.5  # …as a walk, not white noise
    again = [rate_at("random", float(t), 100, seed=4) for t in (0, 17.5, 3000)]
    assert again == [curve.rate(t) for t in (0, 17.5, 3000)]
    assert rate_at("random", 17.5, 100, seed=5) != curve.rate(17.5)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_count_is_the_integral_of_the_rate(pattern: Pattern) -> None:
    curve = RateCurve(pattern, 50, duration=100, shape=Shape(random_step=0.5))
    t = np.linspace(0, 100, 200_001)
    rates = np.array([curve.rate(x) for x in t])
    numeric = float(np.sum((rates[1:] + rates[:-1]) / 2 * np.diff(t)))
    assert curve.count(100) == pytest.approx(numeric, rel=1e-3)


@given(
    pattern=st.sampled_from(PATTERNS),
    a=st.floats(0, 500, allow_nan=False),
    b=st.floats(0, 500, allow_nan=False),
)
def test_count_never_decreases(pattern: Pattern, a: float, b: float) -> None:
    curve = RateCurve(pattern, 80, seed=1)
    low, high = sorted((a, b))
    assert curve.count(high) >= curve.count(low) - 1e-9


@pytest.mark.parametrize("pattern", ["wave", "spike", "random"])
def test_pacer_follows_the_pattern_second_by_second(pattern: Pattern) -> None:
    fake = FakeClock()
    stamps: list[float] = []
    pacer: Pacer[int] = Pacer(
        lambda batch: stamps.extend([fake.now] * len(batch)),
        tps=200,
        pattern=pattern,
        duration=120,
        clock=fake.clock,
        sleep=fake.sleep,
    )
    stats = pacer.run(itertools.count())
    curve = RateCurve(pattern, 200, duration=120)
    seconds = np.arange(121)
    sent_by = np.searchsorted(np.array(stamps), seconds + 1e-6, side="right")
    wanted = np.array([curve.count(float(t)) for t in seconds])
    # credit-based: at any moment at most one tick's worth of rows behind, never ahead
    one_tick = 1000 * pacer.tick + 1
    assert np.all(sent_by <= wanted + 1e-6) and np.all(sent_by >= wanted - one_tick)
    per_second = np.diff(sent_by)
    assert per_second.max() > (400 if pattern == "spike" else 250)  # the shape shows
    assert stats.sent == int(curve.count(120))


def test_replay_follows_event_times_compressed_by_the_speedup() -> None:
    fake = FakeClock()
    start = datetime(2018, 4, 1, tzinfo=UTC)
    offsets = [0, 10, 20, 20, 3600]
    rows = [{"timestamp": start + timedelta(seconds=s), "n": i} for i, s in enumerate(offsets)]
    sent_at: dict[int, float] = {}
    pacer: Pacer[dict[str, object]] = Pacer(
        lambda batch: sent_at.update({int(str(r["n"])): fake.now for r in batch}),
        speedup=10,
        clock=fake.clock,
        sleep=fake.sleep,
    )
    stats = pacer.run(rows)
    assert [sent_at[i] for i in range(5)] == pytest.approx([0, 1, 2, 2, 360], abs=0.011)
    assert stats.sent == 5 and stats.target_tps == pytest.approx(5 / 360)


def test_unthrottled_sends_everything_in_full_batches() -> None:
    batches: list[list[int]] = []
    stats = Pacer(batches.append, tps=0, max_batch=256).run(range(1000))
    assert [len(b) for b in batches] == [256, 256, 256, 232]
    assert stats.sent == 1000 and stats.target_tps == 0


def test_progress_batches_and_stop() -> None:
    fake = FakeClock()
    progress: list[tuple[int, float]] = []
    pacer: Pacer[int] = Pacer(
        lambda batch: None,
        tps=100,
        clock=fake.clock,
        sleep=fake.sleep,
        on_progress=lambda sent, elapsed: progress.append((sent, elapsed)),
    )
    stats = pacer.run_batches([list(range(250)), list(range(250))])
    assert stats.sent == 500 and stats.elapsed == pytest.approx(5.0, abs=0.02)
    assert [p[0] for p in progress] == sorted(p[0] for p in progress)
    assert len(progress) >= 5 and progress[-1][0] == 500

    def stop_after_first(batch: list[int]) -> None:
        stopping.stop()

    stopping: Pacer[int] = Pacer(stop_after_first, tps=100, clock=fake.clock, sleep=fake.sleep)
    assert stopping.run(itertools.count()).sent == 1


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"tps": -1}, "tps"),
        ({"speedup": 0}, "speedup"),
        ({"pattern": "sawtooth"}, "pattern"),
        ({"max_batch": 0}, "max_batch"),
    ],
)
def test_bad_pacer_settings_name_the_field(kwargs: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        Pacer(lambda batch: None, **kwargs)  # type: ignore[arg-type]
    assert info.value.key == key
    assert math.isfinite(rate_at("constant", 0, 1))
