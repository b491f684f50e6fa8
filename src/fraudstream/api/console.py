"""The live console at ``/``: a page (``static/console/``, vendored uPlot, no build step, no
CDN) fed once a second by server-sent events from ``/console/events``.

The page reads with the browser session (`session`) and acts through the public API: the
review queue (``/v1/reviews``, claim, resolve, with the session's CSRF token in a header)
and the drill-down ``GET /v1/transactions/{transaction_id}`` (the store's transaction, decision with
its feature contributions, review and the customer's latest transactions). Every route
needs a scope: ``read`` to look, ``review`` to work the queue.

One `Live` per process serves every open console: a tick polls the decisions stream once
(in a worker thread) and encodes one snapshot, whoever asks.
"""

from __future__ import annotations

import html
import time
from collections.abc import AsyncIterator, Callable
from functools import partial

import anyio
import msgspec
import redis
from anyio import to_thread
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse

from fraudstream.api.bodies import ErrorBody
from fraudstream.api.docs import STATIC, serve_assets
from fraudstream.api.live import Follower, LabelFollower, Window
from fraudstream.api.session import cookie_token, csrf_token
from fraudstream.api.spec import Endpoint
from fraudstream.drift.fleet import fleet_figures
from fraudstream.drift.window import DriftFigures
from fraudstream.errors import NotFoundError
from fraudstream.reviews import ReviewDesk
from fraudstream.schema import Decision
from fraudstream.store.lookup import StoredDecision, TransactionDetail, transaction_detail
from fraudstream.stream.decided import DecidedStore
from fraudstream.stream.keys import StreamKeys

INTERVAL_S = 1.0
ID_MAX = 128
ASSETS: dict[str, tuple[str, str]] = {
    "console.js": ("console/console.js", "text/javascript"),
    "charts.js": ("console/charts.js", "text/javascript"),
    "console.css": ("console/console.css", "text/css"),
    "uPlot.esm.js": ("uplot/uPlot.esm.js", "text/javascript"),
    "uPlot.min.css": ("uplot/uPlot.min.css", "text/css"),
}
Versions = Callable[[], tuple[str, str]]
Drift = Callable[[], DriftFigures | None]


class Live:
    """The latest snapshot, refreshed at most once per ``interval_s`` for all clients."""

    def __init__(
        self,
        follower: Follower,
        versions: Versions,
        clock: Callable[[], float] = time.time,
        interval_s: float = INTERVAL_S,
        drift: Drift | None = None,
        labels: Follower | None = None,
    ) -> None:
        self.follower = follower
        self.labels = labels
        self.versions = versions
        self.drift = drift
        self.clock = clock
        self.interval_s = interval_s
        self._lock = anyio.Lock()
        self._encoded = b""
        self._at = -float("inf")

    async def latest(self) -> bytes:
        async with self._lock:
            if time.monotonic() - self._at >= self.interval_s * 0.9:
                self._encoded = await to_thread.run_sync(self._tick)
                self._at = time.monotonic()
            return self._encoded

    def _tick(self) -> bytes:
        """One poll and one snapshot; Valkey unreachable is said in the snapshot (the page
        keeps its figures and shows the error), not raised into the event stream."""
        try:
            self.follower.poll()
            if self.labels is not None:
                self.labels.poll()
            drift = self.drift() if self.drift is not None else None
        except redis.RedisError as exc:
            return msgspec.json.encode({"error": f"valkey unavailable: {exc}"})
        snapshot = self.follower.window.snapshot(self.clock(), self.versions())
        return msgspec.json.encode(msgspec.structs.replace(snapshot, drift=drift))


def endpoints(
    client: redis.Redis,
    keys: StreamKeys,
    desk: ReviewDesk,
    decided: DecidedStore,
    versions: Versions,
) -> tuple[list[Endpoint], list[Endpoint]]:
    """The console's endpoints: those the OpenAPI document lists, and the page's assets and
    event stream (which it cannot describe)."""
    window = Window()
    follower = Follower(client, keys.decisions, window, _now_ms)
    live = Live(
        follower,
        versions,
        drift=lambda: next(iter(fleet_figures(client, keys.prefix)), None),
        labels=LabelFollower(client, keys.label_log, window, _now_ms),
    )

    async def page(request: Request) -> Response:
        return _page(request)

    async def events(request: Request) -> Response:
        return StreamingResponse(
            _ticks(live),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    async def detail(request: Request) -> Response:
        transaction_id = request.path_params["transaction_id"]
        found = await to_thread.run_sync(_detail, desk, decided, transaction_id)
        return Response(msgspec.json.encode(found), media_type="application/json")

    documented = [
        Endpoint("GET", "/", page, "read", "The live console (a page)", answers={200: None}),
        Endpoint(
            "GET",
            "/v1/transactions/{transaction_id}",
            detail,
            "read",
            "A stored transaction with its decision (feature contributions for review and "
            "block), its review, and the customer's latest transactions",
            answers={200: TransactionDetail, 404: ErrorBody},
            errors=(401, 403, 503),
        ),
    ]
    unlisted = [
        Endpoint("GET", "/console/events", events, "read", ""),
        Endpoint("GET", "/console/assets/{name}", serve_assets(ASSETS), "read", ""),
    ]
    return documented, unlisted


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _ticks(live: Live) -> AsyncIterator[bytes]:
    yield b"retry: 2000\n\n"
    while True:
        yield b"data: " + await live.latest() + b"\n\n"
        await anyio.sleep(live.interval_s)


def _page(request: Request) -> Response:
    """The console's HTML with the caller's name, whether it may work the queue, and the
    session's CSRF token (none when called with a key instead of a session)."""
    caller = request.state.api_key
    token = cookie_token(request.scope)
    text = (STATIC / "console" / "index.html").read_text()
    for name, value in (
        ("caller", caller.name),
        ("can_review", "true" if caller.allows("review") else "false"),
        ("csrf", csrf_token(token) if token else ""),
    ):
        text = text.replace("{{" + name + "}}", html.escape(value, quote=True))
    return HTMLResponse(text, headers={"cache-control": "no-store"})


def _detail(desk: ReviewDesk, decided: DecidedStore, transaction_id: str) -> TransactionDetail:
    """What the store holds; a decision only the API kept so far (no sink yet) from Valkey.

    Raises:
        NotFoundError: ``transaction_id``, when neither knows the transaction.
    """
    if not 0 < len(transaction_id) <= ID_MAX or "\x00" in transaction_id:
        raise NotFoundError("transaction_id", f"no transaction {transaction_id[:32]!r}")
    found = desk.read(partial(transaction_detail, transaction_id=transaction_id))
    if found.transaction is None and found.decision is None:
        kept = decided.get(transaction_id)
        if kept is None:
            raise NotFoundError("transaction_id", f"no transaction {transaction_id!r}")
        found = msgspec.structs.replace(found, decision=_stored(kept))
    return found


def _stored(decision: Decision) -> StoredDecision:
    values = msgspec.structs.asdict(decision)
    values["stage_ms"] = values.pop("stages") or None
    del values["transaction_id"]
    return msgspec.convert(values, StoredDecision)
