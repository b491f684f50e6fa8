"""Partition leases: each input partition is read by one live worker at a time.

Kafka-style assignment on plain keys. Every worker heartbeats into a sorted set; from the
number of live workers each computes its fair share ``ceil(P / live)``, renews the leases it
holds, gives back any above its share (between batches, after acking, so nothing is pending),
and takes free ones up to its share. A worker short of its share also looks for a free
partition every `HUNGRY_POLL_S` (one pipelined ``EXISTS`` per partition it does not hold), so
a partition given back is taken within that, not a heartbeat later (up to a third of the
TTL, 3.3 s by default, during which its transactions waited). A dead worker stops renewing;
its leases expire after ``ttl_ms`` and a live worker takes them over, claiming the entries
it left pending.

A lease is also a fencing token. Its value is ``consumer/generation``, the generation drawn
from a per-partition counter each time the lease is taken, so two tenures never share a
value, not even two of the same worker. A batch remembers the leases it was read under and
commits only if they still stand (`Lease.still_ours`, checked inside the commit's
transaction, see `fraudstream.stream.commit`): a worker that stalled past its lease (GC pause,
SIGSTOP, slow host) while another took the partition over drops the batch instead of
deciding it twice, even if it has taken the lease back since.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass

import redis

from fraudstream.stream.keys import StreamKeys

HUNGRY_POLL_S = 0.1
"""How often a worker holding less than its fair share looks for a free partition between
heartbeats: a partition given back goes unread until someone takes it, and the worker that
gave it back learnt of the newcomer only at its own heartbeat."""

# KEYS[1] = lease key; KEYS[2] = the partition's generation counter.
# ARGV[1] = our consumer name; ARGV[2] = ttl in ms.
# Takes the lease if nobody holds it, under the next generation; returns its value
# ("consumer/generation"), or nil (false) if it is held.
ACQUIRE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return false
end
local token = ARGV[1] .. '/' .. redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
return token
"""

# KEYS[1] = lease key; ARGV[1] = our lease's value; ARGV[2] = ttl in ms.
# Extends the lease only if we still hold it; returns 1 if renewed, 0 if lost.
RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS[1] = lease key; ARGV[1] = our lease's value.
# Deletes the lease only if we hold it; returns 1 if released.
RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def fair_share(partitions: int, live: int) -> int:
    """The most partitions one of ``live`` workers holds.

    >>> fair_share(16, 2), fair_share(16, 3), fair_share(16, 0)
    (8, 6, 16)
    """
    return math.ceil(partitions / max(live, 1))


@dataclass(frozen=True)
class Lease:
    """One tenure of one partition: the fencing token of the batches read under it."""

    partition: int
    token: bytes
    """The lease key's value, ``consumer/generation``."""

    @property
    def generation(self) -> int:
        return int(self.token.rpartition(b"/")[2])

    def still_ours(self, value: bytes | None, generation: bytes | None) -> bool:
        """May a batch read under this lease commit, given the lease key's value and the
        generation counter as they are now?

        Yes if the lease is ours, or if it expired and nobody has taken the partition since
        (the counter still says our generation): no other worker can then have committed
        any of its entries, so the work is good and the commit takes the lease back.

        >>> lease = Lease(0, b"a/7")
        >>> lease.still_ours(b"a/7", b"7"), lease.still_ours(None, b"7")
        (True, True)
        >>> lease.still_ours(b"b/8", b"8"), lease.still_ours(b"a/9", b"9")
        (False, False)
        >>> lease.still_ours(None, b"8")  # taken and given back by someone else meanwhile
        False
        """
        if value is not None:
            return value == self.token
        return generation is not None and int(generation) == self.generation


def holder(value: bytes) -> str:
    """The consumer named in a lease key's value.

    >>> holder(b"host:42/7")
    'host:42'
    """
    return value.rpartition(b"/")[0].decode()


class LeaseManager:
    """The set of partitions one consumer currently owns."""

    def __init__(self, client: redis.Redis, keys: StreamKeys, consumer: str, ttl_ms: int) -> None:
        self.client = client
        self.keys = keys
        self.consumer = consumer
        self.ttl_ms = ttl_ms
        self.held: dict[int, Lease] = {}
        self._acquire = client.register_script(ACQUIRE_LUA)
        self._renew = client.register_script(RENEW_LUA)
        self._release = client.register_script(RELEASE_LUA)
        self._last_beat = 0.0
        self._short = False
        """The last rebalance left us below our fair share (all else was held)."""
        self._last_look = 0.0

    @property
    def owned(self) -> set[int]:
        return set(self.held)

    def due(self) -> bool:
        """Heartbeat every third of the TTL, so a live worker never loses a lease; and as
        soon as a partition is free while we hold less than our share."""
        now = time.monotonic()
        if now - self._last_beat >= self.ttl_ms / 3000:
            return True
        if not self._short or now - self._last_look < HUNGRY_POLL_S:
            return False
        self._last_look = now
        return self._any_free()

    def _any_free(self) -> bool:
        pipe = self.client.pipeline(transaction=False)
        for p in range(self.keys.partitions):  # one command each: a cluster spreads them
            if p not in self.held:
                pipe.exists(self.keys.lease(p))
        return not all(pipe.execute())

    def beat_now(self) -> None:
        """Make the next `due` true: a lease was found lost, look again before reading."""
        self._last_beat = 0.0

    def rebalance(self) -> set[int]:
        """Heartbeat, renew, shed extras, acquire up to the fair share.

        Returns the partitions newly acquired (their pending entries need claiming).
        """
        self._last_beat = time.monotonic()
        live = self._heartbeat()
        target = fair_share(self.keys.partitions, live)
        for p, lease in sorted(self.held.items()):
            if not self._renew(keys=[self.keys.lease(p)], args=[lease.token, self.ttl_ms]):
                del self.held[p]
        for p in sorted(self.held, reverse=True)[: max(0, len(self.held) - target)]:
            self._give_back(p)
        acquired: set[int] = set()
        free = [p for p in range(self.keys.partitions) if p not in self.held]
        random.shuffle(free)  # workers starting together do not all race for partition 0
        for p in free:
            if len(self.held) >= target:
                break
            if token := self._acquire(
                keys=[self.keys.lease(p), self.keys.lease_generation(p)],
                args=[self.consumer, self.ttl_ms],
            ):
                self.held[p] = Lease(p, token)
                acquired.add(p)
        self._short = len(self.held) < target
        self._last_look = self._last_beat
        return acquired

    def release_all(self) -> None:
        for p in sorted(self.held):
            self._give_back(p)
        self.client.zrem(self.keys.workers, self.consumer)

    def _give_back(self, partition: int) -> None:
        lease = self.held.pop(partition)
        self._release(keys=[self.keys.lease(partition)], args=[lease.token])

    def _heartbeat(self) -> int:
        now_ms = int(time.time() * 1000)
        pipe = self.client.pipeline(transaction=False)
        pipe.zadd(self.keys.workers, {self.consumer: now_ms})
        pipe.zremrangebyscore(self.keys.workers, 0, now_ms - self.ttl_ms)
        pipe.zcard(self.keys.workers)
        return int(pipe.execute()[-1])
