"""``POST /v1/score`` latency and throughput, beside a bare Starlette echo app served alike.

Run: ``python benchmarks/bench_api.py [--repeat 3] [--seconds 4] [--json]``. Each server is a
real process on a free loopback port: ``fraudstream serve`` on a fresh embedded Valkey (a
model trained and activated first, as `fraudstream demo` does; features, default rules), then
``serve --workers 2``, and `echo_app` (the HTTP stack's ceiling: same Starlette and uvicorn,
no work). The client is this process, asyncio over plain sockets with keep-alive connections
(no HTTP client library is a dependency); every request scores a new transaction id.

The traffic is the demo's small simulated world (2,000 customers, 60 days, ~3 % fraud),
sent in event-time order from day 31 after its first 30 days went through the feature
engine (`traffic.WarmWorld`): the customers and terminals have the history a running
deployment has, so ~4 % of the requests are flagged and explained, as in production. Sent to
a cold state (every customer new) or as made-up transactions, 25–76 % were flagged, each
paying for its explanation: the table gives the share flagged.

Per server and repeat: latency of ``--sequential`` requests one after the other on one
connection; latency at a fixed offered rate (``--rate``, open loop: measured from the moment
the request was due, so a stall counts for every request it delays); and the rate ``--clients``
connections reach asking as fast as they are answered. ``serve --workers 2`` is measured for
throughput alone.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
import redis

from fraudstream.config import Settings
from fraudstream.demo import DemoRun
from fraudstream.valkey import EmbeddedValkey
from summary import Figure, Progress, Target, report
from traffic import WARM_DAYS, WarmWorld

HERE = Path(__file__).parent
KEY = "bench-key-0123456789"
START_TIMEOUT_S = 180
_ids = itertools.count()


_bodies: list[bytes] = []
_answered = {"flagged": 0, "all": 0}


def body(i: int) -> bytes:
    """Request ``i``: the next transaction of the simulated world (`prepare_traffic`)."""
    if i >= len(_bodies):
        raise RuntimeError(f"the prepared traffic ({len(_bodies):,} requests) ran out")
    return _bodies[i]


def fresh() -> bytes:
    """The next transaction not sent yet."""
    return body(next(_ids))


def same() -> bytes:
    """One body over and over: for the echo app, which scores nothing."""
    return _bodies[0]


Next = Callable[[], bytes]


def prepare_traffic(settings: Settings, client: redis.Redis, requests: int) -> None:
    """``requests`` bodies of a world whose first days the server's features hold already
    (`traffic.WarmWorld`)."""
    _bodies[:] = WarmWorld(settings, client, requests, f"api{os.getpid()}").bodies(requests)


def requests_needed(args: argparse.Namespace) -> int:
    """Every request the scoring servers can be sent (warm-ups; saturation at up to 6,000
    req/s)."""
    latency_run = int(args.sequential) + int(args.rate * args.seconds)
    per_repeat = latency_run + 2 * int(6_000 * args.seconds)
    return 3 * 200 + int(args.repeat) * per_repeat


class Connection:
    """One keep-alive HTTP/1.1 connection: a request, then its whole answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def score(self, payload: bytes) -> None:
        head = (
            f"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        self.writer.write(head.encode() + payload)
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        answer = await self.reader.readexactly(length)
        if b'"outcome"' in answer:  # a decision (the echo app sends the request back)
            _answered["all"] += 1
            _answered["flagged"] += b'"outcome":"approve"' not in answer
        if status != 200:
            raise RuntimeError(f"/v1/score answered {status}")

    def close(self) -> None:
        self.writer.close()


async def sequential(port: int, n: int, next_body: Next = fresh) -> list[float]:
    """Latency (ms) of ``n`` requests one after the other on one connection."""
    conn = await Connection.open(port)
    out = []
    for _ in range(n):
        payload = next_body()
        t0 = time.perf_counter()
        await conn.score(payload)
        out.append((time.perf_counter() - t0) * 1000)
    conn.close()
    return out


async def offered(
    port: int, rate: float, seconds: float, next_body: Next = fresh, pool: int = 32
) -> list[float]:
    """Latency (ms) of requests due every ``1 / rate`` s, each counted from when it was due."""
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(pool):
        idle.put_nowait(await Connection.open(port))
    out: list[float] = []

    async def one(due: float) -> None:
        conn = await idle.get()
        await conn.score(next_body())
        out.append((time.perf_counter() - due) * 1000)
        idle.put_nowait(conn)

    start = time.perf_counter()
    tasks = []
    for i in range(int(rate * seconds)):
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    while not idle.empty():
        idle.get_nowait().close()
    return out


async def saturate(port: int, clients: int, seconds: float, next_body: Next = fresh) -> float:
    """Requests per second ``clients`` connections get asking as fast as they are answered."""
    conns = [await Connection.open(port) for _ in range(clients)]
    done = 0
    stop = time.perf_counter() + seconds

    async def loop(conn: Connection) -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await conn.score(next_body())
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(loop(c) for c in conns))
    elapsed = time.perf_counter() - start
    for conn in conns:
        conn.close()
    return done / elapsed


def latency_run(port: int, args: argparse.Namespace, next_body: Next = fresh) -> dict[str, float]:
    seq = asyncio.run(sequential(port, args.sequential, next_body))
    rated = asyncio.run(offered(port, args.rate, args.seconds, next_body))
    return {
        "seq_p50": float(np.percentile(seq, 50)),
        "seq_p99": float(np.percentile(seq, 99)),
        "rate_p50": float(np.percentile(rated, 50)),
        "rate_p99": float(np.percentile(rated, 99)),
        "max_rps": asyncio.run(saturate(port, args.clients, args.seconds, next_body)),
    }


Command = Callable[[int], list[str]]
"""A server's command line, given its port."""


@contextmanager
def servers(commands: dict[str, Command], env: dict[str, str]) -> Iterator[dict[str, int]]:
    """Server processes started together (their start-ups overlap), each port once its
    ``/healthz`` answers and it is warmed up; all stopped with SIGTERM."""
    with ExitStack() as stack:
        started = {}
        for name, command in commands.items():
            port = free_port()
            proc = subprocess.Popen(command(port), env=env, stderr=subprocess.PIPE)
            stack.callback(_stop, proc)
            started[name] = (proc, port)
        for proc, port in started.values():
            _wait_ready(proc, port)
            asyncio.run(sequential(port, 200))  # warm-up: first batches, connections, caches
        yield {name: port for name, (_, port) in started.items()}


def _wait_ready(proc: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not answers(port):
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited: {proc.communicate()[1].decode()}")
        assert time.monotonic() < deadline, f"{proc.args!r} did not start"
        time.sleep(0.2)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.communicate(timeout=30)


def answers(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
    except OSError:
        return False
    return True


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def measure(args: argparse.Namespace, tmp: Path) -> list[Figure]:
    valkey = EmbeddedValkey(tmp / "valkey")
    info = valkey.ensure()
    try:
        url = f"redis://:{info.password}@{info.host}:{info.port}/0"
        client = redis.Redis(host=info.host, port=info.port, password=info.password)
        settings = Settings(valkey_url=url, data_dir=str(tmp / "data"))
        say = Progress("api")
        DemoRun(settings, client, workers=1, tps=1, duration=1, bad_ratio=0, seed=0).ensure_model()
        say("model trained and activated")
        prepare_traffic(settings, client, requests_needed(args))
        say(f"{WARM_DAYS} days of history through the features, {len(_bodies):,} requests ready")
        env = {
            **os.environ,
            "FRAUDSTREAM_VALKEY_URL": url,
            "FRAUDSTREAM_DATA_DIR": settings.data_dir,
            "FRAUDSTREAM_API_KEY": KEY,
        }
        return _figures(args, env)
    finally:
        valkey.stop()


def _figures(args: argparse.Namespace, env: dict[str, str]) -> list[Figure]:
    serve = [sys.executable, "-m", "fraudstream", "serve", "--port"]
    commands: dict[str, Command] = {
        "ours": lambda port: [*serve, str(port)],
        "many": lambda port: [*serve, str(port), "--workers", "2"],
        "echo": lambda port: [sys.executable, str(HERE / "echo_app.py"), str(port)],
    }
    ours: list[dict[str, float]] = []
    echo: list[dict[str, float]] = []
    many: list[float] = []
    say = Progress("api")
    with servers(commands, env) as ports:
        say("servers started")
        for r in range(args.repeat):  # side by side: each repeat measures every server
            ours.append(latency_run(ports["ours"], args))
            many.append(asyncio.run(saturate(ports["many"], args.clients, args.seconds)))
            echo.append(latency_run(ports["echo"], args, same))
            say(f"repeat {r + 1}: serve, serve --workers 2, echo app")
    seq, rate = f"{args.sequential:,} one after another", f"{args.rate:g} req/s offered"
    rows = [
        ("seq_p50", f"latency p50, {seq}", Target("<", 2.0)),
        ("seq_p99", f"latency p99, {seq}", Target("<", 5.0)),
        ("rate_p50", f"latency p50, {rate}", None),
        ("rate_p99", f"latency p99, {rate}", Target("<", 10.0)),
    ]
    figures = []
    for key, what, target in rows:
        figures.append(Figure(f"API /v1/score {what}", "ms", [r[key] for r in ours], target))
        figures.append(Figure(f"  echo app, {what}", "ms", [r[key] for r in echo]))
    max_what = f"max throughput, {args.clients} connections"
    return [
        *figures,
        Figure(
            f"API /v1/score {max_what}", "req/s", [r["max_rps"] for r in ours], Target(">=", 2_000)
        ),  # fmt: skip
        Figure(f"  serve --workers 2, {max_what}", "req/s", many),
        Figure(f"  echo app, {max_what}", "req/s", [r["max_rps"] for r in echo]),
        Figure(
            "share of the decisions flagged (review or block)",
            "%",
            [100 * _answered["flagged"] / max(1, _answered["all"])],
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sequential", type=int, default=500)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        figures = measure(args, Path(tmp))
    report(figures, f"HTTP API, {args.repeat} repeats", args.json)


if __name__ == "__main__":
    main()
