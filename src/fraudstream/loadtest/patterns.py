"""The traffic patterns of a load test: `fraudstream.simulate.patterns`, scaled to the run.

The simulator's spike comes every 30 s, which a 10-second run would never see; a load test
of ``duration`` seconds gets at least three bursts (every ``min(30, duration / 3)`` s, each a
tenth of that long, at 5× the target) and two full waves. The random walk is the simulator's
(a new level every second, kept within ±90 % of the target).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI imports this module for its help text: numpy waits for a run
    from fraudstream.simulate.patterns import Shape

SPIKE_FACTOR = 5.0
MAX_SPIKE_EVERY = 30.0
PATTERN_HELP = (
    "constant: the target all along. "
    "wave: a sinusoid around the target, ±50 %, two full periods over the run. "
    f"spike: the target, with bursts of {SPIKE_FACTOR:g}× it for a tenth of every "
    f"min({MAX_SPIKE_EVERY:g} s, duration / 3) (so the mean is 1.4× the target). "
    "random: a mean-reverting random walk around the target, a new level every second, "
    "bounded to ±90 % (--seed picks the walk)."
)


def shape_for(duration: float) -> Shape:
    """Pattern parameters for a run of ``duration`` seconds.

    >>> shape_for(9).spike_every, round(shape_for(9).spike_seconds, 2)
    (3.0, 0.3)
    >>> shape_for(600).spike_every
    30.0
    """
    from fraudstream.simulate.patterns import Shape

    every = min(MAX_SPIKE_EVERY, duration / 3)
    return Shape(spike_factor=SPIKE_FACTOR, spike_every=every, spike_seconds=every / 10)
