"""How far the sink is behind: entries of ``tx.decisions`` not stored yet.

``XINFO GROUPS`` gives, for the ``sink`` group, the entries not yet delivered (``lag``) and
those delivered but not acked (``pending``); their sum is what the database does not hold.
A sink that falls more than ``decisions_maxlen`` behind loses entries to the stream's trim:
``trimmed`` counts them (added to the stream, never read by the group, no longer in it).
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
    mine = next((g for g in groups if _text(g["name"]) == group), None)
    if mine is None:
        return Lag(unread=length, pending=0, trimmed=0)
    unread = mine.get("lag")
    added = _field(info, "entries-added")
    read = mine.get("entries-read")
    trimmed = 0
    if added is not None and read is not None:
        trimmed = max(0, int(added) - int(read) - int(length))
    return Lag(
        unread=None if unread is None else int(unread),
        pending=int(mine["pending"]),
        trimmed=trimmed,
    )


def _field(info: Any, name: str) -> Any:
    if isinstance(info, dict):
        return info.get(name, info.get(name.encode()))
    pairs = dict(zip(info[::2], info[1::2], strict=True))
    return pairs.get(name.encode(), pairs.get(name))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
