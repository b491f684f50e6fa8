"""The stream floor: the worker's I/O with the scoring taken out.

``consumers`` processes share the partitions (partition ``p`` to process ``p % consumers``);
each reads a batch with one XREADGROUP over its streams (an equal share of each, as
`fraudstream.stream.batch` asks), then in one MULTI appends every payload, unchanged, to the
decisions stream and XACKs and XDELs the entries: what a worker does around its scoring. No
decoding, no leases, no scoring. Its rate is the ceiling any pipeline can reach on this host.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Sequence
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import Any

import redis

from fraudstream.stream.keys import GROUP, PAYLOAD, StreamKeys

CONSUMER = "floor"


def floor_tps(
    client: redis.Redis, url: str, keys: StreamKeys, entries: Sequence[tuple[str, bytes]], *,
    consumers: int, batch: int,
) -> float:  # fmt: skip
    """Fill the partitions with ``entries`` (stream, payload), then drain them: tx/s from the
    moment every consumer is connected to the moment the last one is done."""
    client.flushall()
    for stream in keys.inputs():
        client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    pipe = client.pipeline(transaction=False)
    for stream, blob in entries:
        pipe.xadd(stream, {PAYLOAD: blob})
    pipe.execute()
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(consumers), context.Queue()
    procs = []
    for i in range(consumers):
        mine = [keys.input(p) for p in range(keys.partitions) if p % consumers == i]
        expected = sum(stream in mine for stream, _ in entries)
        args = (url, mine, keys.decisions, expected, batch, barrier, results)
        procs.append(context.Process(target=consume, args=args))
        procs[-1].start()
    spans: list[tuple[float, float]] = [results.get(timeout=300) for _ in procs]
    for proc in procs:
        proc.join()
    return len(entries) / (max(end for _, end in spans) - min(start for start, _ in spans))


def consume(
    url: str,
    streams: list[str],
    decisions: str,
    expected: int,
    batch: int,
    barrier: Barrier,
    results: Queue[tuple[float, float]],
) -> None:
    """One consumer process: its start and end times (wall clock) once ``expected`` are done."""
    client = redis.Redis.from_url(url)
    client.ping()
    share = max(1, batch // len(streams))
    barrier.wait()
    start, done = time.time(), 0
    while done < expected:
        reply: Any = client.xreadgroup(
            GROUP, CONSUMER, dict.fromkeys(streams, ">"), count=share, block=100
        )
        pipe = client.pipeline(transaction=True)
        for stream, messages in reply or []:
            ids = [entry_id for entry_id, _ in messages]
            for _, fields in messages:
                pipe.xadd(decisions, {PAYLOAD: fields[PAYLOAD]})
            pipe.xack(stream, GROUP, *ids)
            pipe.xdel(stream, *ids)
            done += len(ids)
        pipe.execute()
    results.put((start, time.time()))
    client.close()
