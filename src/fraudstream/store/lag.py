"""How far the sink is behind: entries of ``tx.decisions`` not stored yet.

The entries added to the stream and not yet delivered to the ``sink`` group (``XINFO
STREAM`` entries-added minus ``XINFO GROUPS`` entries-read), plus those delivered and not
acked (``pending``), are what the database does not hold. A sink that falls more than
``decisions_maxlen`` behind loses entries to the stream's trim: ``trimmed`` counts them (added,
never read by the group, no longer in the stream). The server's own ``lag`` field counts
them as still to come, which they are not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis


@dataclass(frozen=True)
class Lag:
    unread: int | None
    """Entries not delivered to the group yet (``None``: the server cannot tell)."""
    pending: int
    """Delivered to a sink, not yet stored and acked."""
    trimmed: int
    """Trimmed from the stream before the group read them: lost to the store."""

    @property
    def entries(self) -> int | None:
        return None if self.unread is None else self.unread + self.pending


def measure(client: redis.Redis, stream: str, group: str) -> Lag:
    """The group's lag on ``stream`` (zero everywhere if neither exists yet)."""
    pipe = client.pipeline(transaction=False)
    pipe.xinfo_groups(stream)
    pipe.xlen(stream)
    pipe.execute_command("XINFO", "STREAM", stream)  # type: ignore[no-untyped-call]
    try:
        groups, length, info = pipe.execute()
    except redis.ResponseError:  # no such stream yet
        return Lag(unread=0, pending=0, trimmed=0)
    mine = next((g for g in groups if as_text(g["name"]) == group), None)
    if mine is None:
        return Lag(unread=length, pending=0, trimmed=0)
    pending = int(mine["pending"])
    added, read = _field(info, "entries-added"), mine.get("entries-read")
    if read is None and as_text(mine["last-delivered-id"]) == "0-0":
        read = 0  # never read anything
    if added is None or read is None:  # the server cannot tell; its own lag may be None
        lag = mine.get("lag")
        return Lag(unread=None if lag is None else int(lag), pending=pending, trimmed=0)
    # Entries added and never read by the group: still in the stream, or trimmed. At most
    # `length` of them can be in the stream, so any excess was trimmed before it was read.
    behind = int(added) - int(read)
    trimmed = max(0, behind - int(length))
    return Lag(unread=behind - trimmed, pending=pending, trimmed=trimmed)


def _field(info: Any, name: str) -> Any:
    if isinstance(info, dict):
        return info.get(name, info.get(name.encode()))
    pairs = dict(zip(info[::2], info[1::2], strict=True))
    return pairs.get(name.encode(), pairs.get(name))


def as_text(value: bytes | str) -> str:
    """A stream or group name as the server gave it (bytes unless the client decodes)."""
    return value.decode() if isinstance(value, bytes) else value
