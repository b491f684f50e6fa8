"""`create_app(settings, client, api_key)`: the ASGI app behind `fraudstream serve`.

The routes are the `ENDPOINTS` table (`spec.Endpoint`: handler, scope, body, answers); the
OpenAPI document at ``/openapi.json`` and the page at ``/docs`` are generated from it.

Every `FraudstreamError` maps to one status: `SchemaError` 422 with the field named,
`NotFoundError` 404, `ConflictError` 409, anything else 503; a Valkey error or timeout
(``api_valkey_timeout_s``) is 503 too. Valkey and database calls run in worker threads, never
on the event loop: a frozen Valkey or a locked database slows the requests that need it, not
``/healthz``.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
from collections.abc import AsyncIterator, Sequence
from functools import partial
from importlib.metadata import version as package_version
from typing import Any

import msgspec
import redis
import sqlalchemy as sa
from anyio import to_thread
from redis.typing import EncodableT, FieldT
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fraudstream import metrics
from fraudstream.api import bodies, console
from fraudstream.api.auth import ApiKeyMiddleware, Authenticator, require
from fraudstream.api.batcher import Answer, Keeper, MicroBatcher
from fraudstream.api.docs import asset, docs_page
from fraudstream.api.keys import BOOTSTRAP, KeyStore, digest
from fraudstream.api.limits import BodyLimitMiddleware
from fraudstream.api.models import ModelDesk, ModelList
from fraudstream.api.reviews import QUEUE_PARAMS, REVIEW_ID, caller, queue_query, review_id_of
from fraudstream.api.session import (
    SessionStore,
    cookie_token,
    form_fields,
    login_form,
    signed_in,
    signed_out,
)
from fraudstream.api.spec import Endpoint, Param, openapi
from fraudstream.challenges import ChallengeDesk, ChallengeState
from fraudstream.config import Settings
from fraudstream.drift.monitor import DriftMonitor
from fraudstream.errors import ConflictError, FraudstreamError, NotFoundError, SchemaError
from fraudstream.models.jobs import RetrainJob, RetrainOptions
from fraudstream.reviews import Resolution, ReviewDesk
from fraudstream.rules import ListError
from fraudstream.rules.lists import Lists
from fraudstream.schema import (
    Decision,
    Explanation,
    Label,
    Transaction,
    decode_label,
    decode_transaction,
    encode,
    schema_error,
)
from fraudstream.scoring import Scorer, build_scorer
from fraudstream.store.engine import create_engine, database_url
from fraudstream.store.reviews import Review
from fraudstream.stream.commit import decision_entry
from fraudstream.stream.decided import DecidedStore
from fraudstream.stream.keys import StreamKeys
from fraudstream.stream.producer import Producer

JSON = "application/json"
LIST_PAGE = 1000
"""Entries returned by ``GET /v1/lists/{name}`` (the CLI streams all of them)."""
REPLAY_HEADER = "Idempotent-Replay"
VERSION = Param("version", {"type": "string", "minLength": 1, "maxLength": 64})
JOB_ID = Param("job_id", {"type": "string", "pattern": "^[0-9a-f]{32}$"})


def create_app(
    settings: Settings, client: redis.Redis, api_key: str, engine: sa.Engine | None = None
) -> Starlette:
    """The app, its scorer built from ``settings`` on ``client`` (now, so that a server that
    cannot load the active model refuses to start: see `build_scorer`). The review queue is
    in ``engine``'s database (by default the store of ``settings``, connected on first use;
    its tables are created on first use if the database is empty)."""
    keys = StreamKeys.of(settings)
    decided = DecidedStore(client, settings.stream_prefix, settings.decision_ttl_s)
    lists = Lists(client)
    producer = Producer(client, keys, batch_size=settings.batch_size)
    store = KeyStore(client)
    sessions = SessionStore(client, store, digest(api_key))
    auth = Authenticator(api_key, store, sessions)

    def entry(
        decision: Decision, tx: Transaction, explanation: Explanation | None
    ) -> dict[FieldT, EncodableT]:
        return decision_entry(decision, encode(tx), explanation)  # trimmed like the workers'

    def kept(decisions: Sequence[Decision]) -> None:
        metrics.observe(decisions, "api")
        if drift is not None:
            drift.tick()

    scorer = build_scorer(settings, client)
    # its own window (``api-<host>-<pid>``): traffic scored here counts in the fleet's drift
    # as the workers' does, published by the batcher's thread between batches
    drift = DriftMonitor.attached(
        settings, client, [scorer], consumer=f"api-{socket.gethostname()}-{os.getpid()}"
    )
    keeper = Keeper(decided, keys.decisions, settings.decisions_maxlen, entry, kept)
    batcher = MicroBatcher(scorer, keeper)
    database = engine or create_engine(database_url(settings))
    desk = ReviewDesk(database, producer)
    challenges = ChallengeDesk(database, client, settings)
    models = ModelDesk(settings, client)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if drift is not None:
            await to_thread.run_sync(partial(drift.tick, force=True))
        client.close()
        database.dispose()

    # --- scoring -----------------------------------------------------------------------------

    async def score(request: Request) -> Response:
        arrived = time.time()
        tx = decode_transaction(await request.body())
        scorer.validate(tx)
        answer = await batcher.score(tx, arrived)
        headers = {REPLAY_HEADER: "true"} if answer.replay else {}
        return Response(encode(answer.decision), media_type=JSON, headers=headers)

    async def score_batch(request: Request) -> Response:
        arrived = time.time()
        raw = _decode(await request.body(), bodies.RawBatch)
        items, errors = _validate_items(raw.transactions, batcher.scorer)
        answers = iter(await batcher.score_many(items, arrived) if items else [])
        results = [
            bodies.BatchItem(error=_detail(errors[n])) if n in errors else _item(next(answers))
            for n in range(len(raw.transactions))
        ]
        return _json(bodies.BatchDecisions(results))

    async def ingest(request: Request) -> Response:
        items, errors = _validate_items(_ingested(await request.body()), batcher.scorer)
        if not items:  # nothing to queue: the first item's error, as one transaction's
            raise errors[min(errors)]
        await to_thread.run_sync(producer.send, items)
        rejected = [bodies.ItemError(n, _detail(e)) for n, e in sorted(errors.items())]
        accepted = bodies.Accepted([tx.transaction_id for tx in items], rejected)
        return _json(accepted, status=202)

    async def decision(request: Request) -> Response:
        tx_id = request.path_params["transaction_id"]
        found = await to_thread.run_sync(decided.get, tx_id)
        if found is None:
            return _not_found("transaction_id", f"no decision kept for {tx_id!r}")
        return Response(encode(found), media_type=JSON)

    async def labels(request: Request) -> Response:
        label = decode_label(await request.body())
        scorer.validate_label(label)
        await to_thread.run_sync(producer.send_labels, [label])
        return _json(bodies.LabelAccepted(label.transaction_id), status=202)

    # --- reviews -----------------------------------------------------------------------------

    async def review_queue(request: Request) -> Response:
        status, limit = queue_query(request)
        found = await to_thread.run_sync(desk.queue, status, limit)
        return _json(bodies.ReviewPage(found))

    async def review_claim(request: Request) -> Response:
        review_id = review_id_of(request)
        claimed = await to_thread.run_sync(desk.claim, review_id, caller(request))
        return _json(claimed)

    async def review_resolve(request: Request) -> Response:
        body: bodies.ReviewVerdict = _decode(await request.body(), bodies.ReviewVerdict)
        review_id = review_id_of(request)
        resolve = partial(desk.resolve, review_id, caller(request), body.verdict, body.note)
        return _json(await to_thread.run_sync(resolve))

    # --- step-up challenges -------------------------------------------------------------------

    async def challenge(request: Request) -> Response:
        look = partial(challenges.look, request.path_params["transaction_id"])
        return _json(await to_thread.run_sync(look))

    async def challenge_verify(request: Request) -> Response:
        body: bodies.ChallengeCode = _decode(await request.body(), bodies.ChallengeCode)
        verify = partial(challenges.verify, request.path_params["transaction_id"], body.code)
        return _json(await to_thread.run_sync(verify))

    # --- model versions ----------------------------------------------------------------------

    async def models_list(request: Request) -> Response:
        return _json(await to_thread.run_sync(models.listing))

    async def models_promote_shadow(request: Request) -> Response:
        return _json(await to_thread.run_sync(models.promote, None))

    async def models_promote(request: Request) -> Response:
        promote = partial(models.promote, request.path_params["version"])
        return _json(await to_thread.run_sync(promote))

    async def models_retrain(request: Request) -> Response:
        options = _decode(await request.body(), RetrainOptions)
        job = await to_thread.run_sync(models.retrain, options)
        location = {"Location": f"/v1/models/jobs/{job.job_id}"}
        return Response(msgspec.json.encode(job), 202, location, media_type=JSON)

    async def models_job(request: Request) -> Response:
        return _json(await to_thread.run_sync(models.job, request.path_params["job_id"]))

    # --- lists -------------------------------------------------------------------------------

    def list_page(name: str) -> Response:
        kind = lists.kind(name)
        if kind is None:
            return _not_found("name", f"no list {name!r}")
        entries = [
            bodies.ListEntryBody(e.value, e.expires_at)
            for e, _ in zip(lists.entries(name), range(LIST_PAGE), strict=False)
        ]
        return _json(bodies.ListPage(name, kind, lists.size(name), entries))

    def add_values(name: str, change: bodies.ListChange) -> Response:
        if lists.kind(name) is None:
            lists.create(name, change.kind)
        added = lists.add(name, change.values, ttl=change.ttl)
        return _json(bodies.ListAdded(added, lists.size(name)))

    def remove_values(name: str, change: bodies.ListValues) -> Response:
        if lists.kind(name) is None:
            return _not_found("name", f"no list {name!r}")
        return _json(bodies.ListRemoved(lists.remove(name, change.values)))

    def delete_list(name: str) -> Response:
        if lists.kind(name) is None:
            return _not_found("name", f"no list {name!r}")
        lists.delete(name)
        return Response(status_code=204)

    async def list_entries(request: Request) -> Response:
        return await to_thread.run_sync(list_page, request.path_params["name"])

    async def list_add(request: Request) -> Response:
        change = _decode(await request.body(), bodies.ListChange)
        return await to_thread.run_sync(add_values, request.path_params["name"], change)

    async def list_remove(request: Request) -> Response:
        change = _decode(await request.body(), bodies.ListValues)
        return await to_thread.run_sync(remove_values, request.path_params["name"], change)

    async def list_delete(request: Request) -> Response:
        return await to_thread.run_sync(delete_list, request.path_params["name"])

    # --- health and documentation ------------------------------------------------------------

    async def healthz(request: Request) -> Response:
        """Liveness and the model state, from the scorer's memory (never Valkey): as of the
        last scored batch; ``degraded`` while a version a pointer names does not load."""
        model = scorer.models.health().as_dict() if scorer.models else {"state": "disabled"}
        return _json(bodies.Health("degraded" if model.get("error") else "ok", model))

    async def readyz(request: Request) -> Response:
        try:
            await to_thread.run_sync(client.ping)
        except redis.RedisError as exc:
            return _json(bodies.Ready("not ready", f"{type(exc).__name__}: {exc}"), status=503)
        return _json(bodies.Ready("ready", "ok", *_versions(scorer), pid=os.getpid()))

    async def metrics_text(request: Request) -> Response:
        body = await to_thread.run_sync(metrics.exposition)
        return Response(body, media_type=metrics.CONTENT_TYPE)

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(document)

    async def docs(request: Request) -> Response:
        return docs_page()

    async def login(request: Request) -> Response:
        if request.method == "GET":
            return login_form(next_path=request.query_params.get("next", "/docs"))
        fields = await form_fields(request)
        secret = fields.get("api_key", "").strip().encode()
        key = await auth.key_of(secret)
        next_path = fields.get("next", "/docs")
        if key is None:
            return login_form("That key is not valid.", next_path, status=401)
        key_digest = digest(api_key) if key is BOOTSTRAP else digest(secret)
        token = await to_thread.run_sync(sessions.open, key, key_digest)
        return signed_in(token, next_path, secure=request.url.scheme == "https")

    async def logout(request: Request) -> Response:
        token = cookie_token(request.scope)
        if token:
            await to_thread.run_sync(sessions.close, token.decode())
            auth.forget("session", token)
        return signed_out()

    endpoints = [
        Endpoint(
            "POST",
            "/v1/score",
            score,
            "score",
            "Score one transaction: its decision (idempotent by transaction_id)",
            body=Transaction,
            answers={200: Decision},
            headers={REPLAY_HEADER: "`true` when the decision was kept from an earlier request"},
        ),
        Endpoint(
            "POST",
            "/v1/score/batch",
            score_batch,
            "score",
            "Score up to 1,000 transactions: decisions in order, per-item errors",
            body=bodies.Batch,
            answers={200: bodies.BatchDecisions},
        ),
        Endpoint(
            "POST",
            "/v1/transactions",
            ingest,
            "ingest",
            "Queue one transaction, or a batch of them, for the stream workers",
            body=(bodies.Batch, Transaction),
            answers={202: bodies.Accepted},
        ),
        Endpoint(
            "GET",
            "/v1/decisions/{transaction_id}",
            decision,
            "read",
            "The decision kept for a transaction id",
            answers={200: Decision, 404: bodies.ErrorBody},
            errors=(401, 403, 503),
        ),
        Endpoint(
            "POST",
            "/v1/labels",
            labels,
            "labels",
            "Queue a label (chargeback, analyst verdict) for the workers",
            body=Label,
            answers={202: bodies.LabelAccepted},
        ),
        Endpoint(
            "GET",
            "/v1/reviews",
            review_queue,
            "review",
            "The review queue, oldest decision first, with score, reasons, amount and customer",
            answers={200: bodies.ReviewPage},
            params=QUEUE_PARAMS,
        ),
        Endpoint(
            "POST",
            "/v1/reviews/{review_id}/claim",
            review_claim,
            "review",
            "Claim a review for the calling key (409 if another key holds it, or it is resolved)",
            answers={200: Review, 404: bodies.ErrorBody, 409: bodies.ErrorBody},
            params=(REVIEW_ID,),
            errors=(401, 403, 503),
        ),
        Endpoint(
            "POST",
            "/v1/reviews/{review_id}/resolve",
            review_resolve,
            "review",
            "Resolve a review with a verdict: stored, and published as a label (source review)",
            body=bodies.ReviewVerdict,
            answers={200: Resolution, 404: bodies.ErrorBody, 409: bodies.ErrorBody},
            params=(REVIEW_ID,),
        ),
        Endpoint(
            "GET",
            "/v1/challenges/{transaction_id}",
            challenge,
            "read",
            "A step-up challenge: pending (attempts left, expiry) or closed (final outcome)",
            answers={200: ChallengeState, 404: bodies.ErrorBody, 409: bodies.ErrorBody},
            errors=(401, 403, 503),
        ),
        Endpoint(
            "POST",
            "/v1/challenges/{transaction_id}/verify",
            challenge_verify,
            "score",
            "Check the buyer's one-time code: the right one approves, the last allowed wrong"
            " one or an expired challenge blocks; the final decision is stored and streamed",
            body=bodies.ChallengeCode,
            answers={200: ChallengeState, 404: bodies.ErrorBody, 409: bodies.ErrorBody},
        ),
        Endpoint(
            "GET",
            "/v1/models",
            models_list,
            "admin",
            "Model versions, oldest first: role (active, shadow), holdout figures, threshold",
            answers={200: ModelList},
            errors=(401, 403, 503),
        ),
        Endpoint(
            "POST",
            "/v1/models/promote",
            models_promote_shadow,
            "admin",
            "Make the shadow version active, once it loads and verifies here (409: no shadow)",
            answers={200: ModelList, 409: bodies.ErrorBody},
            errors=(401, 403, 503),
        ),
        Endpoint(
            "POST",
            "/v1/models/{version}/promote",
            models_promote,
            "admin",
            "Make a version active, once it loads and verifies here (409: refused, no pointer"
            " moved); the shadow stops shadowing if it was that version",
            answers={200: ModelList, 404: bodies.ErrorBody, 409: bodies.ErrorBody},
            params=(VERSION,),
            errors=(401, 403, 503),
        ),
        Endpoint(
            "POST",
            "/v1/models/retrain",
            models_retrain,
            "admin",
            "Retrain on the store in a process of its own, as `fraudstream retrain`: the new"
            " version becomes the shadow; one at a time (409 while one runs)",
            body=RetrainOptions,
            answers={202: RetrainJob, 409: bodies.ErrorBody},
            headers={"Location": "the job's URL (`GET /v1/models/jobs/{job_id}`)"},
        ),
        Endpoint(
            "GET",
            "/v1/models/jobs/{job_id}",
            models_job,
            "admin",
            "A retrain job: queued, running, succeeded (new version, comparison) or failed"
            " (its error); kept 7 days",
            answers={200: RetrainJob, 404: bodies.ErrorBody},
            params=(JOB_ID,),
            errors=(401, 403, 503),
        ),
        Endpoint(
            "GET",
            "/v1/lists/{name}",
            list_entries,
            "read",
            "A list's kind, size and first 1,000 entries",
            answers={200: bodies.ListPage, 404: bodies.ErrorBody},
            errors=(401, 403, 503),
        ),
        Endpoint(
            "POST",
            "/v1/lists/{name}",
            list_add,
            "admin",
            "Add values to a list (created with the given kind if new)",
            body=bodies.ListChange,
            answers={200: bodies.ListAdded},
        ),
        Endpoint(
            "POST",
            "/v1/lists/{name}/remove",
            list_remove,
            "admin",
            "Remove values from a list",
            body=bodies.ListValues,
            answers={200: bodies.ListRemoved, 404: bodies.ErrorBody},
        ),
        Endpoint(
            "DELETE",
            "/v1/lists/{name}",
            list_delete,
            "admin",
            "Delete a list and all its values",
            answers={204: None, 404: bodies.ErrorBody},
            errors=(401, 403, 503),
        ),
        Endpoint(
            "GET", "/healthz", healthz, None, "Liveness", answers={200: bodies.Health}, errors=()
        ),
        Endpoint(
            "GET",
            "/readyz",
            readyz,
            None,
            "Readiness: Valkey reachable, scorer built, versions",
            answers={200: bodies.Ready, 503: bodies.Ready},
            errors=(),
        ),
        Endpoint(
            "GET",
            "/metrics",
            metrics_text,
            "read",
            "Prometheus metrics of every fraudstream process on this host (text format)",
            answers={200: None},
            errors=(401, 403),
        ),
        Endpoint(
            "GET",
            "/openapi.json",
            openapi_json,
            "read",
            "This document",
            answers={200: None},
            errors=(401, 403),
        ),
        Endpoint(
            "GET",
            "/docs",
            docs,
            "read",
            "The API's documentation page",
            answers={200: None},
            errors=(401, 403),
        ),
    ]
    page, page_parts = console.endpoints(client, keys, desk, decided, lambda: _versions(scorer))
    endpoints += page
    document = openapi(endpoints, title="fraudstream", version=package_version("fraudstream"))
    pages = [
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
    ]
    assets = Endpoint("GET", "/docs/assets/{name}", asset, "read", "")
    return Starlette(
        routes=_routes([*endpoints, assets, *page_parts]) + pages,
        middleware=[
            Middleware(BodyLimitMiddleware, max_bytes=settings.api_max_body_bytes),
            Middleware(ApiKeyMiddleware, auth=auth),
        ],
        exception_handlers={
            FraudstreamError: _error,  # type: ignore[dict-item]
            redis.RedisError: _valkey_error,  # type: ignore[dict-item]
        },
        lifespan=lifespan,
    )


def _routes(endpoints: Sequence[Endpoint]) -> list[Route]:
    """One route per path (so ``OPTIONS`` and 405 answers list every method of the path),
    dispatching on the method to the endpoint's handler behind its scope check."""
    by_path: dict[str, dict[str, Endpoint]] = {}
    for e in endpoints:
        by_path.setdefault(e.path, {})[e.method] = e

    def route(path: str, methods: dict[str, Endpoint]) -> Route:
        async def dispatch(request: Request) -> Response:
            e = methods[request.method if request.method != "HEAD" else "GET"]
            if e.scope is not None and (refusal := require(request, e.scope)) is not None:
                return refusal
            return await e.handler(request)

        return Route(path, dispatch, methods=list(methods))

    return [route(path, methods) for path, methods in by_path.items()]


def _ingested(body: bytes) -> list[msgspec.Raw]:
    """The items of a batch (an object whose only field is ``transactions``), else the body
    as the one transaction it is. Told apart by the batch's own decoder, which stops at the
    first field that is not ``transactions``: decoding every value (as raw JSON) would walk a
    deeply nested one to its end first.

    Raises:
        SchemaError: a batch that is not one (``transactions`` not a list of 1 to 1,000).
    """
    try:
        return list(_decode(body, bodies.RawBatch).transactions)
    except SchemaError as exc:
        if exc.problem in (_UNKNOWN_FIELD, _MISSING_FIELD):  # not a batch
            return [msgspec.Raw(body)]
        raise


_UNKNOWN_FIELD = "unknown field"
_MISSING_FIELD = "required field is missing"


def _validate_items(
    raw: Sequence[msgspec.Raw], scorer: Scorer
) -> tuple[list[Transaction], dict[int, SchemaError]]:
    """Each item decoded and validated on its own: one bad item fails alone. An item that
    is not even a JSON object makes the whole batch malformed.

    Raises:
        SchemaError: ``transactions`` naming the first item that is not an object.
    """
    for n, item in enumerate(raw):
        if bytes(item).lstrip()[:1] != b"{":
            raise SchemaError("transactions", f"item {n} is not an object")
    good: list[Transaction] = []
    errors: dict[int, SchemaError] = {}
    for n, item in enumerate(raw):
        try:
            tx = decode_transaction(bytes(item))
            scorer.validate(tx)
            good.append(tx)
        except SchemaError as exc:
            errors[n] = exc
    return good, errors


def _detail(error: SchemaError) -> bodies.ErrorDetail:
    return bodies.ErrorDetail(str(error), error.field)


def _item(answer: Answer) -> bodies.BatchItem:
    return bodies.BatchItem(decision=answer.decision, replay=answer.replay)


def _versions(scorer: Scorer) -> tuple[str, str]:
    models = scorer.models
    model = models.active.version if models is not None and models.active else "none"
    return model, scorer.rules_version()


def _json(body: msgspec.Struct, status: int = 200) -> Response:
    return Response(msgspec.json.encode(body), status_code=status, media_type=JSON)


def _not_found(field: str, message: str) -> Response:
    return _json(bodies.ErrorBody(bodies.ErrorDetail(message, field)), status=404)


def _decode(body: bytes, type_: Any) -> Any:
    """``body`` as ``type_``.

    Raises:
        SchemaError: naming the field, also for a value nested too deep to decode (msgspec
            recurses once per level and raises RecursionError, not a MsgspecError, past the
            interpreter's limit: a batch's items are kept raw, so they are walked to their end).
    """
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.MsgspecError as exc:
        raise schema_error(exc) from None
    except RecursionError:
        raise _too_deep(body) from None


MAX_NESTING = 32
"""Levels of arrays and objects that no valid body comes near (a batch's fields are three
deep): the first value nested deeper is the one named when a body is too deep to decode."""
_JSON_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},]', re.DOTALL)


def _too_deep(body: bytes) -> SchemaError:
    """The error for a body too deeply nested to decode: its top-level field holding the
    first value nested over `MAX_NESTING` levels, and the item when that field is a list.
    Found by a flat scan of the tokens, as any recursive reading would fail as msgspec did."""
    path: list[str | int] = []  # per open level: its key or its item's position
    key_next = False
    for token in _JSON_TOKEN.finditer(body):
        text = token.group()
        if text[:1] == b'"':
            if key_next and path:
                path[-1], key_next = _key(text), False
        elif text in (b"{", b"["):
            if len(path) == MAX_NESTING:
                break
            path.append("" if text == b"{" else 0)
            key_next = text == b"{"
        elif text in (b"}", b"]"):
            del path[-1:]
            key_next = False
        elif path and isinstance(path[-1], int):  # a comma in a list
            path[-1] += 1
        else:  # a comma in an object
            key_next = True
    else:
        return SchemaError("", "nested too deep to decode")
    field = path[0] if isinstance(path[0], str) else ""
    item = f"item {path[1]} is " if len(path) > 1 and isinstance(path[1], int) else ""
    return SchemaError(field, f"{item}nested more than {MAX_NESTING} levels deep")


def _key(token: bytes) -> str:
    try:
        return msgspec.json.decode(token, type=str)
    except msgspec.DecodeError:
        return token[1:-1].decode(errors="replace")


async def _valkey_error(request: Request, exc: redis.RedisError) -> Response:
    """Valkey down, frozen (the client's timeout) or refusing: the request can be retried."""
    message = f"valkey unavailable: {type(exc).__name__}: {exc}"
    return _json(bodies.ErrorBody(bodies.ErrorDetail(message)), status=503)


_STATUS: tuple[tuple[type[FraudstreamError], int], ...] = (
    (SchemaError, 422),
    (ListError, 422),
    (NotFoundError, 404),
    (ConflictError, 409),
)


async def _error(request: Request, exc: FraudstreamError) -> Response:
    field = exc.field if isinstance(exc, SchemaError | NotFoundError | ConflictError) else None
    status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 503)
    return _json(bodies.ErrorBody(bodies.ErrorDetail(str(exc), field)), status=status)
