from __future__ import annotations

from datetime import date

import pytest

from fraudstream.models import ModelError, Protocol
from fraudstream.models.protocol import default_protocol


def test_handbook_protocol_dates() -> None:
    p = Protocol.ending(date(2018, 7, 31), train_days=7)
    assert (p.train_start, p.train_end) == (date(2018, 7, 25), date(2018, 7, 31))
    assert (p.test_start, p.test_end) == (date(2018, 8, 8), date(2018, 8, 14))
    assert (p.train_days, p.delay_days, p.test_days) == (7, 7, 7)


def test_validation_week_ends_where_training_ends() -> None:
    p = Protocol.ending(date(2018, 7, 31), train_days=56)
    v = p.validation()
    assert (v.test_start, v.test_end) == (date(2018, 7, 25), date(2018, 7, 31))
    assert v.test_end < p.test_start and v.train_days == 56


def test_default_uses_handbook_dates_when_covered() -> None:
    p = default_protocol(date(2018, 4, 1), date(2018, 9, 30), train_days=28)
    assert p.train_end == date(2018, 7, 31) and p.test_start == date(2018, 8, 8)


def test_default_falls_back_to_the_data_end() -> None:
    p = default_protocol(date(2020, 1, 1), date(2020, 3, 31), train_days=14)
    assert p.test_end == date(2020, 3, 31) and p.test_start == date(2020, 3, 25)
    assert p.train_end == date(2020, 3, 17)


def test_protocol_outside_the_data_is_an_error() -> None:
    with pytest.raises(ModelError, match="not inside the data"):
        default_protocol(date(2020, 1, 1), date(2020, 1, 20), train_days=14)


def test_round_trip_and_validation_of_order() -> None:
    p = Protocol.ending(date(2018, 7, 31), train_days=3, delay_days=0, test_days=2)
    assert Protocol.from_dict(p.to_dict()) == p
    with pytest.raises(ModelError):
        Protocol(p.test_end, p.train_end, p.test_start, p.test_end)


def test_an_unchosen_window_shrinks_to_what_the_data_holds() -> None:
    """31 days (PaySim's month): the default 56 training days do not fit; 17 do, ending a
    label delay before the last week."""
    p = default_protocol(date(2020, 1, 1), date(2020, 1, 31), train_days=56, fit=True)
    assert (p.train_start, p.train_end) == (date(2020, 1, 1), date(2020, 1, 17))
    assert (p.test_start, p.test_end) == (date(2020, 1, 25), date(2020, 1, 31))
    assert str(p) == "train 2020-01-01..2020-01-17 (17 days), test 2020-01-25..2020-01-31"
    fits = default_protocol(date(2020, 1, 1), date(2020, 6, 30), train_days=56, fit=True)
    assert fits.train_days == 56  # room enough: not shortened
    with pytest.raises(ModelError, match="not inside the data"):  # chosen: never shortened
        default_protocol(date(2020, 1, 1), date(2020, 1, 31), train_days=56)


def test_a_history_too_short_for_a_week_of_training_says_how_many_days_it_needs() -> None:
    with pytest.raises(ModelError) as caught:
        default_protocol(date(2020, 1, 1), date(2020, 1, 18), train_days=56, fit=True)
    assert "18 days; this protocol needs 21" in str(caught.value)
