"""The HTTP API's contract: scoped keys, idempotent scoring, batches, ingest, limits,
readiness, the OpenAPI document and the docs page behind a browser login.

One server process for the module (its start compiles the scorer); every test still gets a
clean keyspace (`client`), and keys are created per test under their own names.
"""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from apikit import (
    KEY,
    call,
    feature_state,
    get,
    post,
    post_form,
    sample_tx,
    start_server,
    stop_server,
)
from clikit import run_cli
from fraudstream.api.keys import KeyStore
from fraudstream.config import Settings
from fraudstream.models.jobs import RetrainJobs, RetrainOptions
from fraudstream.scoring import AmountPolicy, Scorer
from fraudstream.stream.keys import PAYLOAD, StreamKeys
from fraudstream.stream.worker import Worker, WorkerOptions

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, valkey_url: str) -> Iterator[str]:
    redis.Redis.from_url(valkey_url).flushall()  # what earlier modules left (models)
    proc, base = start_server(valkey_url, tmp_path_factory.mktemp("api"), KEY)
    try:
        yield base
    finally:
        stop_server(proc)


# --- keys and scopes -------------------------------------------------------------------------


def test_scopes_decide_what_a_key_may_do(server: str, client: redis.Redis) -> None:
    store = KeyStore(client)
    scorer, reader = store.create("checkout", ["score"]), store.create("dash", ["read"])
    assert post(server, "/v1/score", sample_tx(1), key=scorer)[0] == 200
    status, body = post(server, "/v1/labels", {"transaction_id": "x"}, key=scorer)
    assert status == 403 and body["error"]["field"] == "api_key"
    assert "lacks the 'labels' scope" in body["error"]["message"]
    assert get(server, "/v1/decisions/api-1", key=reader)[0] == 200
    assert get(server, "/v1/decisions/api-1", key=scorer)[0] == 403
    assert post(server, "/v1/score", sample_tx(2), key=reader)[0] == 403
    assert call(server, "DELETE", "/v1/lists/x", key=reader).status == 403
    assert get(server, "/openapi.json", key=None)[0] == 401
    assert get(server, "/v1/decisions/api-1", key="fsk_not-a-key")[0] == 401
    assert get(server, "/healthz", key=None)[0] == 200
    # only hashes are stored: nothing in Valkey lets anyone call the API
    everything: Any = client.hgetall("api:keys")
    stored = b"".join(k + v for k, v in everything.items())
    assert scorer.encode() not in stored and reader.encode() not in stored


def test_a_bearer_key_works_and_ambiguous_credentials_are_refused(server: str) -> None:
    def status(headers: dict[str, str]) -> int:
        return call(server, "GET", "/openapi.json", key=None, headers=headers).status

    assert status({"Authorization": f"Bearer {KEY}"}) == 200
    assert status({"Authorization": f"Bearer {KEY}", "X-API-Key": KEY}) == 200  # the same key
    # a key that works does not carry a malformed or a second, different credential
    assert status({"X-API-Key": KEY, "Authorization": "Basic dXNlcjpwYXNz"}) == 401
    assert status({"X-API-Key": KEY, "Authorization": "Bearer fsk_other"}) == 401
    reply = call(server, "GET", "/openapi.json", key=KEY, headers={"Authorization": "junk"})
    assert reply.status == 401 and "Authorization" in reply.body["error"]["message"]


def test_a_revoked_key_is_refused_within_seconds(server: str, client: redis.Redis) -> None:
    secret = KeyStore(client).create("temp", ["score"])
    assert post(server, "/v1/score", sample_tx(3), key=secret)[0] == 200
    assert KeyStore(client).revoke("temp") is True
    deadline = time.monotonic() + 15
    while (status := post(server, "/v1/score", sample_tx(4), key=secret)[0]) != 401:
        assert status == 200 and time.monotonic() < deadline
        time.sleep(0.5)


def test_keys_cli_prints_the_key_once(valkey_url: str, client: redis.Redis) -> None:
    created = run_cli(
        "keys", "create", "--name", "ops", "--scope", "read", "--scope", "score", "--json",
        valkey_url=valkey_url,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    secret = json.loads(created.stdout)["key"]
    assert KeyStore(client).lookup(secret.encode()) is not None
    listed = run_cli("keys", "list", "--json", valkey_url=valkey_url)
    assert json.loads(listed.stdout) == [
        {
            "name": "ops",
            "scopes": ["read", "score"],
            "created_at": pytest.approx(time.time(), abs=60),
        }
    ]
    assert secret not in listed.stdout
    bad = run_cli("keys", "create", "--name", "x", "--scope", "root", valkey_url=valkey_url)
    assert bad.returncode == 2 and "scope: unknown scope 'root'" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert run_cli("keys", "revoke", "ops", valkey_url=valkey_url).returncode == 0
    gone = run_cli("keys", "revoke", "ops", valkey_url=valkey_url)
    assert gone.returncode == 2 and "no key named 'ops'" in gone.stderr


# --- idempotent scoring ----------------------------------------------------------------------


def test_a_retried_transaction_gets_the_same_decision_and_changes_nothing(
    server: str, client: redis.Redis
) -> None:
    first = call(server, "POST", "/v1/score", sample_tx(10, amount=300.0))
    assert first.status == 200 and "Idempotent-Replay" not in first.headers
    state = feature_state(client)
    assert state  # the first request stored the customer's features
    again = call(server, "POST", "/v1/score", sample_tx(10, amount=5.0))
    assert again.status == 200 and again.headers["Idempotent-Replay"] == "true"
    assert again.body == first.body
    assert feature_state(client) == state
    assert get(server, "/v1/decisions/api-10")[1] == first.body
    streamed: Any = client.xrange("tx.decisions")
    ids = [json.loads(fields[PAYLOAD])["transaction_id"] for _, fields in streamed]
    assert ids == ["api-10"]
    assert client.ttl("tx:decided:api-10") > 6 * 86_400
    status, body = get(server, "/v1/decisions/never-seen")
    assert status == 404 and body["error"]["field"] == "transaction_id"


def test_a_decision_is_kept_only_if_it_is_streamed(server: str, client: redis.Redis) -> None:
    """Keeping a decision (what a retry gets back) and streaming it (what the store, the
    alerts and the analysts see) happen together: when the stream refuses the entry, nothing
    is kept, the request fails, and its retry is decided and streamed, not replayed as a
    decision nobody downstream ever received."""
    client.set("tx.decisions", "not a stream")  # XADD fails: WRONGTYPE
    failed = call(server, "POST", "/v1/score", sample_tx(50, amount=300.0))
    assert failed.status >= 500
    assert client.get("tx:decided:api-50") is None
    client.delete("tx.decisions")
    retried = call(server, "POST", "/v1/score", sample_tx(50, amount=300.0))
    assert retried.status == 200 and "Idempotent-Replay" not in retried.headers
    streamed: Any = client.xrange("tx.decisions")
    assert [json.loads(f[PAYLOAD])["transaction_id"] for _, f in streamed] == ["api-50"]


def test_a_transaction_decided_by_a_worker_is_read_and_replayed(
    server: str, client: redis.Redis
) -> None:
    assert post(server, "/v1/transactions", sample_tx(40, amount=300.0))[0] == 202
    policy = Scorer(AmountPolicy.from_settings(Settings()))
    worker = Worker(client, StreamKeys("tx", 16), policy, WorkerOptions(block_ms=50))
    assert worker.run(burst=True, handle_signals=False).processed == 1
    streamed: Any = client.xrange("tx.decisions")
    decided = json.loads(streamed[0][1][PAYLOAD])
    assert get(server, "/v1/decisions/api-40") == (200, decided)
    again = call(server, "POST", "/v1/score", sample_tx(40, amount=5.0))
    assert again.status == 200 and again.headers["Idempotent-Replay"] == "true"
    assert again.body == decided
    assert client.xlen("tx.decisions") == 1


def test_batch_answers_in_order_with_per_item_errors(server: str, client: redis.Redis) -> None:
    items = [sample_tx(20), sample_tx(21, amount=-1), sample_tx(22), sample_tx(20), {"x": 1}]
    status, body = post(server, "/v1/score/batch", {"transactions": items})
    assert status == 200
    results = body["results"]
    assert [r.get("decision", {}).get("transaction_id") for r in results] == [
        "api-20", None, "api-22", "api-20", None
    ]  # fmt: skip
    assert results[1]["error"] == {"field": "amount", "message": "amount: must be >= 0, got -1"}
    assert results[4]["error"] == {
        "field": "transaction_id",
        "message": "transaction_id: required field is missing",
    }
    assert results[3]["replay"] is True and results[3]["decision"] == results[0]["decision"]
    assert "replay" not in results[0] or results[0]["replay"] is False
    too_many = {"transactions": [sample_tx(i) for i in range(1001)]}
    status, body = post(server, "/v1/score/batch", too_many)
    assert status == 422 and body["error"]["field"] == "transactions"


def test_transactions_are_queued_for_the_workers(server: str, client: redis.Redis) -> None:
    status, body = post(server, "/v1/transactions", sample_tx(30))
    assert status == 202 and body == {"accepted": ["api-30"], "rejected": []}
    batch = {"transactions": [sample_tx(31), sample_tx(32, ip="999.1.1.1")]}
    status, body = post(server, "/v1/transactions", batch)
    assert status == 202 and body["accepted"] == ["api-31"]
    assert body["rejected"] == [
        {
            "index": 1,
            "error": {"field": "ip", "message": "ip: not an IPv4 or IPv6 address: '999.1.1.1'"},
        }
    ]
    queued = sum(client.xlen(f"tx.in.{p}") for p in range(16))
    assert queued == 2
    status, body = post(server, "/v1/transactions", sample_tx(33, amount=-5))
    assert status == 422 and body["error"]["field"] == "amount"
    assert body["error"]["message"].startswith("amount: must be")  # the field named once


# --- bad input and limits --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [({"ip": "999.1.1.1"}, "ip"), ({"ip": "10.0.0.0/8"}, "ip"), ({"amount": 1e308}, "amount")],
)
def test_invalid_values_are_named(server: str, change: dict[str, Any], field: str) -> None:
    status, body = post(server, "/v1/score", sample_tx(40, **change))
    assert status == 422 and body["error"]["field"] == field


def test_a_large_body_is_refused_before_it_is_read(server: str) -> None:
    url = urlsplit(server)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    conn.putrequest("POST", "/v1/score")
    conn.putheader("X-API-Key", KEY)
    conn.putheader("Content-Length", str(50_000_000))  # over the 4 MiB default
    conn.endheaders()  # and not one byte of the body: the answer comes all the same
    response = conn.getresponse()
    assert response.status == 413 and json.loads(response.read())["error"]["field"] == "body"
    conn.close()
    # chunked, without a Content-Length: refused once the bytes received pass the limit. One
    # byte over it, so that the server has read all that was sent when it answers and closes
    # (bytes left unread would turn its close into a reset that can eat the answer).
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    chunks = [b"x" * 1_048_576] * 4 + [b"x"]
    try:
        conn.request("POST", "/v1/score", body=iter(chunks), headers={"X-API-Key": KEY})
    except BrokenPipeError:
        pass  # the server answered and closed while the last chunk was on its way
    response = conn.getresponse()
    assert response.status == 413 and json.loads(response.read())["error"]["field"] == "body"
    conn.close()


# --- readiness, the document, the docs page ----------------------------------------------------


def test_readyz_reports_versions_without_a_key(server: str) -> None:
    status, body = get(server, "/readyz", key=None)
    assert status == 200 and body["status"] == "ready" and body["valkey"] == "ok"
    assert body["model_version"] == "none" and body["rules_version"]


def test_openapi_document_is_generated_from_the_structs(server: str) -> None:
    status, doc = get(server, "/openapi.json")
    assert status == 200 and doc["openapi"] == "3.1.0"
    assert set(doc["paths"]) >= {"/v1/score", "/v1/score/batch", "/v1/transactions"}
    schemas = doc["components"]["schemas"]
    assert schemas["Transaction"]["required"] == [
        "transaction_id", "timestamp", "customer_id", "terminal_id", "merchant_id", "amount",
        "currency", "channel",
    ]  # fmt: skip
    assert schemas["Decision"]["properties"]["score"] == {
        "type": "integer",
        "minimum": 0,
        "maximum": 1000,
    }
    score = doc["paths"]["/v1/score"]["post"]
    assert "score" in score["description"] and set(score["responses"]) >= {"200", "401", "413"}
    assert "security" not in doc["paths"]["/healthz"]["get"]


def test_docs_page_behind_a_browser_login(server: str) -> None:
    assert call(server, "GET", "/docs", key=None).status == 401
    login = call(server, "GET", "/login", key=None)
    assert login.status == 200 and b'name="api_key"' in login.raw
    wrong, page_text = post_form(server, "/login", "api_key=nope&next=/docs")
    assert wrong.status == 401 and b"not valid" in page_text
    signed, _ = post_form(server, "/login", f"api_key={KEY}&next=//evil.example")
    cookie = signed.getheader("set-cookie") or ""
    assert signed.status == 303 and signed.getheader("location") == "/docs"
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    session = cookie.split(";", 1)[0]
    page = call(server, "GET", "/docs", key=None, headers={"Cookie": session})
    assert page.status == 200 and b"/docs/assets/swagger-ui-bundle.js" in page.raw
    js = call(
        server, "GET", "/docs/assets/swagger-ui-bundle.js", key=None, headers={"Cookie": session}
    )
    assert js.status == 200 and js.headers["content-type"].startswith("text/javascript")
    assert len(js.raw) > 100_000
    doc = call(server, "GET", "/openapi.json", key=None, headers={"Cookie": session})
    assert doc.status == 200
    # a session authenticates reads only: no cross-site form can change anything
    forged = call(server, "POST", "/v1/score", sample_tx(50), key=None, headers={"Cookie": session})
    assert forged.status == 401
    post_form(server, "/logout", "", cookie=session)
    after = call(server, "GET", "/openapi.json", key=None, headers={"Cookie": session})
    assert after.status == 401


# --- fuzzing -----------------------------------------------------------------------------------


def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(
    server: str, tmp_path: Path, client: redis.Redis
) -> None:
    """Bounded examples per operation against the live server with the admin key.

    A retrain holds the one retrain slot throughout (as one started through another server
    process would): fuzzed ``POST /v1/models/retrain`` calls get their 422 or 409, and none
    starts a real retrain."""
    running = RetrainJobs(client).open(RetrainOptions())
    cli = shutil.which("schemathesis", path=str(Path(__import__("sys").executable).parent))
    assert cli is not None, "schemathesis is a dev dependency"
    result = subprocess.run(
        [
            cli, "run", f"{server}/openapi.json", "--header", f"X-API-Key: {KEY}",
            "--max-examples", "15", "--checks", "all", "--request-timeout", "20",
            "--exclude-checks", "positive_data_acceptance",
            "--report-dir", str(tmp_path), "--no-color",
        ],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,  # its cache stays there
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "POST /v1/models/retrain" in result.stdout  # fuzzed, not left out
    assert RetrainJobs(client).get(running.job_id).state == "queued"  # and never replaced
