"""`create_app(settings)`: the ASGI app behind `fraudstream serve`.

Routes:
- ``POST /v1/score``: one transaction (JSON, our schema) -> its `Decision`, also appended to
  the decisions stream like a worker's;
- ``POST /v1/labels``: one label -> ``tx.labels`` (the workers apply it), 202;
- ``GET|POST|DELETE /v1/lists/{name}``: read, add to, remove from an allow/deny list;
- ``GET /healthz``: liveness and the model state (``model``: state, version deciding, version
  wanted, error, failed loads; ``status`` ``degraded`` while a version a pointer names does not
  load), the only route without the API key. It reads the scorer's memory, never Valkey: the
  model state is as of the last scored batch.

Every `FraudstreamError` maps to one status: `SchemaError` 422 with the field named, anything
else 503; a Valkey error or timeout (``api_valkey_timeout_s``) is 503 too. Valkey calls run in
worker threads, never on the event loop: a frozen Valkey slows the requests that need it, not
``/healthz``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated, Any, Literal

import msgspec
import redis
from anyio import to_thread
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fraudstream.api.auth import ApiKeyMiddleware
from fraudstream.api.batcher import MicroBatcher
from fraudstream.config import Settings
from fraudstream.errors import FraudstreamError, SchemaError
from fraudstream.rules import ListError
from fraudstream.rules.lists import Lists
from fraudstream.schema import decode_label, decode_transaction, encode, schema_error
from fraudstream.scoring import build_scorer
from fraudstream.stream.keys import PAYLOAD, StreamKeys

JSON = "application/json"
LIST_PAGE = 1000
"""Entries returned by ``GET /v1/lists/{name}`` (the CLI streams all of them)."""


def create_app(settings: Settings, client: redis.Redis, api_key: str) -> Starlette:
    """The app, its scorer built from ``settings`` on ``client`` (now, so that a server that
    cannot load the active model refuses to start: see `build_scorer`)."""
    keys = StreamKeys(settings.stream_prefix, settings.partitions)
    scorer = build_scorer(settings, client)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.batcher = MicroBatcher(scorer)
        yield
        client.close()

    async def score(request: Request) -> Response:
        arrived = time.time()
        tx = decode_transaction(await request.body())
        batcher: MicroBatcher = request.app.state.batcher
        batcher.scorer.validate(tx)
        decision = await batcher.score(tx, arrived)
        payload = encode(decision)
        await to_thread.run_sync(
            partial(
                client.xadd,
                keys.decisions,
                {PAYLOAD: payload},
                maxlen=settings.decisions_maxlen,
                approximate=True,
            )
        )
        return Response(payload, media_type=JSON)

    async def labels(request: Request) -> Response:
        label = decode_label(await request.body())
        request.app.state.batcher.scorer.validate_label(label)
        await to_thread.run_sync(partial(client.xadd, keys.labels, {PAYLOAD: encode(label)}))
        return JSONResponse({"accepted": label.transaction_id}, status_code=202)

    async def healthz(request: Request) -> Response:
        model = scorer.models.health().as_dict() if scorer.models else {"state": "disabled"}
        status = "degraded" if model.get("error") else "ok"
        return JSONResponse({"status": status, "model": model})

    lists = Lists(client)

    def list_page(name: str) -> Response:
        kind = lists.kind(name)
        if kind is None:
            return JSONResponse(
                {"error": {"field": "name", "message": f"no list {name!r}"}}, status_code=404
            )
        entries = [
            {"value": e.value, "expires_at": e.expires_at}
            for e, _ in zip(lists.entries(name), range(LIST_PAGE), strict=False)
        ]
        return JSONResponse(
            {"name": name, "kind": kind, "size": lists.size(name), "entries": entries}
        )

    def apply_change(name: str, method: str, change: ListChange) -> Response:
        if method == "DELETE":
            return JSONResponse({"removed": lists.remove(name, change.values)})
        if lists.kind(name) is None:
            lists.create(name, change.kind)
        added = lists.add(name, change.values, ttl=change.ttl)
        return JSONResponse({"added": added, "size": lists.size(name)})

    async def list_entries(request: Request) -> Response:
        return await to_thread.run_sync(list_page, request.path_params["name"])

    async def list_change(request: Request) -> Response:
        change = _decode(await request.body(), ListChange)
        name, method = request.path_params["name"], request.method
        return await to_thread.run_sync(apply_change, name, method, change)

    return Starlette(
        routes=[
            Route("/v1/score", score, methods=["POST"]),
            Route("/v1/labels", labels, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/v1/lists/{name}", list_entries, methods=["GET"]),
            Route("/v1/lists/{name}", list_change, methods=["POST", "DELETE"]),
        ],
        middleware=[Middleware(ApiKeyMiddleware, api_key=api_key)],
        exception_handlers={
            FraudstreamError: _error,  # type: ignore[dict-item]
            redis.RedisError: _valkey_error,  # type: ignore[dict-item]
        },
        lifespan=lifespan,
    )


class ListChange(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST`` (add) and ``DELETE`` (remove) on ``/v1/lists/{name}``."""

    values: list[str]
    kind: Literal["ip", "email", "domain", "string"] = "string"
    """For a list created by this request."""
    ttl: Annotated[float, msgspec.Meta(gt=0)] | None = None
    """Seconds until the added entries expire; none = permanent."""


def _decode(body: bytes, type_: type[ListChange]) -> ListChange:
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.MsgspecError as exc:
        raise schema_error(exc) from None


async def _valkey_error(request: Request, exc: redis.RedisError) -> Response:
    """Valkey down, frozen (the client's timeout) or refusing: the request can be retried."""
    message = f"valkey unavailable: {type(exc).__name__}: {exc}"
    return JSONResponse({"error": {"message": message}}, status_code=503)


async def _error(request: Request, exc: FraudstreamError) -> Response:
    body: dict[str, Any] = {"message": str(exc)}
    if isinstance(exc, SchemaError):
        body["field"] = exc.field
        return JSONResponse({"error": body}, status_code=422)
    if isinstance(exc, ListError):
        return JSONResponse({"error": body}, status_code=422)
    return JSONResponse({"error": body}, status_code=503)
