"""Chargeback labels: every fraud is reported, but only some time after it happened.

The delay is what makes label-dependent features (a terminal's recent fraud rate) honest or
leaky: a feature may only count labels whose ``reported_at`` precedes the transaction it
scores. The Handbook models this with a fixed one-week delay period; the simulator draws a
delay per fraud instead (`LabelDelay`), capped so every label is known within ``cap_days``.
"""

from __future__ import annotations

import numpy as np

from fraudstream.simulate.arrays import FloatArray, Stream, rng
from fraudstream.simulate.options import LabelDelay

_HOUR = 3600.0


def draw_delays(delay: LabelDelay, n: int, seed: int) -> FloatArray:
    """``n`` delays in seconds, each in [1 s, cap]."""
    gen = rng(seed, Stream.LABELS)
    scale = delay.scale_hours * _HOUR
    if delay.distribution == "lognormal":
        seconds = scale * np.exp(delay.sigma * gen.standard_normal(n))
    elif delay.distribution == "exponential":
        seconds = gen.exponential(scale, n)
    else:
        seconds = np.full(n, scale)
    return np.clip(np.round(seconds), 1.0, delay.cap_days * 24 * _HOUR)
