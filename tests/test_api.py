"""The HTTP API on a real server process (uvicorn), against the real Valkey."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from apikit import KEY, call, get, post, sample_tx, start_server, stop_server
from fraudstream.features import default_feature_set
from fraudstream.rules import RuleSchema
from fraudstream.rules.registry import RuleRegistry
from fraudstream.valkey import EmbeddedValkey


@pytest.fixture
def server(tmp_path: Path, valkey_url: str, client: redis.Redis) -> Iterator[str]:
    proc, base = start_server(valkey_url, tmp_path, KEY)
    try:
        yield base
    finally:
        stop_server(proc)


def test_score_needs_the_key(server: str) -> None:
    status, body = post(server, "/v1/score", sample_tx(0), key=None)
    assert status == 401 and body["error"]["field"] == "api_key"
    status, _ = post(server, "/v1/score", sample_tx(0), key="wrong")
    assert status == 401


def test_score_returns_and_streams_the_decision(server: str, client: redis.Redis) -> None:
    status, decision = post(server, "/v1/score", sample_tx(1, amount=300.0))
    assert status == 200
    assert decision["transaction_id"] == "api-1" and decision["outcome"] == "review"
    assert 0 <= decision["score"] <= 1000 and decision["latency_ms"] >= 0
    assert any(r.startswith("amount_over_review_limit") for r in decision["reasons"])
    streamed: Any = client.xrange("tx.decisions")
    assert [json.loads(f[b"d"])["transaction_id"] for _, f in streamed] == ["api-1"]


def test_bad_input_names_the_field(server: str) -> None:
    status, body = post(server, "/v1/score", sample_tx(2, amount=-3))
    assert status == 422
    assert body["error"] == {"field": "amount", "message": "amount: must be >= 0, got -3"}
    status, body = post(server, "/v1/score", b"{nope")
    assert status == 422 and "not valid JSON" in body["error"]["message"]
    status, body = post(server, "/v1/score", sample_tx(3, timestamp="2999-01-01T00:00:00+00:00"))
    assert status == 422 and body["error"]["field"] == "timestamp"


def test_concurrent_requests_are_all_answered(server: str, client: redis.Redis) -> None:
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda i: post(server, "/v1/score", sample_tx(100 + i)), range(80)))
    assert all(status == 200 for status, _ in results)
    assert sorted(body["transaction_id"] for _, body in results) == sorted(
        f"api-{100 + i}" for i in range(80)
    )
    assert client.xlen("tx.decisions") == 80


def test_an_unreadable_customer_state_fails_no_request(server: str, client: redis.Redis) -> None:
    client.set("fs:{c:c3}", b"\x07" * 17)  # c3: one of the 8 customers of the batch
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: post(server, "/v1/score", sample_tx(200 + i)), range(8)))
    assert [status for status, _ in results] == [200] * 8
    assert len(client.get("fs:{c:c3}") or b"") > 17  # its state started afresh


def test_published_rule_applies_to_the_api_path(server: str, client: redis.Redis) -> None:
    schema = RuleSchema.build(default_feature_set().names)
    RuleRegistry(client, schema).publish(
        "rules:\n  - id: api_block\n    description: test\n    when: ip == '10.0.0.1'\n"
        "    outcome: block\n"
    )
    status, decision = post(server, "/v1/score", sample_tx(5))
    assert status == 200 and decision["outcome"] == "block"
    assert "rule:api_block" in decision["reasons"]


def test_labels_are_queued_for_the_workers(server: str, client: redis.Redis) -> None:
    now = datetime.now(UTC).isoformat()
    label = {
        "transaction_id": "api-1",
        "is_fraud": True,
        "source": "review",
        "reported_at": now,
        "terminal_id": "t1",
        "tx_timestamp": now,
    }
    status, body = post(server, "/v1/labels", label)
    assert status == 202 and body == {"accepted": "api-1"}
    assert client.xlen("tx.labels") == 1
    status, body = post(server, "/v1/labels", {**label, "reported_at": "yesterday"})
    assert status == 422 and body["error"]["field"] == "reported_at"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"tx_timestamp": "9999-01-01T00:00:00Z", "reported_at": "9999-01-02T00:00:00Z"}, None),
        ({"terminal_id": ""}, "terminal_id"),
        ({"terminal_id": None}, "terminal_id"),
        ({"tx_timestamp": "2020-01-02T00:00:00Z", "reported_at": "2020-01-01T00:00:00Z"}, None),
    ],
)
def test_a_label_the_workers_would_refuse_is_refused_here(
    server: str, client: redis.Redis, change: dict[str, Any], field: str | None
) -> None:
    label = {
        "transaction_id": "api-1",
        "is_fraud": True,
        "reported_at": "2020-01-01T00:00:00Z",
        "terminal_id": "t1",
        "tx_timestamp": "2020-01-01T00:00:00Z",
        **change,
    }
    status, body = post(server, "/v1/labels", label)
    assert status == 422, body
    assert body["error"]["field"] in ({field} if field else {"reported_at", "tx_timestamp"})
    assert client.xlen("tx.labels") == 0


def test_amount_bounds_on_the_api(server: str) -> None:
    status, decision = post(server, "/v1/score", sample_tx(40, amount=0))
    assert status == 200 and decision["outcome"] == "approve"
    status, body = post(server, "/v1/score", sample_tx(41, amount=2e9))
    assert status == 422 and body["error"] == {
        "field": "amount",
        "message": "amount: must be at most 1e+09 (max_amount), got 2e+09",
    }
    status, body = post(server, "/v1/score", sample_tx(42, amount=1e308))
    assert status == 422 and body["error"]["field"] == "amount"


def test_a_key_is_generated_when_none_is_configured(
    tmp_path: Path, valkey_url: str, client: redis.Redis
) -> None:
    proc, base = start_server(valkey_url, tmp_path, None)
    try:
        key_file = tmp_path / "api.key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        key = key_file.read_text().strip()
        assert post(base, "/v1/score", sample_tx(9), key=None)[0] == 401
        assert post(base, "/v1/score", sample_tx(9), key=key)[0] == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=15)


def _call(base: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    reply = call(base, method, path, body)
    return reply.status, reply.body


def test_lists_managed_over_the_api_feed_the_default_rules(server: str) -> None:
    status, body = _call(
        server,
        "POST",
        "/v1/lists/ip_blocklist",
        {"values": ["203.0.113.0/24"], "kind": "ip", "ttl": 3600},
    )
    assert status == 200 and body == {"added": 1, "size": 1}
    status, decision = post(server, "/v1/score", sample_tx(20, ip="203.0.113.9"))
    assert status == 200 and decision["outcome"] == "block"
    assert "rule:ip_blocklist" in decision["reasons"]
    status, listed = _call(server, "GET", "/v1/lists/ip_blocklist")
    assert status == 200 and listed["kind"] == "ip"
    assert [e["value"] for e in listed["entries"]] == ["203.0.113.0/24"]
    assert listed["entries"][0]["expires_at"] is not None
    status, body = _call(
        server, "POST", "/v1/lists/ip_blocklist/remove", {"values": ["203.0.113.0/24"]}
    )
    assert status == 200 and body == {"removed": 1}
    status, decision = post(server, "/v1/score", sample_tx(21, ip="203.0.113.9"))
    assert "rule:ip_blocklist" not in decision["reasons"]
    status, body = _call(server, "POST", "/v1/lists/ip_blocklist", {"values": "1.2.3.4"})
    assert status == 422 and body["error"]["field"] == "values"
    assert _call(server, "GET", "/v1/lists/nope")[0] == 404
    assert _call(server, "DELETE", "/v1/lists/ip_blocklist")[0] == 204
    assert _call(server, "GET", "/v1/lists/ip_blocklist")[0] == 404
    assert _call(server, "DELETE", "/v1/lists/ip_blocklist")[0] == 404


def test_a_frozen_valkey_fails_requests_with_503_and_never_health(tmp_path: Path) -> None:
    """SIGSTOP the API's Valkey: requests that need it fail after the configured timeout,
    ``/healthz`` still answers at once, and the API recovers when Valkey does."""
    valkey = EmbeddedValkey(tmp_path / "valkey")
    info = valkey.ensure()
    url = f"redis://:{info.password}@{info.host}:{info.port}/0"
    proc, base = start_server(url, tmp_path, KEY, api_valkey_timeout_s="1")
    try:
        assert post(base, "/v1/score", sample_tx(1))[0] == 200
        os.kill(info.pid, signal.SIGSTOP)
        try:
            with ThreadPoolExecutor(max_workers=3) as pool:
                scored = pool.submit(post, base, "/v1/score", sample_tx(2))
                listed = pool.submit(get, base, "/v1/lists/ip_blocklist")
                health = pool.submit(get, base, "/healthz", None)
                status, body = health.result(timeout=5)
                assert status == 200 and body["status"] == "ok"
                assert not scored.done()  # still waiting on the frozen Valkey
                status, body = scored.result(timeout=30)
                assert status == 503 and "valkey unavailable" in body["error"]["message"]
                status, body = listed.result(timeout=30)
                assert status == 503 and "Timeout" in body["error"]["message"]
        finally:
            os.kill(info.pid, signal.SIGCONT)
        deadline = time.monotonic() + 30
        while (status := post(base, "/v1/score", sample_tx(3))[0]) != 200:
            assert status == 503 and time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.communicate(timeout=15)
        valkey.stop()
