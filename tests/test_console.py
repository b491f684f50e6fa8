"""The console's server side: the rolling window, the stream follower on a real Valkey, and
the routes (login redirect, scopes, CSRF on the session's writes, the drill-down, the event
stream) on a real server."""

from __future__ import annotations

import json
import random
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import redis
import sqlalchemy as sa
from playwright.sync_api import Page, expect, sync_playwright

from apikit import KEY, call, get, post_form, serving, start_server
from consolekit import STREAM, Traffic, backfill, entry, store_flagged
from driftkit import made_reference, window
from fraudstream.api.keys import KeyStore
from fraudstream.api.live import Follower, LabelFollower, LiveDecision, Window
from fraudstream.api.serving import GRACE_S
from fraudstream.api.session import csrf_token
from fraudstream.drift.fleet import publish
from fraudstream.schema import Decision, Label, encode
from fraudstream.store import tables
from fraudstream.store.challenges import open_challenges
from fraudstream.store.write import store_decisions
from fraudstream.stream.keys import PAYLOAD
from storekit import migrated_store

T = 1_900_000_000  # a fixed second (epoch)
AT = datetime(2030, 3, 17, 17, 46, 40, tzinfo=UTC)


def _decision(n: int, outcome: str, score: int, latency_ms: float) -> LiveDecision:
    reasons = ["r", "rule:velocity"] + (["rule:new_device"] if outcome == "step_up" else [])
    return LiveDecision(f"t{n}", score, outcome, reasons, latency_ms, "2030-03-17T17:46:40Z")


def test_window_counts_each_second_any_outcome_and_keeps_the_latest_flagged() -> None:
    window = Window(window_s=4, recent=2)
    for n, (outcome, score, ms, at) in enumerate(
        [
            ("approve", 10, 1.0, T - 2),
            ("block", 990, 2.0, T - 2),
            ("step_up", 640, 3.0, T - 1),
            ("review", 1000, 40.0, T - 1),
            ("approve", 0, 9.0, T),  # the current second: not complete, not shown
        ]
    ):
        window.add(at * 1000 + 500, _decision(n, outcome, score, ms), None)
    snap = window.snapshot(T + 0.5, ("m1", "r1"))
    assert snap.seconds == [T - 4, T - 3, T - 2, T - 1]
    assert snap.tps == [0, 0, 2, 2]
    assert snap.totals == {"approve": 1, "block": 1, "review": 1, "step_up": 1}
    assert snap.outcomes["step_up"] == [0, 0, 0, 1]
    assert snap.p50[:2] == [None, None] and snap.p99[3] == pytest.approx(42.17, abs=0.01)
    assert (snap.scores[0], snap.scores[12], snap.scores[19]) == (1, 1, 2)
    assert [r.transaction_id for r in snap.recent] == ["t3", "t2"]
    assert (snap.decisions, snap.model_version, snap.rules_version) == (5, "m1", "r1")
    assert snap.rule_hits == {"velocity": 4, "new_device": 1}  # the current second left out
    window.add_label((T - 1) * 1000, is_fraud=True)
    window.add_label((T - 3) * 1000, is_fraud=False)
    window.add_label(T * 1000, is_fraud=True)  # the current second
    labelled = window.snapshot(T + 0.5, ("m1", "r1"))
    assert labelled.fraud_reported == [0, 0, 0, 1]
    assert labelled.labels == {"fraud": 1, "genuine": 1}
    later = window.snapshot(T + 10.5, ("m1", "r1"))
    assert later.tps == [0, 0, 0, 0] and window.buckets == {}  # old seconds forgotten


@pytest.mark.integration
def test_follower_reads_what_is_new_in_pages_from_the_window_start(client: redis.Redis) -> None:
    now_ms = T * 1000
    rng = random.Random(1)

    def add(ms: int, n: int, outcome: str = "approve") -> None:
        client.xadd(STREAM, entry(n, outcome, rng, AT), id=f"{ms}-0")

    add(now_ms - 120_000, 0)  # older than the window: never read
    add(now_ms - 2_000, 1, "block")
    client.xadd(STREAM, {b"x": b"not a decision"}, id=f"{now_ms - 1_999}-0")
    follower = Follower(client, STREAM, Window(window_s=60), lambda: now_ms, page=2)
    assert follower.poll() == 2 and follower.unreadable == 1
    for n in range(2, 7):
        add(now_ms - 1_000 + n, n, "step_up" if n == 6 else "approve")
    assert follower.poll() == 5 and follower.poll() == 0
    snap = follower.window.snapshot(T + 0.5, ("m", "r"))
    assert snap.totals == {"approve": 4, "block": 1, "step_up": 1}
    assert [r.outcome for r in snap.recent] == ["step_up", "block"]
    assert snap.recent[1].customer_id.startswith("cust-") and snap.recent[1].amount > 0


def test_label_follower_counts_the_fraud_reported(client: redis.Redis) -> None:
    now_ms = T * 1000
    log = "tx.labels.log"
    for n, fraud in enumerate((True, True, False)):
        label = Label(transaction_id=f"t{n}", is_fraud=fraud, reported_at=datetime.now(UTC))
        client.xadd(log, {PAYLOAD: encode(label)}, id=f"{now_ms - 1_500 + n}-0")
    client.xadd(log, {b"x": b"not a label"}, id=f"{now_ms - 1_400}-0")
    follower = LabelFollower(client, log, Window(window_s=60), lambda: now_ms)
    assert follower.poll() == 4 and follower.unreadable == 1
    snap = follower.window.snapshot(T + 0.5, ("m", "r"))
    assert snap.labels == {"fraud": 2, "genuine": 1} and snap.fraud_reported[-2] == 2


# --- routes on a real server --------------------------------------------------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("console")


@pytest.fixture(scope="module")
def engine(data_dir: Path) -> Iterator[sa.Engine]:
    with migrated_store(data_dir) as made:
        yield made


@pytest.fixture(scope="module")
def server(data_dir: Path, engine: sa.Engine, valkey_url: str) -> Iterator[str]:
    with serving(valkey_url, data_dir) as base:
        yield base


def _session(server: str, key: str = KEY) -> str:
    signed, _ = post_form(server, "/login", f"api_key={key}&next=/")
    assert signed.status == 303 and signed.getheader("location") == "/"
    return (signed.getheader("set-cookie") or "").split(";", 1)[0]


@pytest.mark.integration
def test_a_browser_without_a_session_is_sent_to_login_and_back(server: str) -> None:
    request = urllib.request.Request(server + "/", headers={"Accept": "text/html"})
    with urllib.request.urlopen(request, timeout=30) as page:  # follows the redirect
        assert page.url == server + "/login?next=%2F" and b'name="api_key"' in page.read()
    assert call(server, "GET", "/", key=None).status == 401  # a script gets the JSON refusal
    session = _session(server)
    page = call(server, "GET", "/", key=None, headers={"Cookie": session})
    token = session.split("=", 1)[1].encode()
    assert page.status == 200 and csrf_token(token).encode() in page.raw
    js = call(server, "GET", "/console/assets/uPlot.esm.js", key=None, headers={"Cookie": session})
    assert js.status == 200 and js.headers["content-type"].startswith("text/javascript")


@pytest.mark.integration
def test_console_routes_need_their_scopes(server: str, client: redis.Redis) -> None:
    scorer = KeyStore(client).create("checkout", ["score"])
    for path in ("/", "/console/events", "/v1/transactions/x", "/console/assets/console.js"):
        assert call(server, "GET", path, key=scorer).status == 403, path
    reader = KeyStore(client).create("auditor", ["read"])
    session = _session(server, reader)
    page = call(server, "GET", "/", key=None, headers={"Cookie": session})
    assert page.status == 200 and b'data-can-review="false"' in page.raw
    status, _ = get(server, "/v1/reviews", key=reader)
    assert status == 403


@pytest.mark.integration
def test_a_session_writes_only_with_its_csrf_token(server: str, engine: sa.Engine) -> None:
    store_flagged(engine, "tx-csrf", "cust-7")
    [review] = [
        r for r in get(server, "/v1/reviews")[1]["reviews"] if r["transaction_id"] == "tx-csrf"
    ]
    claim = f"/v1/reviews/{review['review_id']}/claim"
    session = _session(server)
    token = csrf_token(session.split("=", 1)[1].encode())
    other = csrf_token(_session(server).split("=", 1)[1].encode())
    for headers in ({}, {"X-CSRF-Token": other}, {"X-CSRF-Token": token + "0"}):
        refused = call(server, "POST", claim, key=None, headers={"Cookie": session, **headers})
        assert refused.status == 401, headers
    headers = {"Cookie": session, "X-CSRF-Token": token}
    claimed = call(server, "POST", claim, key=None, headers=headers)
    assert claimed.status == 200 and claimed.body["assignee"] == "bootstrap"


@pytest.mark.integration
def test_the_drill_down_shows_the_stored_decision_and_the_customers_transactions(
    server: str, engine: sa.Engine
) -> None:
    store_flagged(engine, "tx-drill", "cust-42")
    status, detail = get(server, "/v1/transactions/tx-drill")
    assert status == 200 and detail["transaction"]["amount"] == 1240.0
    decision = detail["decision"]
    assert (decision["outcome"], decision["score"]) == ("review", 742)
    assert decision["contributions"]["terminal_risk_7d"] == 212.4
    assert decision["stage_ms"]["features"] == 4.9
    assert detail["review"]["status"] == "open" and detail["customer"]["customer_id"] == "cust-42"
    assert [r["transaction_id"] for r in detail["recent"]][:2] == ["tx-drill", "tx-drill-0"]
    assert detail["recent"][0]["outcome"] == "review" and detail["recent"][1]["outcome"] is None
    assert detail["challenge"] is None
    status, body = get(server, "/v1/transactions/nowhere")
    assert status == 404 and body["error"]["field"] == "transaction_id"


@pytest.mark.integration
def test_the_drill_down_shows_a_step_ups_challenge(server: str, engine: sa.Engine) -> None:
    stepped = Decision(
        transaction_id="tx-stepped",
        score=430,
        outcome="step_up",
        reasons=["rule:disposable_email"],
        model_version="m",
        rules_version="r",
        latency_ms=3.0,
        decided_at=datetime.now(UTC),
    )
    with engine.begin() as connection:
        store_decisions(connection, [stepped])
        open_challenges(connection, [stepped], ttl_s=300, max_attempts=3)
    status, detail = get(server, "/v1/transactions/tx-stepped")
    assert status == 200 and detail["decision"]["outcome"] == "step_up"
    challenge = detail["challenge"]
    assert (challenge["status"], challenge["attempts"], challenge["max_attempts"]) == (
        "pending",
        0,
        3,
    )
    assert "code" not in json.dumps(challenge)


@pytest.mark.integration
def test_the_event_stream_sends_a_snapshot_of_the_decisions_stream(
    server: str, client: redis.Redis
) -> None:
    a_second_ago = int(time.time() * 1000) - 1_500  # in the last complete second
    client.xadd(STREAM, entry(1, "step_up", random.Random(3), AT), id=f"{a_second_ago}-0")
    rng = np.random.default_rng(7)
    publish(client, "tx", "worker-1", window(made_reference(rng), rng, shift=1.5))
    request = urllib.request.Request(server + "/console/events", headers={"X-API-Key": KEY})
    with urllib.request.urlopen(request, timeout=30) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.readline() == b"retry: 2000\n" and stream.readline() == b"\n"
        line = stream.readline()
    assert line.startswith(b"data: ")
    snapshot = json.loads(line[6:])
    assert len(snapshot["seconds"]) == 60 and snapshot["rules_version"]
    assert snapshot["decisions"] >= 1 and "step_up" in snapshot["totals"]
    drift = snapshot["drift"]
    assert drift["model_version"] == "v1" and drift["rows"] == 2_000
    assert [(f["name"], f["level"]) for f in drift["features"]] == [
        ("a", "significant"),
        ("b", "stable"),
    ]


@pytest.mark.integration
def test_an_open_console_does_not_hold_the_server_at_sigterm(
    tmp_path: Path, valkey_url: str
) -> None:
    """An event stream never ends by itself: the server cuts it after its grace period."""
    proc, base = start_server(valkey_url, tmp_path, KEY)
    request = urllib.request.Request(base + "/console/events", headers={"X-API-Key": KEY})
    with urllib.request.urlopen(request, timeout=30) as stream:
        assert stream.readline() == b"retry: 2000\n"
        proc.terminate()
        try:
            proc.communicate(timeout=GRACE_S + 10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            pytest.fail("the server still runs 10 s after its grace period")


# --- in a browser ---------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
"""Debian's Chromium (`make chromium`): Playwright drives it, no browser download."""


@pytest.mark.integration
def test_the_console_in_a_browser_moves_with_traffic_and_resolves_a_review(
    server: str, client: redis.Redis, engine: sa.Engine, tmp_path: Path
) -> None:
    errors: list[str] = []
    requested: list[str] = []
    first = backfill(client, seconds=58, rate=140)
    rng = np.random.default_rng(8)
    publish(client, "tx", "worker-1", window(made_reference(rng), rng, shift=1.5))
    with Traffic(client, rate=150, first=first), sync_playwright() as playwright:
        for n, customer in enumerate(("cust-1234", "cust-77", "cust-310", "cust-9")):
            store_flagged(engine, f"tx-browser-{n}", customer)
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1180})
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("request", lambda r: requested.append(r.url))
            page.goto(server + "/")
            expect(page).to_have_url(server + "/login?next=%2F")
            page.fill("#api_key", KEY)
            page.click("button[type=submit]")
            expect(page).to_have_url(server + "/")
            expect(page.locator("#live-text")).to_have_text("live")
            _numbers_move(page)
            expect(page.locator('#mix-legend li[data-outcome="step_up"]')).to_be_visible()
            expect(page.locator('#drift tr[data-name="a"] .psi-significant')).to_be_visible()
            # charts, not only figures: drift (PSI tick by tick) and the fraud reported a second
            expect(page.locator("#chart-drift .u-legend")).to_contain_text("score")
            expect(page.locator("#chart-drift .u-legend")).to_contain_text("worst feature")
            expect(page.locator("#chart-flagged .u-legend")).to_contain_text("fraud reported / s")
            page.wait_for_timeout(1_500)  # the charts' next tick, for the picture
            page.screenshot(path=tmp_path / "console.png", full_page=True)
            _resolve_in_the_drill_down(page, "tx-browser-0")
            page.screenshot(path=tmp_path / "console-drill.png")
        finally:
            browser.close()
    assert errors == [], errors
    elsewhere = [u for u in requested if not u.startswith((server + "/", "data:"))]
    assert requested and elsewhere == [], elsewhere  # vendored assets only: no CDN, no font
    with engine.connect() as connection:
        stored = connection.execute(
            sa.select(
                tables.reviews.c.status, tables.reviews.c.verdict, tables.reviews.c.assignee
            ).where(tables.reviews.c.transaction_id == "tx-browser-0")
        ).one()
    assert tuple(stored) == ("resolved", "fraud", "bootstrap")


def _numbers_move(page: Page) -> None:
    total = page.locator("#kpi-total")
    expect(total).not_to_have_text("–")
    seen = int(total.inner_text().replace(",", ""))
    count = "Number(document.getElementById('kpi-total').textContent.replace(/,/g, ''))"
    page.wait_for_function(f"n => {count} > n", arg=seen, timeout=15_000)


def _resolve_in_the_drill_down(page: Page, transaction_id: str) -> None:
    row = page.locator("#queue tbody tr", has_text=transaction_id)
    row.locator("td.mono").click()
    drill = page.locator("#drill")
    expect(drill).to_be_visible()
    expect(drill.locator(".contrib")).to_contain_text("terminal_risk_7d")
    value = drill.locator('.contrib .value[data-feature="terminal_risk_7d"]')
    expect(value).to_have_text("0.31")  # what the model saw, shown (not only on hover)
    drill.locator("button.claim").click()
    expect(row).to_contain_text("claimed by bootstrap")
    drill.locator("#verdict-note").fill("card reported stolen")
    drill.locator("button.fraud").click()
    expect(row).to_have_count(0)
    expect(drill).to_contain_text("resolved")
