"""Feature definitions as data: what to compute, never how.

A `FeatureSet` is a tuple of `Aggregate` (an aggregation of an entity's transactions over a
tiled window, optionally delayed and filtered) and `Derived` features (fixed formulas over the
transaction, the customer's bounded history and the terminal's known frauds). The same set
compiles to the online engine (`fraudstream.features.online`) and to the offline backfill
(`fraudstream.features.offline`); names are generated from the definition:

>>> Aggregate("customer", "count", "7d").name
'customer_tx_count_7d'
>>> Aggregate("terminal", "risk", "30d", delay="7d").name
'terminal_risk_30d_delay7d'
>>> Aggregate("card", "sum", "1h", where="ecommerce").name
'card_amount_sum_1h_ecommerce'
>>> Aggregate("card", "count", "1h", where="zero_amount").name
'card_tx_count_1h_zero_amount'
>>> Aggregate("customer", "distinct", "24h", of="merchant").name
'customer_distinct_merchant_24h'
>>> FirstSeen("merchant").name
'is_first_seen_merchant'
>>> Derived("mean_ratio", "3d", base="30d").name
'customer_amount_mean_ratio_3d_30d'
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from fraudstream.errors import ConfigError

Entity = Literal["customer", "card", "terminal", "merchant", "device", "ip"]
ENTITIES: dict[str, str] = {
    "customer": "customer_id",
    "card": "card_id",
    "terminal": "terminal_id",
    "merchant": "merchant_id",
    "device": "device_id",
    "ip": "ip",
}
"""Entity -> the transaction field holding its id."""
OWNED: frozenset[str] = frozenset({"customer"})
"""Entities with a single writer (partitions are keyed by customer): state kept as one blob."""
LABELLED: frozenset[str] = frozenset({"terminal"})
"""Entities whose fraud labels are counted (a `Label` names the terminal, not the merchant)."""

Agg = Literal["count", "sum", "mean", "std", "min", "max", "distinct", "fraud_count", "risk"]
AGG_NAMES: dict[str, str] = {
    "count": "tx_count",
    "sum": "amount_sum",
    "mean": "amount_mean",
    "std": "amount_std",
    "min": "amount_min",
    "max": "amount_max",
    "distinct": "distinct",
    "fraud_count": "fraud_count",
    "risk": "risk",
}
AGG_COUNTERS: dict[str, tuple[str, ...]] = {
    "count": ("n",),
    "sum": ("s",),
    "mean": ("n", "s"),
    "std": ("n", "s", "q"),
    "min": ("lo",),
    "max": ("hi",),
    "fraud_count": ("f",),
    "risk": ("n", "f"),
}
"""Per-tile counters an aggregation needs: n = transactions, s = amount in cents,
q = sum of squared cents, lo / hi = smallest / largest cents (owned entities only: they are
not commutative increments), f = frauds known so far (labelled only); ``distinct`` keeps a
64-bit sketch per tile of the field it counts (``d_<field>``, `Aggregate.counters`)."""
OWNED_ONLY = frozenset({"q", "lo", "hi"})
DISTINCT_FIELDS: dict[str, str] = {
    "merchant": "merchant_id",
    "terminal": "terminal_id",
    "card": "card_id",
    "device": "device_id",
    "ip": "ip",
    "product_category": "product_category",
}
"""What a ``distinct`` aggregate can count -> the transaction field holding it."""
Where = Literal["card_present", "ecommerce", "zero_amount"]
WHERE: tuple[str, ...] = ("card_present", "ecommerce", "zero_amount")
"""Filters of an aggregate: a channel, or ``zero_amount`` (0.00: card verifications, and what
card testing looks like)."""

_DURATION = re.compile(r"^(?P<n>[1-9][0-9]*)(?P<unit>[mhd])$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}
HOUR, DAY = 3600, 86400


def parse_duration(text: str, *, key: str = "window") -> int:
    """Seconds in ``"10m"``, ``"1h"``, ``"30d"``.

    >>> parse_duration("7d")
    604800
    """
    match = _DURATION.match(text)
    if match is None:
        raise ConfigError(key, f"not a duration like 10m / 1h / 30d, got {text!r}")
    return int(match["n"]) * _UNIT_SECONDS[match["unit"]]


def default_tile(window: str) -> int:
    """Tile (bucket) length for a window: daily for ``"…d"``, hourly for ``"…h"``, 10 minutes
    (or one, if the window is not a multiple of ten) for ``"…m"``.

    >>> default_tile("24h"), default_tile("1d")
    (3600, 86400)
    """
    unit = window[-1:]
    if unit == "d":
        return DAY
    if unit == "h":
        return HOUR
    return 600 if parse_duration(window) % 600 == 0 else 60


@dataclass(frozen=True)
class Aggregate:
    """An aggregation of one entity's transactions over a tiled window.

    The window is ``ceil(window / tile)`` whole tiles. Without a delay it ends with the tile of
    the transaction (the transaction itself and every earlier one in those tiles count, so the
    window covers between ``window - tile`` and ``window`` of real time); with a delay of ``d``
    tiles it ends ``d + 1`` tiles earlier (the Handbook's ``[t - delay - w, t - delay)``, tiled).
    """

    entity: Entity
    agg: Agg
    window: str
    delay: str | None = None
    where: Where | None = None
    """Count only transactions of this channel, or of amount 0.00 (``zero_amount``); the
    feature is still computed for all."""
    tile: str | None = None
    """Override the tile length (default: `default_tile`)."""
    of: str | None = None
    """What ``distinct`` counts (a key of `DISTINCT_FIELDS`); only for ``distinct``."""

    def __post_init__(self) -> None:
        if self.entity not in ENTITIES:
            raise ConfigError("entity", f"unknown entity {self.entity!r} ({_one_of(ENTITIES)})")
        if self.agg not in AGG_NAMES:
            raise ConfigError("agg", f"unknown aggregation {self.agg!r} ({_one_of(AGG_NAMES)})")
        if (self.agg == "distinct") != (self.of is not None):
            raise ConfigError("of", "distinct needs `of` (what to count); only distinct takes it")
        if self.of is not None and self.of not in DISTINCT_FIELDS:
            raise ConfigError("of", f"unknown field {self.of!r} ({_one_of(DISTINCT_FIELDS)})")
        owned_only = self.agg == "distinct" or set(self.counters) & OWNED_ONLY
        if owned_only and self.entity not in OWNED:
            raise ConfigError("agg", f"{self.agg} needs an owned entity, got {self.entity!r}")
        if "f" in self.counters and self.entity not in LABELLED:
            raise ConfigError("agg", f"{self.agg} needs a labelled entity, got {self.entity!r}")
        if self.where is not None and self.where not in WHERE:
            raise ConfigError("where", f"must be one of {', '.join(WHERE)}, got {self.where!r}")
        if self.window_s % self.tile_s or (self.delay and self.delay_s % self.tile_s):
            raise ConfigError("window", f"{self.name}: window and delay must be whole tiles")

    @cached_property
    def counters(self) -> tuple[str, ...]:
        return (f"d_{self.of}",) if self.agg == "distinct" else AGG_COUNTERS[self.agg]

    @cached_property
    def window_s(self) -> int:
        return parse_duration(self.window)

    @cached_property
    def delay_s(self) -> int:
        return parse_duration(self.delay, key="delay") if self.delay else 0

    @cached_property
    def tile_s(self) -> int:
        return parse_duration(self.tile, key="tile") if self.tile else default_tile(self.window)

    @cached_property
    def tiles(self) -> int:
        return self.window_s // self.tile_s

    @cached_property
    def lag(self) -> int:
        """Tiles between the transaction's tile and the window's last tile."""
        return self.delay_s // self.tile_s + 1 if self.delay else 0

    @cached_property
    def span(self) -> int:
        """Most recent tiles (the transaction's included) the window can touch."""
        return self.lag + self.tiles

    @cached_property
    def family(self) -> tuple[str, int, str | None]:
        """Features sharing (entity, tile, filter) share one tiled state."""
        return (self.entity, self.tile_s, self.where)

    @cached_property
    def name(self) -> str:
        what = f"distinct_{self.of}" if self.agg == "distinct" else AGG_NAMES[self.agg]
        parts = [self.entity, what, self.window]
        if self.delay:
            parts.append(f"delay{self.delay}")
        if self.where:
            parts.append(self.where)
        return "_".join(parts)


DerivedKind = Literal[
    "amount",
    "is_weekend",
    "is_night",
    "amount_ratio_mean",
    "amount_zscore",
    "amount_ratio_median_prev",
    "amount_ratio_max_prev",
    "seconds_since_last_tx",
    "distance_from_home",
    "distance_from_last",
    "speed_from_last_kmh",
    "impossible_travel",
    "days_since_first_fraud",
    "days_since_last_fraud",
    "profile_segment",
    "distance_from_profile_home",
    "is_preferred_card",
    "new_terminal_count",
    "new_terminal_share",
    "mean_ratio",
    "terminal_mean_ratio",
    "terminal_count_ratio",
    "terminal_amount_ratio_mean",
    "amount_trend",
    "rising_days",
    "max_trend",
    "rising_max_days",
    "amount_ratio_median_before",
    "terminal_covisit_share",
]
PROFILE_KINDS = frozenset({"profile_segment", "distance_from_profile_home", "is_preferred_card"})
"""Static features: read from the customer's profile (`fraudstream.features.profiles`)."""
NEIGHBOUR_KINDS = frozenset({"terminal_covisit_share"})
"""Read from the co-visitation neighbourhood (`fraudstream.features.neighbours`)."""
_DERIVED_ENTITY: dict[str, str] = {
    "amount": "tx",
    "is_weekend": "tx",
    "is_night": "tx",
    "days_since_first_fraud": "terminal",
    "days_since_last_fraud": "terminal",
    "terminal_mean_ratio": "terminal",
    "terminal_count_ratio": "terminal",
    "terminal_amount_ratio_mean": "terminal",
    "terminal_covisit_share": "terminal",
}
_DERIVED_LABEL: dict[str, str] = {
    "new_terminal_count": "new_terminal_tx_count",
    "max_trend": "amount_max_trend",
    "mean_ratio": "amount_mean_ratio",
    "terminal_mean_ratio": "amount_mean_ratio",
    "terminal_count_ratio": "tx_count_ratio",
    "terminal_amount_ratio_mean": "amount_ratio_mean",
    "terminal_covisit_share": "covisit_share",
}
"""Kinds named otherwise than themselves (the entity is the name's first part)."""
BASED_DERIVED = frozenset({"mean_ratio", "terminal_mean_ratio", "terminal_count_ratio"})
"""Ratios of a recent window to a longer ``base`` one of the same entity."""
HISTORY_DERIVED = frozenset({"amount_trend", "rising_days", "max_trend", "rising_max_days"})
"""Read the customer's bounded history (daily means of its kept transactions)."""
NEW_PLACE_DERIVED = frozenset({"new_terminal_count", "new_terminal_share"})
"""Read the customer's bounded history for its transactions at terminals new to it (the
window is exact, ``[t - window, t]``, over the kept entries); need ``FirstSeen("terminal")``."""
WINDOWED_DERIVED = (
    frozenset(
        {
            "amount_ratio_mean",
            "amount_zscore",
            "amount_ratio_median_prev",
            "amount_ratio_max_prev",
            "terminal_amount_ratio_mean",
            "amount_ratio_median_before",
        }
    )
    | BASED_DERIVED
    | HISTORY_DERIVED
    | NEW_PLACE_DERIVED
)


@dataclass(frozen=True)
class Derived:
    """A fixed formula; ``window`` where the kind takes one (e.g. the 30 d of a z-score).

    >>> Derived("amount_ratio_median_prev", "60d").name
    'customer_amount_ratio_median_prev_60d'
    >>> Derived("is_night").name
    'tx_is_night'
    >>> Derived("terminal_count_ratio", "1d", base="28d").name
    'terminal_tx_count_ratio_1d_28d'
    """

    kind: DerivedKind
    window: str | None = None
    base: str | None = None
    """The longer window a ratio compares ``window`` with (`BASED_DERIVED` only)."""

    def __post_init__(self) -> None:
        if self.kind not in DerivedKind.__args__:  # type: ignore[attr-defined]
            raise ConfigError("kind", f"unknown derived feature {self.kind!r}")
        if (self.window is None) == (self.kind in WINDOWED_DERIVED):
            need = "needs" if self.kind in WINDOWED_DERIVED else "takes no"
            raise ConfigError("window", f"{self.kind} {need} a window")
        if self.window is not None and parse_duration(self.window) % DAY:
            raise ConfigError("window", f"{self.kind}: window must be whole days")
        if (self.base is None) == (self.kind in BASED_DERIVED):
            need = "needs" if self.kind in BASED_DERIVED else "takes no"
            raise ConfigError("base", f"{self.kind} {need} a base window")
        if self.base is not None and self.window is not None:
            base = parse_duration(self.base, key="base")
            if base % DAY or base <= parse_duration(self.window):
                raise ConfigError("base", f"{self.kind}: must be whole days beyond the window")

    @cached_property
    def name(self) -> str:
        entity = _DERIVED_ENTITY.get(self.kind, "customer")
        label = _DERIVED_LABEL.get(self.kind, self.kind)
        return "_".join(p for p in (entity, label, self.window, self.base) if p)

    @cached_property
    def needs(self) -> tuple[Aggregate, ...]:
        """The aggregates whose window sums the formula reads."""
        w, base = self.window or "", self.base or ""
        if self.kind in ("amount_ratio_mean", "amount_zscore"):
            return (Aggregate("customer", "std", w),)
        if self.kind == "mean_ratio":
            return Aggregate("customer", "mean", w), Aggregate("customer", "mean", base)
        if self.kind in ("terminal_mean_ratio", "terminal_count_ratio"):
            return Aggregate("terminal", "mean", w), Aggregate("terminal", "mean", base)
        if self.kind == "terminal_amount_ratio_mean":
            return (Aggregate("terminal", "mean", w),)
        return ()


SeenWhat = Literal["merchant", "product_category", "device", "ip", "terminal"]
FIRST_SEEN_FIELDS: dict[str, str] = {
    "merchant": "merchant_id",
    "terminal": "terminal_id",
    "product_category": "product_category",
    "device": "device_id",
    "ip": "ip",
}
"""What a `FirstSeen` tracks -> the transaction field holding it."""


@dataclass(frozen=True)
class FirstSeen:
    """1.0 when the customer has not used this value recently, 0.0 when it has, NaN when the
    transaction lacks the field ("recently" = among the values of its last one or two
    *generations*; a generation holds ``capacity`` distinct values, see below).

    State per customer: two generations of ``words`` 64-bit words each, in the customer blob.
    The current generation is an exact set of value hashes while it holds at most ``words``
    values, then a Bloom filter of ``64 * words`` bits; when it reaches ``capacity`` values
    it becomes the previous generation and a fresh one starts. A value found only in the
    previous generation is copied into the current one, so values in use are never
    forgotten; one unused for about ``capacity`` distinct others is. Each generation is sized
    so that at capacity its false-positive rate is below ``fp_rate / 2``: a value never used
    reads as seen with probability below ``fp_rate`` even when both generations are full
    (measured in ``tests/features/test_feat_seen.py`` and ``benchmarks/bench_features.py``).

    >>> f = FirstSeen("merchant", words=32)
    >>> f.name, f.bits, f.capacity, f.hashes
    ('is_first_seen_merchant', 2048, 182, 8)
    """

    what: SeenWhat
    words: int = 16
    fp_rate: float = 0.01

    def __post_init__(self) -> None:
        if self.what not in FIRST_SEEN_FIELDS:
            raise ConfigError("what", f"unknown first-seen field {self.what!r}")
        if self.words < 1 or self.words & (self.words - 1) or self.words > 1024:
            raise ConfigError("words", f"must be a power of two in [1, 1024], got {self.words}")
        if not 0 < self.fp_rate < 0.5:
            raise ConfigError("fp_rate", f"must be in (0, 0.5), got {self.fp_rate}")
        if self.capacity <= self.words:
            raise ConfigError("fp_rate", f"{self.fp_rate} is too low for {self.words} words")

    @cached_property
    def field(self) -> str:
        return FIRST_SEEN_FIELDS[self.what]

    @cached_property
    def bits(self) -> int:
        return 64 * self.words

    @cached_property
    def _target(self) -> float:
        """False-positive rate of one full generation: half the budget, less 10 % for the
        correlation double hashing adds in small filters (measured ~+5 % at 2,048 bits)."""
        return 0.45 * self.fp_rate

    @cached_property
    def hashes(self) -> int:
        """Bloom hash functions (bit positions per value): the optimum for the target."""
        return max(1, round(math.log2(1 / self._target)))

    @cached_property
    def capacity(self) -> int:
        """Distinct values per generation: the most a filter of ``bits`` bits with ``hashes``
        positions holds at the target rate, ``(1 - e^(-k n / m))^k``."""
        k = self.hashes
        return int(-self.bits / k * math.log(1 - self._target ** (1 / k)))

    @cached_property
    def name(self) -> str:
        return f"is_first_seen_{self.what}"


@dataclass(frozen=True)
class FeatureSet:
    """An ordered set of feature definitions plus the knobs of the derived formulas."""

    aggregates: tuple[Aggregate, ...]
    derived: tuple[Derived, ...] = ()
    history: int = 64
    """Bound of the per-customer history (its N newest transactions by event time) behind
    the robust amount features, the home location and idempotency: 20 bytes per entry in
    the customer blob (time in whole seconds, amount, home cell, transaction-id hash)."""
    impossible_speed_kmh: float = 500.0
    min_travel_km: float = 20.0
    """Travel shorter than this is never impossible (GPS noise, neighbouring terminals)."""
    home_cell_deg: float = 0.1
    home_cell_grid: float = 5.0
    """Home is the most frequent cell of this size (degrees, or Handbook grid units)."""
    first_seen: tuple[FirstSeen, ...] = ()

    def __post_init__(self) -> None:
        names = self.names
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ConfigError("features", f"duplicate feature names: {sorted(dup)}")
        if not 1 <= self.history <= 1024:
            raise ConfigError("history", f"must be in [1, 1024], got {self.history}")
        for d in self.derived:
            for agg in d.needs:
                if agg not in self.aggregates:
                    raise ConfigError("derived", f"{d.name} needs the aggregate {agg.name}")
        needy = [d.name for d in self.derived if d.kind in NEW_PLACE_DERIVED]
        if needy and self.seen_terminal is None:
            raise ConfigError("first_seen", f'{needy[0]} needs FirstSeen("terminal")')

    @cached_property
    def seen_terminal(self) -> FirstSeen | None:
        """The `FirstSeen` of terminals, behind the new-terminal features (None: none)."""
        return next((f for f in self.first_seen if f.what == "terminal"), None)

    @property
    def names(self) -> list[str]:
        return (
            [a.name for a in self.aggregates]
            + [d.name for d in self.derived]
            + [f.name for f in self.first_seen]
        )

    def families(self) -> dict[tuple[str, int, str | None], list[Aggregate]]:
        out: dict[tuple[str, int, str | None], list[Aggregate]] = {}
        for a in self.aggregates:
            out.setdefault(a.family, []).append(a)
        return out

    @cached_property
    def distinct_of(self) -> list[str]:
        """What the ``distinct`` aggregates count, each once."""
        return sorted({a.of for a in self.aggregates if a.of is not None})

    @cached_property
    def uses_profiles(self) -> bool:
        return any(d.kind in PROFILE_KINDS for d in self.derived)

    @cached_property
    def uses_neighbours(self) -> bool:
        return any(d.kind in NEIGHBOUR_KINDS for d in self.derived)

    def history_windows_s(self) -> list[int]:
        return sorted(
            {parse_duration(d.window) for d in self.derived if d.window and "prev" in d.kind}
        )


def _one_of(options: dict[str, str]) -> str:
    return "one of " + ", ".join(options)


def default_feature_set() -> FeatureSet:
    """The Handbook's baseline features plus velocity, amount-vs-usual, terminal compromise
    and travel features (see the module docs of `fraudstream.features`)."""
    aggs: list[Aggregate] = []
    for w in ("1d", "7d", "30d"):
        aggs += [Aggregate("customer", "count", w), Aggregate("customer", "mean", w)]
    for w in ("1d", "7d", "30d"):
        aggs += [
            Aggregate("terminal", "count", w, delay="7d"),
            Aggregate("terminal", "risk", w, delay="7d"),
        ]
    entities: tuple[Entity, ...] = ("customer", "card", "device", "ip")
    for entity in entities:
        for w in ("1h", "24h"):
            aggs += [Aggregate(entity, "count", w), Aggregate(entity, "sum", w)]
    # Zero-amount authorisations (card verification) in bursts are what card testing looks
    # like: counted per customer, card and device over the short windows.
    for entity in ("customer", "card", "device"):
        for w in ("1h", "24h"):
            aggs.append(Aggregate(entity, "count", w, where="zero_amount"))
    aggs.append(Aggregate("customer", "std", "30d"))
    for w in ("30d", "60d"):
        aggs += [Aggregate("terminal", "fraud_count", w), Aggregate("terminal", "risk", w)]
    # Novelty of place (account takeover: paying where the customer never did), a terminal's
    # traffic against its own past (skimming), and the recent against the usual (bust-out).
    aggs.append(Aggregate("customer", "mean", "3d"))
    aggs += [Aggregate("terminal", "mean", w) for w in ("1d", "7d", "28d")]
    derived = [
        Derived("amount"),
        Derived("is_weekend"),
        Derived("is_night"),
        Derived("amount_ratio_mean", "30d"),
        Derived("amount_zscore", "30d"),
        Derived("amount_ratio_median_prev", "30d"),
        Derived("amount_ratio_median_prev", "60d"),
        Derived("amount_ratio_max_prev", "30d"),
        Derived("amount_ratio_max_prev", "60d"),
        Derived("seconds_since_last_tx"),
        Derived("distance_from_home"),
        Derived("distance_from_last"),
        Derived("speed_from_last_kmh"),
        Derived("impossible_travel"),
        Derived("days_since_first_fraud"),
        Derived("days_since_last_fraud"),
        Derived("profile_segment"),
        Derived("distance_from_profile_home"),
        Derived("is_preferred_card"),
        Derived("new_terminal_count", "1d"),
        Derived("new_terminal_count", "7d"),
        Derived("new_terminal_share", "7d"),
        Derived("mean_ratio", "1d", base="30d"),
        Derived("mean_ratio", "3d", base="30d"),
        Derived("terminal_mean_ratio", "1d", base="28d"),
        Derived("terminal_mean_ratio", "7d", base="28d"),
        Derived("terminal_amount_ratio_mean", "28d"),
        Derived("terminal_count_ratio", "1d", base="28d"),
        Derived("amount_trend", "7d"),
        Derived("rising_days", "14d"),
        Derived("amount_ratio_median_before", "3d"),
        Derived("max_trend", "7d"),
        Derived("rising_max_days", "14d"),
        # How far a terminal lies from the customer's usual ones without coordinates.
        Derived("terminal_covisit_share"),
    ]
    # Sized on the simulator's 183 days (distinct values per customer, p99 / max): merchants
    # 166 / 186, IPs 31 / 39, devices 7 / 8, categories 10 / 10 (see `FirstSeen`); the
    # Handbook's terminals (those within radius 5 on its grid: ~78) 94 / 103, held by 16
    # words at 2 % (capacity 104; ~0.15 % false positives at the median 72).
    seen = (
        FirstSeen("merchant", words=32),
        FirstSeen("product_category", words=8),
        FirstSeen("device", words=8),
        FirstSeen("ip", words=16),
        FirstSeen("terminal", words=16, fp_rate=0.02),
    )
    return FeatureSet(tuple(aggs), tuple(derived), first_seen=seen)
