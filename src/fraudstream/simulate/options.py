"""What to simulate: `SimulationConfig` and the knobs it is made of.

Frozen dataclasses with the Handbook's defaults, validated on construction so a bad value
fails before minutes of generation (``n_days: must be > 0, got 0``). The CLI builds one from
its flags; library code only receives it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from fraudstream.errors import ConfigError
from fraudstream.simulate.catalog import CATEGORY_NAMES

Profile = Literal["handbook", "full"]
PROFILES: tuple[Profile, ...] = ("handbook", "full")
DelayDistribution = Literal["lognormal", "exponential", "fixed"]


def _positive(key: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(key, f"must be > 0, got {value!r}")


def _not_negative(key: str, value: float) -> None:
    if not value >= 0:
        raise ConfigError(key, f"must be >= 0, got {value!r}")


@dataclass(frozen=True)
class LabelDelay:
    """How long after a fraud its chargeback label arrives.

    Real labels come days later, which is why the Handbook trains with a delay period; the
    simulator makes that delay explicit so label-dependent features can be tested honestly.

    ``scale_hours`` is the median for ``lognormal``, the mean for ``exponential`` and the
    delay itself for ``fixed``; every delay is capped at ``cap_days`` and is at least one
    second, so a label is always reported after its transaction.
    """

    distribution: DelayDistribution = "lognormal"
    scale_hours: float = 48.0
    sigma: float = 1.0
    """Shape of the lognormal (standard deviation of the log delay)."""
    cap_days: float = 7.0

    def __post_init__(self) -> None:
        if self.distribution not in ("lognormal", "exponential", "fixed"):
            raise ConfigError("label_delay.distribution", f"unknown, got {self.distribution!r}")
        _positive("label_delay.scale_hours", self.scale_hours)
        _positive("label_delay.sigma", self.sigma)
        _positive("label_delay.cap_days", self.cap_days)


EXTENSION_NAMES = (
    "ecommerce",
    "card_testing",
    "account_takeover",
    "impossible_travel",
    "bot_bursts",
    "low_and_slow_takeover",
    "quiet_skimming",
    "bust_out",
)


def _day_range(key: str, days: tuple[int, int], least: int) -> None:
    low, high = days
    if not least <= low <= high:
        raise ConfigError(key, f"must be (low, high) with {least} <= low <= high, got {days}")


@dataclass(frozen=True)
class Extensions:
    """Rates of fraudstream's extensions to the Handbook (``full`` profile only); 0 disables.

    Defaults keep the total fraud rate near 1.4 %: the Handbook's 0.84 % plus about 8,000
    e-commerce and travel frauds and about 1,500 of each attack that only customer, terminal,
    amount and time reveal (``low_and_slow_takeover``, ``quiet_skimming``, ``bust_out``: ~50
    of each in a test week), all over 183 days.
    """

    ecommerce_share: float = 0.3
    """Share of genuine transactions made online (with card, device, IP, email, category)."""
    card_testing_per_day: float = 1.5
    account_takeover_per_day: float = 4.0
    impossible_travel_per_day: float = 6.0
    bot_bursts_per_day: float = 0.3
    n_merchants: int = 500
    """E-commerce merchants; each is also a virtual terminal numbered after the real ones."""
    low_and_slow_takeover_per_day: float = 1.4
    """Cards taken over a day; each is then used for a few days at terminals its customer
    never uses, at the customer's usual amounts and hours."""
    low_and_slow_takeover_days: tuple[int, int] = (2, 5)
    """How many consecutive days a takeover lasts (drawn uniformly, bounds included)."""
    low_and_slow_takeover_tx_per_day: float = 2.0
    """Mean fraudulent payments per day of a takeover (at least one)."""
    quiet_skimming_per_day: float = 3.5
    """Terminals compromised a day (a share of their payments turned fraudulent)."""
    quiet_skimming_days: int = 14
    quiet_skimming_fraction: float = 0.3
    """Share of a compromised terminal's payments that are fraudulent (the Handbook's
    scenario 2 makes them all fraudulent)."""
    quiet_skimming_amount_factor: float = 1.4
    """A fraudulent payment's amount is the genuine one times this."""
    bust_out_per_day: float = 0.8
    """Customers a day who start ramping their spending up to just under the amount limit."""
    bust_out_days: tuple[int, int] = (7, 10)
    """How many consecutive days a ramp lasts (drawn uniformly, bounds included)."""
    bust_out_tx_per_day: float = 1.5
    """Mean payments per day of a ramp (at least one)."""

    def __post_init__(self) -> None:
        if not 0 <= self.ecommerce_share <= 1:
            raise ConfigError("ecommerce_share", f"must be in [0, 1], got {self.ecommerce_share}")
        for name in EXTENSION_NAMES[1:]:
            _not_negative(f"{name}_per_day", getattr(self, f"{name}_per_day"))
        if self.n_merchants < len(CATEGORY_NAMES):
            raise ConfigError(
                "n_merchants",
                f"must be >= {len(CATEGORY_NAMES)} (one per category), got {self.n_merchants}",
            )
        _day_range("low_and_slow_takeover_days", self.low_and_slow_takeover_days, 1)
        _day_range("bust_out_days", self.bust_out_days, 2)
        for key in ("low_and_slow_takeover_tx_per_day", "bust_out_tx_per_day"):
            if not getattr(self, key) >= 1:
                raise ConfigError(key, f"must be >= 1, got {getattr(self, key)!r}")
        _positive("quiet_skimming_days", self.quiet_skimming_days)
        if not 0 < self.quiet_skimming_fraction <= 1:
            raise ConfigError(
                "quiet_skimming_fraction", f"must be in (0, 1], got {self.quiet_skimming_fraction}"
            )
        if not self.quiet_skimming_amount_factor >= 1:
            raise ConfigError(
                "quiet_skimming_amount_factor",
                f"must be >= 1, got {self.quiet_skimming_amount_factor}",
            )

    def disabled(self, names: Iterable[str]) -> Extensions:
        """A copy with the named extensions (see `EXTENSION_NAMES`) switched off."""
        changes: dict[str, Any] = {}
        for name in names:
            if name not in EXTENSION_NAMES:
                known = ", ".join(EXTENSION_NAMES)
                raise ConfigError("extensions", f"unknown extension {name!r} (one of {known})")
            changes["ecommerce_share" if name == "ecommerce" else f"{name}_per_day"] = 0.0
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class SimulationConfig:
    """The Handbook's simulation (chapter 3.2) with its defaults, plus our extensions."""

    n_customers: int = 5000
    n_terminals: int = 10000
    n_days: int = 183
    start_date: date = date(2018, 4, 1)
    radius: float = 5.0
    """A customer uses the terminals closer than this on the 100 × 100 grid."""
    seed: int = 0
    profile: Profile = "handbook"
    label_delay: LabelDelay = field(default_factory=LabelDelay)
    extensions: Extensions = field(default_factory=Extensions)
    """Used by the ``full`` profile only; the ``handbook`` profile is exactly the Handbook."""

    def __post_init__(self) -> None:
        _positive("n_customers", self.n_customers)
        _positive("n_terminals", self.n_terminals)
        _positive("n_days", self.n_days)
        _positive("radius", self.radius)
        _not_negative("seed", self.seed)
        if self.profile not in PROFILES:
            raise ConfigError(
                "profile", f"must be one of {', '.join(PROFILES)}, got {self.profile!r}"
            )

    @property
    def full(self) -> bool:
        return self.profile == "full"
