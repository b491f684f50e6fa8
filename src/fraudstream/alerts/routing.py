"""Which decisions raise an alert, and on which channels: routes read from a TOML file.

.. code-block:: toml

    [[route]]
    name = "blocks"            # named in errors and in the alert
    outcome = ["block"]        # any of; left out = every outcome
    channels = ["webhook", "email"]

    [[route]]
    name = "large reviews"
    outcome = "review"
    min_score = 600            # score band, both ends included
    max_score = 1000
    min_amount = 1000.0        # needs the amount (the decision's, or the stored transaction's)
    rule = "ip_blocklist"      # a rule that hit: ``rule:ip_blocklist`` among the reasons
    channels = ["email"]

A decision takes the channels of every route it matches, each channel once. A route's
criteria all hold for a match; a criterion left out always holds.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import msgspec

from fraudstream.errors import ConfigError
from fraudstream.schema import OUTCOMES, Decision, Outcome, schema_error

ChannelName = Literal["webhook", "email"]
CHANNELS: tuple[ChannelName, ...] = ("webhook", "email")


class Route(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One rule of the routing file."""

    name: str
    channels: list[ChannelName]
    outcome: list[Outcome] = []
    min_score: int | None = None
    max_score: int | None = None
    min_amount: float | None = None
    rule: str | None = None

    def __post_init__(self) -> None:
        if not self.channels:
            raise ValueError("channels: must name at least one of webhook, email")
        for key in ("min_score", "max_score"):
            value = getattr(self, key)
            if value is not None and not 0 <= value <= 1000:
                raise ValueError(f"{key}: must be in 0..1000, got {value}")
        if (self.min_score or 0) > (1000 if self.max_score is None else self.max_score):
            raise ValueError(f"max_score: must be >= min_score ({self.min_score})")
        if self.min_amount is not None and not self.min_amount >= 0:
            raise ValueError(f"min_amount: must be >= 0, got {self.min_amount:g}")

    def could_match(self, decision: Decision) -> bool:
        """Everything but the amount holds (the amount may need a look-up first)."""
        if self.outcome and decision.outcome not in self.outcome:
            return False
        if self.min_score is not None and decision.score < self.min_score:
            return False
        if self.max_score is not None and decision.score > self.max_score:
            return False
        return self.rule is None or f"rule:{self.rule}" in decision.reasons

    def matches(self, decision: Decision, amount: float | None) -> bool:
        """An unknown amount never passes a ``min_amount``."""
        if self.min_amount is not None and (amount is None or amount < self.min_amount):
            return False
        return self.could_match(decision)


class Routes:
    """The routes of one file (or the default), in file order."""

    def __init__(self, routes: Sequence[Route], source: str) -> None:
        self.routes = list(routes)
        self.source = source

    def could_match(self, decision: Decision) -> bool:
        return any(route.could_match(decision) for route in self.routes)

    def needs_amount(self) -> bool:
        return any(route.min_amount is not None for route in self.routes)

    def channels_for(
        self, decision: Decision, amount: float | None
    ) -> dict[ChannelName, list[str]]:
        """Channel -> names of the routes that send the decision there (empty: no alert)."""
        out: dict[ChannelName, list[str]] = {}
        for route in self.routes:
            if route.matches(decision, amount):
                for channel in route.channels:
                    out.setdefault(channel, []).append(route.name)
        return out

    def channels(self) -> set[ChannelName]:
        return {channel for route in self.routes for channel in route.channels}

    def check_configured(self, configured: Iterable[ChannelName], hint: str) -> None:
        """Every channel a route names is configured.

        Raises:
            ConfigError: naming the file, the route and ``channels``.
        """
        have = set(configured)
        for i, route in enumerate(self.routes, 1):
            for channel in route.channels:
                if channel not in have:
                    raise ConfigError(
                        _where(self.source, i, route.name),
                        f"channels: {channel} is not configured ({hint})",
                    )


def default_routes(configured: Iterable[ChannelName]) -> Routes:
    """Without a routing file: every block, and every step-up's code, to every configured
    channel."""
    channels = [c for c in CHANNELS if c in set(configured)]
    if not channels:
        return Routes([], "default routes")
    return Routes(
        [
            Route(name="blocks", outcome=["block"], channels=channels),
            Route(name="step-ups", outcome=["step_up"], channels=channels),
        ],
        "default routes",
    )


def load_routes(path: Path) -> Routes:
    """Read and check a routing file.

    Raises:
        ConfigError: one line naming the file, the route (number and name) and the field:
            ``alerts.toml: route 2 (large reviews): min_score: must be in 0..1000, got 2000``.
    """
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError("alerts_file", f"cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"invalid TOML: {exc}") from None
    unknown = sorted(set(data) - {"route"})
    if unknown:
        raise ConfigError(str(path), f"{unknown[0]}: unknown key (routes are [[route]] tables)")
    raw = data.get("route", [])
    if not isinstance(raw, list) or not raw:
        raise ConfigError(str(path), "route: no [[route]] table")
    return Routes([_route(path, i, item) for i, item in enumerate(raw, 1)], str(path))


def _route(path: Path, number: int, item: Any) -> Route:
    name = str(item.get("name", "")) if isinstance(item, dict) else ""
    where = _where(str(path), number, name)
    if not isinstance(item, dict):
        raise ConfigError(where, "must be a [[route]] table")
    if not name:
        raise ConfigError(where, "name: required field is missing")
    values = dict(item)
    if isinstance(values.get("outcome"), str):
        values["outcome"] = [values["outcome"]]
    if isinstance(values.get("channels"), str):
        values["channels"] = [values["channels"]]
    for key, allowed in (("outcome", OUTCOMES), ("channels", CHANNELS)):
        wrong = [v for v in values.get(key, []) if v not in allowed]
        if wrong:
            raise ConfigError(where, f"{key}: must be among {', '.join(allowed)}, got {wrong[0]!r}")
    try:
        return msgspec.convert(values, Route)
    except msgspec.ValidationError as exc:
        error = schema_error(exc)
        raise ConfigError(where, str(error)) from None


def _where(source: str, number: int, name: str) -> str:
    return f"{source}: route {number}" + (f" ({name})" if name else "")
