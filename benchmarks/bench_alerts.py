"""Alert latency: from a decision appended to ``tx.decisions`` to its webhook received.

Run: ``python benchmarks/bench_alerts.py [--n 300] [--interval-ms 20] [--json]``. An
embedded Valkey, a SQLite store (WAL, ``synchronous=FULL``) holding the customers and
transactions the alerts join in, a local HTTP receiver (stdlib ``http.server`` in a thread,
checking each signature as a receiver would) and one `fraudstream.alerts.consumer
.AlertConsumer` in a thread. Blocks are appended one every ``--interval-ms``; a decision's
latency is the receiver's clock when the body arrived minus the clock just before the
XADD (one host, one clock). Each alert goes through the whole path: XREADGROUP, decode,
route, one store look-up, the delivery-log claim, the signed POST, the log update, XACK.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa

from fraudstream.alerts.consumer import AlertConsumer, AlertOptions
from fraudstream.alerts.retry import RetryPolicy
from fraudstream.alerts.routing import default_routes
from fraudstream.alerts.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from fraudstream.alerts.webhook import WebhookChannel
from fraudstream.schema import Decision, encode
from fraudstream.store import migrate
from fraudstream.store.engine import create_engine
from fraudstream.store.tables import customers, transactions
from fraudstream.stream.keys import PAYLOAD, StreamKeys
from fraudstream.valkey import EmbeddedValkey

KEYS = StreamKeys("bench", 16)
SECRET = "bench-secret"


class Arrivals:
    """Transaction id -> the time its webhook arrived."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.bad = 0
        self.changed = threading.Condition()

    def add(self, body: bytes, headers: Any) -> None:
        now = time.time()
        ok = verify_signature(
            SECRET, headers.get(TIMESTAMP_HEADER, ""), body, headers.get(SIGNATURE_HEADER, "")
        )
        with self.changed:
            self.bad += not ok
            self.at[json.loads(body)["transaction_id"]] = now
            self.changed.notify_all()

    def wait(self, count: int, timeout: float) -> None:
        with self.changed:
            if not self.changed.wait_for(lambda: len(self.at) >= count, timeout):
                raise TimeoutError(f"{len(self.at)} of {count} webhooks arrived")


@contextmanager
def receiver(arrivals: Arrivals) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            arrivals.add(body, self.headers)
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


def fill_store(engine: sa.Engine, n: int) -> None:
    migrate.upgrade(engine)
    now = datetime.now(UTC)
    with engine.begin() as connection:
        connection.execute(
            sa.insert(customers),
            [
                {"customer_id": f"c-{i}", "name": f"Customer {i}", "email": f"c{i}@example.com",
                 "phone": "+1 555 0100", "segment": "retail"}
                for i in range(n)
            ],
        )  # fmt: skip
        connection.execute(
            sa.insert(transactions),
            [
                {"transaction_id": f"tx-{i}", "timestamp": now, "customer_id": f"c-{i}",
                 "terminal_id": "t-1", "merchant_id": "m-1", "amount": 1000.0 + i,
                 "currency": "EUR", "channel": "ecommerce"}
                for i in range(n)
            ],
        )  # fmt: skip


def block(i: int) -> Decision:
    return Decision(
        transaction_id=f"tx-{i}",
        score=950,
        outcome="block",
        reasons=["amount_over_block_limit", "rule:ip_blocklist"],
        model_version="lgbm-1",
        rules_version="default-3",
        latency_ms=1.5,
        decided_at=datetime.now(UTC),
    )


def wait_for_group(client: redis.Redis, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.exists(KEYS.decisions) and client.xinfo_groups(KEYS.decisions):
            return
        time.sleep(0.01)
    raise TimeoutError("the alerts consumer did not start")


def measure(client: redis.Redis, engine: sa.Engine, n: int, interval_s: float) -> list[float]:
    arrivals = Arrivals()
    with receiver(arrivals) as url:
        consumer = AlertConsumer(
            client,
            engine,
            KEYS,
            default_routes({"webhook"}),
            {"webhook": WebhookChannel(url, SECRET)},
            policy=RetryPolicy(attempts=1),
            options=AlertOptions(block_ms=100, progress_s=1e9),
        )
        thread = threading.Thread(target=lambda: consumer.run(handle_signals=False))
        thread.start()
        try:
            wait_for_group(client)  # bootstrapped: migrations done, group created
            appended: dict[str, float] = {}
            for i in range(n):
                appended[f"tx-{i}"] = time.time()
                client.xadd(KEYS.decisions, {PAYLOAD: encode(block(i))})
                time.sleep(interval_s)
            arrivals.wait(n, timeout=60)
        finally:
            consumer.request_stop()
            thread.join(30)
    assert arrivals.bad == 0, f"{arrivals.bad} webhooks failed their signature check"
    return [(arrivals.at[tx] - t) * 1000 for tx, t in appended.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--interval-ms", type=float, default=20.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        server = EmbeddedValkey(tmp / "valkey")
        info = server.ensure()
        engine = create_engine(f"sqlite:///{tmp / 'store.db'}")
        try:
            client = redis.Redis(host=info.host, port=info.port, password=info.password)
            fill_store(engine, args.n)
            latencies = sorted(measure(client, engine, args.n, args.interval_ms / 1000))
        finally:
            engine.dispose()
            server.stop()
    figures = {
        "median_ms": statistics.median(latencies),
        "p95_ms": latencies[int(0.95 * (len(latencies) - 1))],
        "min_ms": latencies[0],
        "max_ms": latencies[-1],
    }
    if args.json:
        print(json.dumps({"n": args.n, "interval_ms": args.interval_ms, **figures}))
        return
    print(f"{args.n:,} blocks, one every {args.interval_ms:g} ms: decision appended -> webhook in")
    for key, value in figures.items():
        print(f"  {key:<10} {value:>8.1f}")


if __name__ == "__main__":
    main()
