"""`create_app(settings)`: the ASGI app behind `fraudstream serve`.

Routes:
- ``POST /v1/score``: one transaction (JSON, our schema) -> its `Decision`, also appended to
  the decisions stream like a worker's;
- ``POST /v1/labels``: one label -> ``tx.labels`` (the workers apply it), 202;
- ``GET /healthz``: liveness, the only route without the API key.

Every `FraudstreamError` maps to one status: `SchemaError` 422 with the field named, anything
else 503.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import redis
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fraudstream.api.auth import ApiKeyMiddleware
from fraudstream.api.batcher import MicroBatcher
from fraudstream.config import Settings
from fraudstream.errors import FraudstreamError, SchemaError
from fraudstream.schema import decode_label, decode_transaction, encode
from fraudstream.scoring import build_scorer
from fraudstream.stream.keys import PAYLOAD, StreamKeys

JSON = "application/json"


def create_app(settings: Settings, client: redis.Redis, api_key: str) -> Starlette:
    """The app, its scorer built from ``settings`` on ``client``."""
    keys = StreamKeys(settings.stream_prefix, settings.partitions)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.batcher = MicroBatcher(build_scorer(settings, client))
        yield
        client.close()

    async def score(request: Request) -> Response:
        arrived = time.time()
        tx = decode_transaction(await request.body())
        batcher: MicroBatcher = request.app.state.batcher
        batcher.scorer.validate(tx)
        decision = await batcher.score(tx, arrived)
        payload = encode(decision)
        client.xadd(
            keys.decisions, {PAYLOAD: payload}, maxlen=settings.decisions_maxlen, approximate=True
        )
        return Response(payload, media_type=JSON)

    async def labels(request: Request) -> Response:
        label = decode_label(await request.body())
        client.xadd(keys.labels, {PAYLOAD: encode(label)})
        return JSONResponse({"accepted": label.transaction_id}, status_code=202)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/v1/score", score, methods=["POST"]),
            Route("/v1/labels", labels, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        middleware=[Middleware(ApiKeyMiddleware, api_key=api_key)],
        exception_handlers={FraudstreamError: _error},  # type: ignore[dict-item]
        lifespan=lifespan,
    )


async def _error(request: Request, exc: FraudstreamError) -> Response:
    body: dict[str, Any] = {"message": str(exc)}
    if isinstance(exc, SchemaError):
        body["field"] = exc.field
        return JSONResponse({"error": body}, status_code=422)
    return JSONResponse({"error": body}, status_code=503)
