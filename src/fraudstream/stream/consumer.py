"""What every long-running consumer of a stream shares (the scoring worker, the SQL sink,
the alerts): its consumer group, created once, reads from it, and the two-stage stop."""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

import redis
from redis.typing import EncodableT, FieldT

from fraudstream.errors import SchemaError
from fraudstream.stream.keys import PAYLOAD

log = logging.getLogger(__name__)
Entry = tuple[bytes, dict[bytes, bytes]]
DeadLetter = dict[FieldT, EncodableT]


def ensure_group(client: redis.Redis, stream: str, group: str) -> None:
    """Create ``group`` on ``stream`` (and the stream), reading from its start; an existing
    group is left as it is."""
    try:
        client.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def host_consumer(group: str) -> str:
    """A consumer name stable across restarts on a host (``sink:db-1``): a process that
    comes back reads its own pending entries first, at once, instead of waiting for another
    to claim them after ``claim_idle_ms``."""
    return f"{group}:{socket.gethostname()}"


def payload_of(fields: dict[bytes, bytes]) -> bytes:
    """The record an entry carries. An entry without the payload field (written by some other
    producer) is refused naming that field, rather than read as empty JSON.

    Raises:
        SchemaError: ``d: missing: …``, with the fields the entry has instead.
    """
    try:
        return fields[PAYLOAD]
    except KeyError:
        names = [name.decode(errors="replace")[:40] for name in list(fields)[:5]]
        problem = f"missing: the entry has no payload field (its fields: {', '.join(names)})"
        raise SchemaError(PAYLOAD.decode(), problem) from None


def dead_letter(
    stream: str, entry_id: bytes, payload: bytes, reason: str, field_name: str = ""
) -> DeadLetter:
    """The dead-letter record of an entry: where it was, what it held, and why it stopped."""
    return {
        "reason": reason,
        "field": field_name,
        "stream": stream,
        "entry_id": entry_id,
        "payload": payload,
        "at_ms": int(time.time() * 1000),
    }


class GroupReader:
    """The entries of one consumer of a group, in the order that loses none: this consumer's
    own pending entries first (a previous run of it died holding them), then, every
    ``claim_idle_ms``, entries another consumer left pending that long (it is gone), then new
    ones (waiting up to ``block_ms``).

    Both sweeps go on from where the previous read ended, so a batch still being worked on
    (pending, not acked) is not read twice; `reread_pending` starts over (after a lost
    connection, what was read and not acked is read again at once).
    """

    def __init__(
        self,
        client: redis.Redis,
        stream: str,
        group: str,
        consumer: str,
        *,
        count: int,
        block_ms: int,
        claim_idle_ms: int,
    ) -> None:
        self.client = client
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.count = count
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.claimed = 0
        """Entries taken over from other consumers so far."""
        self._pending_from: bytes | str | None = "0"
        self._claim_from: bytes | str = "0-0"
        self._next_claim = 0.0

    def reread_pending(self) -> None:
        self._pending_from = "0"

    def next(self) -> list[Entry]:
        if self._pending_from is not None:
            entries, last = self._read(self._pending_from)
            if last is not None:
                self._pending_from = last
                return entries
            self._pending_from = None
        if time.monotonic() >= self._next_claim:
            entries, self._claim_from = self._claim(self._claim_from)
            if entries:
                self.claimed += len(entries)
                return entries
            if self._claim_from in (b"0-0", "0-0"):  # the sweep is over
                self._next_claim = time.monotonic() + self.claim_idle_ms / 1000
        return self._read(">")[0]

    def ack(self, ids: Sequence[bytes], dead: Sequence[DeadLetter], deadletter: str) -> None:
        """Ack a batch handled, and add its dead letters to ``deadletter``, in one
        MULTI/EXEC: a dead letter is not lost for an entry acked."""
        pipe = self.client.pipeline(transaction=True)
        for record in dead:
            pipe.xadd(deadletter, record)
        if ids:
            pipe.xack(self.stream, self.group, *ids)
        pipe.execute()

    def _read(self, start: bytes | str) -> tuple[list[Entry], bytes | None]:
        """Entries from ``start`` (``>``: new ones), and the last id read (``None``: none).
        A pending entry the stream's trim removed comes back empty: it is acked, and lost."""
        reply: Any = self.client.xreadgroup(
            self.group,
            self.consumer,
            {self.stream: start},
            count=self.count,
            block=self.block_ms if start == ">" else None,
        )
        got = [(i, f) for _, entries in reply or [] for i, f in entries]
        gone = [i for i, f in got if f is None]
        if gone:
            log.warning("%s: %d pending entries were trimmed before they were handled",
                        self.group, len(gone))  # fmt: skip
            self.client.xack(self.stream, self.group, *gone)
        return [(i, f) for i, f in got if f is not None], (got[-1][0] if got else None)

    def _claim(self, start: bytes | str) -> tuple[list[Entry], bytes | str]:
        """Entries idle for ``claim_idle_ms`` from ``start`` on, and where to go on from.
        (The server drops trimmed entries from the pending list itself.)"""
        reply: Any = self.client.xautoclaim(
            self.stream,
            self.group,
            self.consumer,
            self.claim_idle_ms,
            start_id=start,
            count=self.count,
        )
        return [(i, f) for i, f in reply[1] if f is not None], reply[0]


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
