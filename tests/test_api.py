"""The HTTP API on a real server process (uvicorn), against the real Valkey."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from apikit import call, start_server
from fraudstream.features import default_feature_set
from fraudstream.rules import RuleSchema
from fraudstream.rules.registry import RuleRegistry

KEY = "test-key-123"


@pytest.fixture
def server(tmp_path: Path, valkey_url: str, client: redis.Redis) -> Iterator[str]:
    proc, base = start_server(valkey_url, tmp_path, KEY)
    try:
        yield base
    finally:
        proc.terminate()
        proc.communicate(timeout=15)


def _post(base: str, path: str, body: Any, key: str | None = KEY) -> tuple[int, Any]:
    return call(base, "POST", path, body, key)


def _tx(i: int, **changes: Any) -> dict[str, Any]:
    tx = {
        "transaction_id": f"api-{i}",
        "timestamp": datetime.now(UTC).isoformat(),
        "customer_id": f"c{i % 7}",
        "terminal_id": "t1",
        "merchant_id": "m1",
        "amount": 20.0 + i,
        "currency": "EUR",
        "channel": "ecommerce",
        "ip": "10.0.0.1",
    }
    tx.update(changes)
    return tx


def test_score_needs_the_key(server: str) -> None:
    status, body = _post(server, "/v1/score", _tx(0), key=None)
    assert status == 401 and body["error"]["field"] == "api_key"
    status, _ = _post(server, "/v1/score", _tx(0), key="wrong")
    assert status == 401


def test_score_returns_and_streams_the_decision(server: str, client: redis.Redis) -> None:
    status, decision = _post(server, "/v1/score", _tx(1, amount=300.0))
    assert status == 200
    assert decision["transaction_id"] == "api-1" and decision["outcome"] == "review"
    assert 0 <= decision["score"] <= 1000 and decision["latency_ms"] >= 0
    assert any(r.startswith("amount_over_review_limit") for r in decision["reasons"])
    streamed: Any = client.xrange("tx.decisions")
    assert [json.loads(f[b"d"])["transaction_id"] for _, f in streamed] == ["api-1"]


def test_bad_input_names_the_field(server: str) -> None:
    status, body = _post(server, "/v1/score", _tx(2, amount=-3))
    assert status == 422
    assert body["error"] == {"field": "amount", "message": "amount: must be > 0, got -3"}
    status, body = _post(server, "/v1/score", b"{nope")
    assert status == 422 and "not valid JSON" in body["error"]["message"]
    status, body = _post(server, "/v1/score", _tx(3, timestamp="2999-01-01T00:00:00+00:00"))
    assert status == 422 and body["error"]["field"] == "timestamp"


def test_concurrent_requests_are_all_answered(server: str, client: redis.Redis) -> None:
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda i: _post(server, "/v1/score", _tx(100 + i)), range(80)))
    assert all(status == 200 for status, _ in results)
    assert sorted(body["transaction_id"] for _, body in results) == sorted(
        f"api-{100 + i}" for i in range(80)
    )
    assert client.xlen("tx.decisions") == 80


def test_published_rule_applies_to_the_api_path(server: str, client: redis.Redis) -> None:
    schema = RuleSchema.build(default_feature_set().names)
    RuleRegistry(client, schema).publish(
        "rules:\n  - id: api_block\n    description: test\n    when: ip == '10.0.0.1'\n"
        "    outcome: block\n"
    )
    status, decision = _post(server, "/v1/score", _tx(5))
    assert status == 200 and decision["outcome"] == "block"
    assert "rule:api_block" in decision["reasons"]


def test_labels_are_queued_for_the_workers(server: str, client: redis.Redis) -> None:
    label = {
        "transaction_id": "api-1",
        "is_fraud": True,
        "source": "review",
        "reported_at": datetime.now(UTC).isoformat(),
        "terminal_id": "t1",
        "tx_timestamp": datetime.now(UTC).isoformat(),
    }
    status, body = _post(server, "/v1/labels", label)
    assert status == 202 and body == {"accepted": "api-1"}
    assert client.xlen("tx.labels") == 1
    status, body = _post(server, "/v1/labels", {**label, "reported_at": "yesterday"})
    assert status == 422 and body["error"]["field"] == "reported_at"


def test_a_key_is_generated_when_none_is_configured(
    tmp_path: Path, valkey_url: str, client: redis.Redis
) -> None:
    proc, base = start_server(valkey_url, tmp_path, None)
    try:
        key_file = tmp_path / "api.key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        key = key_file.read_text().strip()
        assert _post(base, "/v1/score", _tx(9), key=None)[0] == 401
        assert _post(base, "/v1/score", _tx(9), key=key)[0] == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=15)


def _call(base: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    return call(base, method, path, body, KEY)


def test_lists_managed_over_the_api_feed_the_default_rules(server: str) -> None:
    status, body = _call(
        server,
        "POST",
        "/v1/lists/ip_blocklist",
        {"values": ["203.0.113.0/24"], "kind": "ip", "ttl": 3600},
    )
    assert status == 200 and body == {"added": 1, "size": 1}
    status, decision = _post(server, "/v1/score", _tx(20, ip="203.0.113.9"))
    assert status == 200 and decision["outcome"] == "block"
    assert "rule:ip_blocklist" in decision["reasons"]
    status, listed = _call(server, "GET", "/v1/lists/ip_blocklist")
    assert status == 200 and listed["kind"] == "ip"
    assert [e["value"] for e in listed["entries"]] == ["203.0.113.0/24"]
    assert listed["entries"][0]["expires_at"] is not None
    status, body = _call(server, "DELETE", "/v1/lists/ip_blocklist", {"values": ["203.0.113.0/24"]})
    assert status == 200 and body == {"removed": 1}
    status, decision = _post(server, "/v1/score", _tx(21, ip="203.0.113.9"))
    assert "rule:ip_blocklist" not in decision["reasons"]
    status, body = _call(server, "POST", "/v1/lists/ip_blocklist", {"values": "1.2.3.4"})
    assert status == 422 and body["error"]["field"] == "values"
    assert _call(server, "GET", "/v1/lists/nope")[0] == 404
