"""Step-up over HTTP, against a real server: a score in the step-up band answers ``step_up``;
the buyer's code posted to ``/v1/challenges/{id}/verify`` finalises it; the final answer is
what a retried scoring request and ``/v1/decisions/{id}`` then give; every refusal has its
own status and names the field."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from apikit import KEY, call, get, post, sample_tx, start_server, stop_server
from fraudstream.api.keys import KeyStore
from fraudstream.challenges import SECRET_FILE, code_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("challenges")


@pytest.fixture(scope="module")
def server(data_dir: Path, valkey_url: str) -> Iterator[str]:
    redis.Redis.from_url(valkey_url).flushall()  # what earlier modules left (models)
    proc, base = start_server(valkey_url, data_dir, KEY, step_up_score="300")
    try:
        yield base
    finally:
        stop_server(proc)


def _code(data_dir: Path, tx: str) -> str:
    return code_for((data_dir / SECRET_FILE).read_text().strip().encode(), tx)


def _stepped_up(server: str, n: int) -> str:
    """Score transaction ``n`` in the step-up band (amount 150: score ~341)."""
    status, decision = post(server, "/v1/score", sample_tx(n, amount=150.0))
    assert status == 200 and decision["outcome"] == "step_up", decision
    return str(decision["transaction_id"])


def test_the_buyers_code_approves_and_the_final_answer_is_kept(server: str, data_dir: Path) -> None:
    tx = _stepped_up(server, 1)
    status, pending = get(server, f"/v1/challenges/{tx}")
    assert status == 200 and (pending["status"], pending["attempts_left"]) == ("pending", 3)
    status, answer = post(server, f"/v1/challenges/{tx}/verify", {"code": _code(data_dir, tx)})
    assert status == 200 and (answer["status"], answer["outcome"]) == ("passed", "approve")
    status, kept = get(server, f"/v1/decisions/{tx}")
    assert status == 200 and kept["outcome"] == "approve"
    assert kept["reasons"][-1] == "challenge:passed"
    retried = call(server, "POST", "/v1/score", sample_tx(1, amount=150.0))
    assert retried.body["outcome"] == "approve"
    assert retried.headers["Idempotent-Replay"] == "true"
    status, again = post(server, f"/v1/challenges/{tx}/verify", {"code": _code(data_dir, tx)})
    assert status == 409 and "passed already" in again["error"]["message"]


def test_three_wrong_codes_block(server: str, data_dir: Path) -> None:
    tx = _stepped_up(server, 2)
    wrong = str((int(_code(data_dir, tx)) + 1) % 10**6).zfill(6)
    answers = [post(server, f"/v1/challenges/{tx}/verify", {"code": wrong})[1] for _ in "abc"]
    assert [a["attempts_left"] for a in answers] == [2, 1, 0]
    assert (answers[-1]["status"], answers[-1]["outcome"]) == ("failed", "block")
    assert get(server, f"/v1/decisions/{tx}")[1]["outcome"] == "block"


def test_refusals_name_what_is_wrong(server: str, client: redis.Redis) -> None:
    tx = _stepped_up(server, 3)
    status, body = post(server, f"/v1/challenges/{tx}/verify", {"code": "12ab"})
    assert status == 422 and body["error"]["field"] == "code"
    assert get(server, f"/v1/challenges/{tx}")[1]["attempts_left"] == 3  # nothing spent
    status, body = post(server, "/v1/challenges/nope/verify", {"code": "123456"})
    assert status == 404 and body["error"]["field"] == "transaction_id"
    post(server, "/v1/score", sample_tx(4, amount=5.0))  # approved: no challenge
    status, body = post(server, "/v1/challenges/api-4/verify", {"code": "123456"})
    assert status == 409 and "decided approve" in body["error"]["message"]
    reader = KeyStore(client).create("auditor", ["read"])
    status, _ = post(server, f"/v1/challenges/{tx}/verify", {"code": "123456"}, key=reader)
    assert status == 403
    assert post(server, f"/v1/challenges/{tx}/verify", {"code": "123456"}, key=None)[0] == 401
