"""Traffic scored by the HTTP API counts in the drift figures, as the workers' does."""

from __future__ import annotations

from pathlib import Path

import msgspec
import redis

from apikit import post, start_server, stop_server
from fraudstream.drift.fleet import windows_key
from fraudstream.generate import GenerateOptions, encode_rows, select
from fraudstream.models import ModelRegistry, TrainedModel
from fraudstream.schema import decode_transaction
from fraudstream.simulate import SimulationResult
from fraudstream.stream.keys import StreamKeys

KEY = "k" * 32


def test_api_scored_traffic_is_in_the_drift_window(
    tmp_path: Path,
    valkey_url: str,
    client: redis.Redis,
    history: SimulationResult,
    trained: TrainedModel,
) -> None:
    version = ModelRegistry(client, KEY.encode()).save(trained, activate=True)
    picked = select(history.transactions, 200, GenerateOptions(run_id="api"))
    rows = encode_rows(picked, history.labels, StreamKeys("tx", 16), False, 500)
    items = [msgspec.json.decode(payload) for _, _, payload in rows]
    assert all(decode_transaction(payload) for _, _, payload in rows)
    server, base = start_server(
        valkey_url, tmp_path / "data", "test-key-123", model_registry_key=KEY
    )
    try:
        status, body = post(base, "/v1/score/batch", {"transactions": items})
    finally:
        stop_server(server)
    assert status == 200, body
    published: dict[bytes, bytes] = client.hgetall(windows_key("tx"))  # type: ignore[assignment]
    assert [c.decode() for c in published if c.decode().startswith("api-")], published.keys()
    [window] = [msgspec.json.decode(v) for c, v in published.items() if c.startswith(b"api-")]
    assert window["model_version"] == version and window["rows"] == len(items)
