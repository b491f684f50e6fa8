"""Partition leases: each input partition is read by one live worker at a time.

Kafka-style assignment on plain keys. Every worker heartbeats into a sorted set; from the
number of live workers each computes its fair share ``ceil(P / live)``, renews the leases it
holds, gives back any above its share (between batches, after acking, so nothing is pending),
and takes free ones up to its share. A dead worker stops renewing; its leases expire after
``ttl_ms`` and a live worker takes them over, claiming the entries it left pending.
"""

from __future__ import annotations

import math
import random
import time

import redis

from fraudstream.stream.keys import StreamKeys

# KEYS[1] = lease key; ARGV[1] = our consumer name; ARGV[2] = ttl in ms.
# Extends the lease only if we still hold it; returns 1 if renewed, 0 if lost.
RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS[1] = lease key; ARGV[1] = our consumer name.
# Deletes the lease only if we hold it; returns 1 if released.
RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class LeaseManager:
    """The set of partitions one consumer currently owns."""

    def __init__(self, client: redis.Redis, keys: StreamKeys, consumer: str, ttl_ms: int) -> None:
        self.client = client
        self.keys = keys
        self.consumer = consumer
        self.ttl_ms = ttl_ms
        self.owned: set[int] = set()
        self._renew = client.register_script(RENEW_LUA)
        self._release = client.register_script(RELEASE_LUA)
        self._last_beat = 0.0

    def due(self) -> bool:
        """Heartbeat every third of the TTL, so a live worker never loses a lease."""
        return time.monotonic() - self._last_beat >= self.ttl_ms / 3000

    def rebalance(self) -> set[int]:
        """Heartbeat, renew, shed extras, acquire up to the fair share.

        Returns the partitions newly acquired (their pending entries need claiming).
        """
        self._last_beat = time.monotonic()
        live = self._heartbeat()
        target = math.ceil(self.keys.partitions / max(live, 1))
        for p in sorted(self.owned):
            if not self._renew(keys=[self.keys.lease(p)], args=[self.consumer, self.ttl_ms]):
                self.owned.discard(p)
        for p in sorted(self.owned, reverse=True)[: max(0, len(self.owned) - target)]:
            self._release(keys=[self.keys.lease(p)], args=[self.consumer])
            self.owned.discard(p)
        acquired: set[int] = set()
        free = [p for p in range(self.keys.partitions) if p not in self.owned]
        random.shuffle(free)  # workers starting together do not all race for partition 0
        for p in free:
            if len(self.owned) >= target:
                break
            if self.client.set(self.keys.lease(p), self.consumer, nx=True, px=self.ttl_ms):
                self.owned.add(p)
                acquired.add(p)
        return acquired

    def release_all(self) -> None:
        for p in sorted(self.owned):
            self._release(keys=[self.keys.lease(p)], args=[self.consumer])
        self.owned.clear()
        self.client.zrem(self.keys.workers, self.consumer)

    def _heartbeat(self) -> int:
        now_ms = int(time.time() * 1000)
        pipe = self.client.pipeline(transaction=False)
        pipe.zadd(self.keys.workers, {self.consumer: now_ms})
        pipe.zremrangebyscore(self.keys.workers, 0, now_ms - self.ttl_ms)
        pipe.zcard(self.keys.workers)
        return int(pipe.execute()[-1])
