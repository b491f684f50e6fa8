"""The time-based evaluation protocol with a label-delay period (the Handbook's, chapter 5).

Training window, then a delay period whose transactions are dropped (their labels are not
known yet when the model is trained), then the test window. Never a random split: fraud
patterns and label availability both move with time.

>>> p = Protocol.ending(date(2018, 7, 31), train_days=7)
>>> p.train_start, p.test_start, p.test_end
(datetime.date(2018, 7, 25), datetime.date(2018, 8, 8), datetime.date(2018, 8, 14))
>>> p.validation().test_start
datetime.date(2018, 7, 25)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from fraudstream.models.errors import ModelError

HANDBOOK_TRAIN_END = date(2018, 7, 31)
"""The Handbook's training week ends here; its test week is 2018-08-08..14."""


@dataclass(frozen=True)
class Protocol:
    """Inclusive day ranges: ``train_start..train_end``, delay, ``test_start..test_end``."""

    train_start: date
    train_end: date
    test_start: date
    test_end: date

    def __str__(self) -> str:
        """``train 2018-07-25..2018-07-31 (7 days), test 2018-08-08..2018-08-14``."""
        return (
            f"train {self.train_start}..{self.train_end} ({self.train_days} days), "
            f"test {self.test_start}..{self.test_end}"
        )

    def __post_init__(self) -> None:
        if not self.train_start <= self.train_end < self.test_start <= self.test_end:
            raise ModelError(
                f"protocol: need train_start <= train_end < test_start <= test_end, got {self}"
            )

    @classmethod
    def ending(
        cls, train_end: date, *, train_days: int, delay_days: int = 7, test_days: int = 7
    ) -> Protocol:
        """Training of ``train_days`` ending on ``train_end``, then the delay, then the test."""
        for name, value in (("train_days", train_days), ("test_days", test_days)):
            if value < 1:
                raise ModelError(f"{name}: must be >= 1, got {value}")
        if delay_days < 0:
            raise ModelError(f"delay_days: must be >= 0, got {delay_days}")
        test_start = train_end + timedelta(days=delay_days + 1)
        return cls(
            train_end - timedelta(days=train_days - 1),
            train_end,
            test_start,
            test_start + timedelta(days=test_days - 1),
        )

    @property
    def train_days(self) -> int:
        return (self.train_end - self.train_start).days + 1

    @property
    def delay_days(self) -> int:
        return (self.test_start - self.train_end).days - 1

    @property
    def test_days(self) -> int:
        return (self.test_end - self.test_start).days + 1

    def shifted(self, days: int) -> Protocol:
        """The same protocol ``days`` later (negative: earlier)."""
        d = timedelta(days=days)
        return Protocol(
            self.train_start + d, self.train_end + d, self.test_start + d, self.test_end + d
        )

    def validation(self) -> Protocol:
        """The protocol moved back by delay + test, so that its test window (the validation
        week) ends where this training ends: tune on it, never on the test window."""
        return self.shifted(-(self.delay_days + self.test_days))

    def to_dict(self) -> dict[str, str]:
        return {
            "train_start": self.train_start.isoformat(),
            "train_end": self.train_end.isoformat(),
            "test_start": self.test_start.isoformat(),
            "test_end": self.test_end.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> Protocol:
        return cls(
            *(
                date.fromisoformat(data[k])
                for k in ("train_start", "train_end", "test_start", "test_end")
            )
        )


MIN_FITTED_TRAIN_DAYS = 7
"""The shortest training window `default_protocol` shrinks to (the Handbook's week)."""


def default_protocol(
    first_day: date,
    last_day: date,
    *,
    train_end: date | None = None,
    train_days: int,
    delay_days: int = 7,
    test_days: int = 7,
    fit: bool = False,
) -> Protocol:
    """The Handbook's dates when the data covers them, else the last ``test_days`` full days
    of the data as the test window; ``train_end`` overrides both. With ``fit`` (the user did
    not choose ``train_days``), a training window longer than the data holds before the delay
    shrinks to what it holds, down to `MIN_FITTED_TRAIN_DAYS`.

    Raises:
        ModelError: the data does not cover the windows.
    """
    if train_end is None:
        handbook = Protocol.ending(
            HANDBOOK_TRAIN_END, train_days=train_days, delay_days=delay_days, test_days=test_days
        )
        if first_day <= handbook.train_start and handbook.test_end <= last_day:
            return handbook
        train_end = last_day - timedelta(days=test_days + delay_days)
    held = (train_end - first_day).days + 1
    if fit and MIN_FITTED_TRAIN_DAYS <= held < train_days:
        train_days = held
    protocol = Protocol.ending(
        train_end, train_days=max(1, train_days), delay_days=delay_days, test_days=test_days
    )
    if protocol.train_start < first_day or protocol.test_end > last_day:
        covered = (last_day - first_day).days + 1
        least = (MIN_FITTED_TRAIN_DAYS if fit else train_days) + delay_days + test_days
        raise ModelError(
            f"protocol: {protocol} is not inside the data ({first_day}..{last_day}, "
            f"{covered} days; this protocol needs {least}: training, the {delay_days}-day "
            "label delay, the test); shorten --train-days / --delay-days / --test-days "
            "or set --train-end"
        )
    return protocol
