"""What every long-running consumer of a stream shares (the scoring worker, the SQL sink):
its consumer group, created once, and the two-stage stop."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import redis


def ensure_group(client: redis.Redis, stream: str, group: str) -> None:
    """Create ``group`` on ``stream`` (and the stream), reading from its start; an existing
    group is left as it is."""
    try:
        client.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class TwoStageStop:
    """First SIGINT/SIGTERM: ``stop_requested`` (finish the batch in hand, then exit).
    Second: exit now."""

    stop_requested: bool = False
    _signals: int = 0

    def install_signal_handlers(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)

    def request_stop(self, signum: int = 0, frame: FrameType | None = None) -> None:
        self._signals += 1
        if self._signals > 1:
            raise SystemExit(1)
        self.stop_requested = True
