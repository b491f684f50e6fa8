"""Traffic patterns: how many transactions per second to send at each moment of a run.

The shapes of the Redis Stack reference fraud pipeline's load generator — ``constant``,
``wave``, ``spike`` and ``random`` — as pure functions of time, so a run is reproducible and a
test can check a shape without waiting for it. Each pattern also has an exact integral
(`RateCurve.count`): the pacer sends ``count(elapsed) − sent`` rows at every tick, so pacing
errors never accumulate (no drift), whatever the tick length or the time ``send`` takes.

- ``constant``: ``tps``.
- ``wave``: ``tps × (1 + amplitude × sin(2πt / period))``; ±50 % by default, period half the
  run (two full waves) or 60 s when the run has no duration. Averages ``tps`` over whole periods.
- ``spike``: ``tps`` with bursts of ``spike_factor × tps`` during the last ``spike_seconds``
  of every ``spike_every`` seconds (5× for 3 s every 30 s by default).
- ``random``: a mean-reverting random walk around ``tps`` — a new level every
  ``random_step`` seconds (AR(1), relative spread ``random_spread``, kept within ±90 %),
  linearly interpolated. Same ``seed``, same walk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from fraudstream.errors import ConfigError
from fraudstream.simulate.arrays import FloatArray

Pattern = Literal["constant", "wave", "spike", "random"]
PATTERNS: tuple[Pattern, ...] = ("constant", "wave", "spike", "random")
_BLOCK = 1024
_SEED_WORD = 0x7A6F
"""Second word of the random pattern's seed, so it never shares a stream with the simulator."""


@dataclass(frozen=True)
class Shape:
    """Parameters of the patterns (the defaults are the reference pipeline's spirit)."""

    wave_amplitude: float = 0.5
    wave_period: float | None = None
    """Seconds; ``None`` = half the run's duration, or 60 s without a duration."""
    spike_factor: float = 5.0
    spike_seconds: float = 3.0
    spike_every: float = 30.0
    random_step: float = 1.0
    random_spread: float = 0.35
    random_memory: float = 0.8
    """AR(1) coefficient per step: 0 is white noise, close to 1 a slow drift."""

    def __post_init__(self) -> None:
        if not 0 <= self.wave_amplitude <= 1:
            raise ConfigError("wave_amplitude", f"must be in [0, 1], got {self.wave_amplitude}")
        if not 0 < self.spike_seconds <= self.spike_every:
            raise ConfigError(
                "spike_seconds", f"must be in (0, spike_every], got {self.spike_seconds}"
            )
        if not self.random_step > 0:
            raise ConfigError("random_step", f"must be > 0, got {self.random_step}")
        if not 0 <= self.random_memory < 1:
            raise ConfigError("random_memory", f"must be in [0, 1), got {self.random_memory}")


class RateCurve:
    """One pattern at one target rate: the rate at ``t`` and the rows due by ``t``.

    Only the ``random`` pattern has state: its levels, drawn block by block as time goes on,
    and their running integral, so `count` costs the same at the first second and the tenth
    hour.
    """

    def __init__(
        self,
        pattern: Pattern,
        tps: float,
        duration: float | None = None,
        seed: int = 0,
        shape: Shape | None = None,
    ) -> None:
        if pattern not in PATTERNS:
            raise ConfigError("pattern", f"must be one of {', '.join(PATTERNS)}, got {pattern!r}")
        if tps < 0:
            raise ConfigError("tps", f"must be >= 0, got {tps}")
        self.pattern = pattern
        self.tps = float(tps)
        self.shape = shape or Shape()
        self.period = self.shape.wave_period or (duration / 2 if duration else 60.0)
        self._gen = np.random.default_rng([seed, _SEED_WORD])
        self._levels: FloatArray = np.empty(0)
        self._area: FloatArray = np.empty(0)
        """``_area[k]`` = integral of the level from knot 0 to knot k (in steps)."""
        self._last = 0.0

    def rate(self, t: float) -> float:
        """Transactions per second wanted at ``t`` seconds into the run."""
        s = self.shape
        if self.pattern == "wave":
            return self.tps * (1 + s.wave_amplitude * math.sin(2 * math.pi * t / self.period))
        if self.pattern == "spike":
            burst = t % s.spike_every >= s.spike_every - s.spike_seconds
            return self.tps * (s.spike_factor if burst else 1.0)
        if self.pattern == "random":
            k, frac = divmod(t / s.random_step, 1.0)
            levels = self._knots(int(k) + 1)
            return self.tps * float(levels[int(k)] * (1 - frac) + levels[int(k) + 1] * frac)
        return self.tps

    def count(self, t: float) -> float:
        """Transactions due in ``[0, t]``: the exact integral of `rate`."""
        s = self.shape
        if self.pattern == "wave":
            w = 2 * math.pi / self.period
            return self.tps * (t + s.wave_amplitude * (1 - math.cos(w * t)) / w)
        if self.pattern == "spike":
            periods, into = divmod(t, s.spike_every)
            burst = periods * s.spike_seconds + max(0.0, into - (s.spike_every - s.spike_seconds))
            return self.tps * (t + (s.spike_factor - 1) * burst)
        if self.pattern == "random":
            k, frac = divmod(t / s.random_step, 1.0)
            i = int(k)
            levels = self._knots(i + 1)
            partial = frac * (levels[i] + (levels[i] + (levels[i + 1] - levels[i]) * frac)) / 2
            return self.tps * s.random_step * float(self._area[i] + partial)
        return self.tps * t

    def _knots(self, last: int) -> FloatArray:
        """Levels (multiples of ``tps``) at knots ``0..last`` at least, drawn in fixed blocks."""
        s = self.shape
        while len(self._levels) <= last:
            z = (
                self._gen.standard_normal(_BLOCK)
                * s.random_spread
                * math.sqrt(1 - s.random_memory**2)
            )
            block = np.empty(_BLOCK)
            x = self._last
            for j in range(_BLOCK):
                x = s.random_memory * x + z[j]
                block[j] = x
            self._last = x
            self._levels = np.concatenate([self._levels, 1 + np.clip(block, -0.9, 0.9)])
            pairs = (self._levels[:-1] + self._levels[1:]) / 2
            self._area = np.concatenate([[0.0], np.cumsum(pairs)])
        return self._levels


def rate_at(
    pattern: Pattern,
    t_seconds: float,
    tps: float,
    duration: float | None = None,
    seed: int = 0,
    shape: Shape | None = None,
) -> float:
    """The rate ``pattern`` asks for at ``t_seconds`` (pure: same arguments, same answer).

    >>> rate_at("spike", 28.0, 100)  # inside the 3-second burst that ends every 30 s
    500.0
    >>> round(rate_at("wave", 15.0, 100, duration=120))  # quarter of a 60-s period: crest
    150
    """
    return RateCurve(pattern, tps, duration, seed, shape).rate(t_seconds)
