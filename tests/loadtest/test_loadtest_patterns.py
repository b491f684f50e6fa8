"""The load test's patterns: each shape, its bounds and its mean over a run."""

from __future__ import annotations

import numpy as np
import pytest

from fraudstream.loadtest.patterns import SPIKE_FACTOR, shape_for
from fraudstream.simulate.patterns import PATTERNS, Pattern, RateCurve

TPS = 200.0


def _rates(pattern: Pattern, duration: float, seed: int = 0) -> tuple[RateCurve, np.ndarray]:
    curve = RateCurve(pattern, TPS, duration, seed, shape_for(duration))
    times = np.arange(0, duration, 0.01)
    return curve, np.array([curve.rate(float(t)) for t in times])


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("duration", [6.0, 60.0, 600.0])
def test_every_pattern_stays_within_its_bounds(pattern: Pattern, duration: float) -> None:
    _, rates = _rates(pattern, duration)
    low, high = {
        "constant": (TPS, TPS),
        "wave": (0.5 * TPS, 1.5 * TPS),
        "spike": (TPS, SPIKE_FACTOR * TPS),
        "random": (0.1 * TPS, 1.9 * TPS),
    }[pattern]
    assert rates.min() >= low - 1e-6 and rates.max() <= high + 1e-6


def test_constant_is_the_target_all_along() -> None:
    curve, rates = _rates("constant", 10)
    assert set(rates) == {TPS}
    assert curve.count(10) == pytest.approx(10 * TPS)


@pytest.mark.parametrize("duration", [6.0, 600.0])
def test_wave_makes_two_full_periods_averaging_the_target(duration: float) -> None:
    curve, rates = _rates("wave", duration)
    assert curve.count(duration) == pytest.approx(duration * TPS)
    assert rates.max() == pytest.approx(1.5 * TPS, rel=1e-3)
    assert rates.min() == pytest.approx(0.5 * TPS, rel=1e-3)
    crests = np.flatnonzero((rates[1:-1] > rates[:-2]) & (rates[1:-1] >= rates[2:])) + 1
    assert len(crests) == 2


@pytest.mark.parametrize("duration", [6.0, 600.0])
def test_spike_bursts_at_least_three_times_a_tenth_of_the_time(duration: float) -> None:
    curve, rates = _rates("spike", duration)
    bursting = rates > TPS
    starts = np.flatnonzero(bursting[1:] & ~bursting[:-1])
    assert len(starts) >= 3
    assert bursting.mean() == pytest.approx(0.1, abs=0.01)
    assert curve.count(duration) / duration == pytest.approx(
        TPS * (1 + (SPIKE_FACTOR - 1) * 0.1), rel=0.01
    )


def test_random_walks_around_the_target_reproducibly() -> None:
    curve, rates = _rates("random", 600, seed=3)
    assert curve.count(600) / 600 == pytest.approx(TPS, rel=0.1)
    assert rates.std() > 0.1 * TPS  # it moves
    again = RateCurve("random", TPS, 600, 3, shape_for(600))
    assert [again.rate(t) for t in (0.0, 17.5, 599.0)] == [
        curve.rate(t) for t in (0.0, 17.5, 599.0)
    ]
    other = RateCurve("random", TPS, 600, 4, shape_for(600))
    assert other.rate(17.5) != curve.rate(17.5)
