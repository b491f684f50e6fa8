"""The history replayed before a dataset follows its feature set's longest reach."""

from __future__ import annotations

from datetime import date

from fraudstream.features import Aggregate, Derived, FeatureSet
from fraudstream.models.lookback import (
    STATE_LOOKBACK_DAYS,
    history_start,
    lookback_days,
    windowed_days,
)
from fraudstream.models.protocol import Protocol


def test_windows_and_delays_set_the_reach_beyond_the_state_bound() -> None:
    short = FeatureSet((Aggregate("customer", "count", "7d"),))
    assert windowed_days(short) == 8
    assert lookback_days(short) == STATE_LOOKBACK_DAYS
    delayed = FeatureSet((Aggregate("terminal", "risk", "90d", delay="7d"),))
    assert windowed_days(delayed) == 90 + 8 + 1  # delay of 7 d = 8 tiles back, + its day
    assert lookback_days(delayed) == 99
    derived = FeatureSet(
        (Aggregate("customer", "count", "1h"),), (Derived("amount_ratio_max_prev", "120d"),)
    )
    assert lookback_days(derived) == 121


def test_every_command_starts_the_replay_on_the_same_day() -> None:
    protocol = Protocol.ending(date(2018, 7, 31), train_days=21)
    features = FeatureSet((Aggregate("customer", "count", "100d"),))
    assert protocol.train_start == date(2018, 7, 11)
    assert history_start(protocol, features) == date(2018, 4, 1)  # 101 days before
