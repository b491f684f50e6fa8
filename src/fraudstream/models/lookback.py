"""How much history before its first row a dataset replays, the same for every command.

A feature's value depends on the history the backfill replays before it. Windowed state
(aggregates, the robust amount features) forgets what is older than its window, but some
state has no window: the customer's last-N history (home location), its last time and
place, its first-seen sets. Their value on a test day depends on where the replay started.
So `train` and `evaluate` (and `models compare`) start it at the same day,
`history_start`: the protocol's first training day minus `lookback_days`, whatever rows
each then keeps. The test week's features, and so the figures, are the same in both.

>>> from fraudstream.features import default_feature_set
>>> lookback_days(default_feature_set())
68
>>> p = Protocol.ending(date(2018, 7, 31), train_days=56)
>>> history_start(p, default_feature_set())
datetime.date(2018, 3, 30)
"""

from __future__ import annotations

from datetime import date, timedelta

from fraudstream.features import FeatureSet
from fraudstream.models.protocol import Protocol

_DAY = 86_400
STATE_LOOKBACK_DAYS = 68
"""The bound for the state no window bounds (a customer's 64 newest transactions, last
time and place, first-seen sets): it sees at most this many days before a dataset's first
row. 68 = the default set's longest window (60 d) + the terminal delay (7 d) + one day, the
warm-up training has always used; a customer silent for longer starts afresh (online, the
engine would still remember them until `feature_ttl_s`, 90 days by default)."""


def windowed_days(definitions: FeatureSet) -> int:
    """Days the windowed features reach back from a row's day: the longest aggregate span
    (window + delay, in whole tiles) or derived history window, plus the day it starts in."""
    spans = [(a.lag + a.tiles) * a.tile_s for a in definitions.aggregates]
    longest = max([*spans, *definitions.history_windows_s()], default=0)
    return -(-longest // _DAY) + 1


def lookback_days(definitions: FeatureSet) -> int:
    """Days of history replayed before a dataset's first row: enough for every window of
    ``definitions``, and at least `STATE_LOOKBACK_DAYS` for the state without one."""
    return max(windowed_days(definitions), STATE_LOOKBACK_DAYS)


def history_start(protocol: Protocol, definitions: FeatureSet) -> date:
    """The first day of history every command replays for ``protocol``: the training
    window's first day minus `lookback_days`."""
    return protocol.train_start - timedelta(days=lookback_days(definitions))
