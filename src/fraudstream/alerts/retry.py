"""Try a delivery a bounded number of times, with capped exponential backoff between tries."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fraudstream.errors import AlertError

if TYPE_CHECKING:
    from fraudstream.config import Settings


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    backoff_s: float = 0.5
    """Wait after the first failure; doubled after each next one."""
    max_backoff_s: float = 30.0

    @classmethod
    def of(cls, settings: Settings, *, attempts: int | None = None) -> RetryPolicy:
        """The configured policy (``alerts_attempts``, ``alerts_backoff_s``, …)."""
        return cls(
            attempts=attempts or settings.alerts_attempts,
            backoff_s=settings.alerts_backoff_s,
            max_backoff_s=settings.alerts_max_backoff_s,
        )

    def delays(self) -> list[float]:
        """The waits between the tries.

        >>> RetryPolicy(attempts=5, backoff_s=1, max_backoff_s=3).delays()
        [1, 2, 3, 3]
        """
        return [min(self.backoff_s * 2**i, self.max_backoff_s) for i in range(self.attempts - 1)]


@dataclass(frozen=True)
class Attempted:
    """How a delivery ended: ``error`` is None when it was delivered."""

    attempts: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def with_retries(
    send: Callable[[], None],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], object] = time.sleep,
) -> Attempted:
    """Call ``send`` until it returns, at most ``policy.attempts`` times; only `AlertError`
    is retried (anything else is a bug, and propagates)."""
    delays = policy.delays()
    for attempt in range(1, policy.attempts + 1):
        try:
            send()
            return Attempted(attempts=attempt)
        except AlertError as exc:
            if attempt == policy.attempts:
                return Attempted(attempts=attempt, error=str(exc))
            sleep(delays[attempt - 1])
    raise AssertionError("unreachable")  # pragma: no cover
