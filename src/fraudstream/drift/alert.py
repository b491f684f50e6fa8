"""Drift alerts: when the fleet's PSI passes ``drift_psi_alert``, one alert per episode on
every configured channel.

`DriftWatch.check` reads the fleet's figures (`fleet.fleet_figures`), and for each model
version with a distribution (the score or a top feature) above the threshold it claims the
episode with ``SET {prefix}.drift.alerted:{version} NX EX realert_s``: whoever wins the
claim (an `alerts run` consumer, a `fraudstream drift check` from cron) sends, the others
do not, so one crossing is one alert however many checkers run. The claim is dropped when
every figure is back at or under the threshold (the next crossing is a new episode), and
when no channel took the alert (the next check tries again). A drift that lasts is said
again after ``realert_s`` (a day by default).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

import redis

from fraudstream.alerts.channels import Channel
from fraudstream.alerts.payload import DriftAlert
from fraudstream.alerts.retry import RetryPolicy, with_retries
from fraudstream.alerts.routing import ChannelName
from fraudstream.drift.fleet import STALE_S, fleet_figures
from fraudstream.drift.psi import SIGNIFICANT
from fraudstream.drift.window import MIN_ROWS, DriftFigures

log = logging.getLogger(__name__)

REALERT_S = 86_400


def alerted_key(prefix: str, version: str) -> str:
    return f"{prefix}.drift.alerted:{version}"


@dataclass
class Checked:
    """What one check found for one model version, and what it did."""

    figures: DriftFigures
    over: list[str]
    sent: list[str] = field(default_factory=list)
    """Channels the alert went out on (empty: none was due, or every channel failed)."""
    errors: list[str] = field(default_factory=list)


class DriftWatch:
    """Checks the fleet's drift and alerts once per episode (see the module)."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        channels: Mapping[ChannelName, Channel],
        policy: RetryPolicy,
        *,
        threshold: float = SIGNIFICANT,
        min_rows: int = MIN_ROWS,
        stale_s: float = STALE_S,
        realert_s: int = REALERT_S,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.channels = dict(channels)
        self.policy = policy
        self.threshold = threshold
        self.min_rows = min_rows
        self.stale_s = stale_s
        self.realert_s = realert_s
        self.now = now

    def check(self) -> list[Checked]:
        """One look at the fleet; an alert for each model version newly over the threshold."""
        found = fleet_figures(self.client, self.prefix, min_rows=self.min_rows,
                              stale_s=self.stale_s)  # fmt: skip
        return [self._check(figures) for figures in found]

    def _check(self, figures: DriftFigures) -> Checked:
        parts = (figures.score, *figures.features)
        over = [f.name for f in parts if f.psi is not None and f.psi > self.threshold]
        checked = Checked(figures, over)
        key = alerted_key(self.prefix, figures.model_version)
        if not over:
            if figures.worst() is not None:
                self.client.delete(key)  # measured and calm: the episode is over
            return checked
        at = self.now()
        if not self.client.set(key, int(at.timestamp()), nx=True, ex=self.realert_s):
            return checked  # this episode was alerted already
        for name, channel in self.channels.items():
            alert = self._alert(figures, over, name, at)
            tried = with_retries(partial(channel.send, alert), self.policy)
            channel.close()  # an episode's one alert: no connection worth keeping
            if tried.error is None:
                checked.sent.append(name)
            else:
                checked.errors.append(tried.error)
                log.warning("drift alert on %s failed: %s", name, tried.error)
        if not checked.sent:
            self.client.delete(key)  # nobody was told: the next check tries again
        return checked

    def _alert(
        self, figures: DriftFigures, over: list[str], channel: ChannelName, at: datetime
    ) -> DriftAlert:
        return DriftAlert(
            alert_id=f"drift:{figures.model_version}:{int(at.timestamp())}",
            channel=channel,
            model_version=figures.model_version,
            threshold=self.threshold,
            over=over,
            score_psi=figures.score.psi,
            feature_psi={f.name: f.psi for f in figures.features},
            rows=figures.rows,
            detected_at=at,
        )


def every(seconds: float, action: Callable[[], object]) -> Callable[[], None]:
    """``action``, run at most once per ``seconds`` however often the result is called (the
    alerts consumer calls it on each progress tick)."""
    due = [0.0]

    def maybe() -> None:
        now = time.monotonic()
        if now >= due[0]:
            due[0] = now + seconds
            action()

    return maybe
