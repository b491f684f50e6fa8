"""What a SIGKILL of the embedded Valkey loses: acknowledged writes against what the AOF
gives back after a restart on the same data dir.

Run: ``python benchmarks/valkey_kill.py [--rounds 3] [--seconds 3] [--json]``. A writer
pipelines XADDs (100 a round trip) and counts those acknowledged; the server is killed with
SIGKILL while it writes, started again (`EmbeddedValkey.ensure`), and the stream's length
compared with the count. With ``appendfsync everysec`` each write reaches the kernel before
its reply, so a killed *process* should lose none; what a *machine* failure loses (the
fsync window, up to ~1 s of writes) this cannot show.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import redis

from fraudstream.valkey import EmbeddedValkey, alive


def one_round(folder: Path, seconds: float) -> dict[str, int]:
    server = EmbeddedValkey(folder)
    info = server.ensure()
    client = redis.Redis(host=info.host, port=info.port, password=info.password)
    acked = 0

    def write() -> None:
        nonlocal acked
        try:
            while True:
                pipe = client.pipeline(transaction=False)
                for _ in range(100):
                    pipe.xadd("s", {"d": b"x" * 200})
                pipe.execute()
                acked += 100
        except redis.ConnectionError:
            return

    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(seconds)
    os.kill(info.pid, signal.SIGKILL)
    writer.join()
    while alive(info.pid):
        time.sleep(0.01)
    info = server.ensure()
    stored = int(redis.Redis(host=info.host, port=info.port, password=info.password).xlen("s"))
    server.stop()
    lost, in_flight = max(acked - stored, 0), max(stored - acked, 0)
    return {"acknowledged": acked, "stored": stored, "lost": lost, "in_flight": in_flight}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rounds = [one_round(Path(tmp) / str(i), args.seconds) for i in range(args.rounds)]
    if args.json:
        print(json.dumps({"rounds": rounds}))
        return
    for r in rounds:
        print(
            f"{r['acknowledged']:,} acknowledged, {r['stored']:,} stored, {r['lost']:,} lost "
            f"({r['in_flight']:,} in flight at the kill stored without their reply)"
        )


if __name__ == "__main__":
    main()
