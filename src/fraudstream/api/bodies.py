"""Request and response bodies of the HTTP API beyond the records of `fraudstream.schema`.

The same msgspec structs validate requests and generate the OpenAPI document (`openapi.py`):
one source of truth for what the API accepts and answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import msgspec
from starlette.types import Send

from fraudstream.schema import Decision
from fraudstream.store.reviews import Review, Verdict

MAX_BATCH = 1000
"""Transactions per ``/v1/score/batch`` or ``/v1/transactions`` request."""
Item = Annotated[
    dict[str, Any],
    msgspec.Meta(
        description="A Transaction. Items are validated one by one: an invalid item gets "
        "its own error in the answer, the others go through."
    ),
]
Items = Annotated[list[Item], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]
RawItems = Annotated[list[msgspec.Raw], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class ErrorDetail(msgspec.Struct, frozen=True, omit_defaults=True):
    message: str
    field: str | None = None
    """The request field at fault (``amount``, ``api_key`` …), when there is one."""


class ErrorBody(msgspec.Struct, frozen=True):
    error: ErrorDetail


async def send_error(
    send: Send, status: int, field: str, message: str, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """An `ErrorBody` answer from a plain ASGI middleware (before any route runs)."""
    body = msgspec.json.encode(ErrorBody(ErrorDetail(message, field)))
    start = [(b"content-type", b"application/json"), *headers]
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": body})


class Batch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Up to 1,000 transactions; each one is validated on its own."""

    transactions: Items


class RawBatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`Batch` as decoded: the items stay raw so that one bad item fails alone."""

    transactions: RawItems


class ItemError(msgspec.Struct, frozen=True):
    index: int
    """0-based position of the item in the request."""
    error: ErrorDetail


class BatchItem(msgspec.Struct, frozen=True, omit_defaults=True):
    """One item's outcome: its decision, or why it was refused."""

    decision: Decision | None = None
    replay: bool = False
    """True when the decision was kept from an earlier request for the same id."""
    error: ErrorDetail | None = None


class BatchDecisions(msgspec.Struct, frozen=True):
    results: list[BatchItem]
    """In the order of the request's transactions."""


class Accepted(msgspec.Struct, frozen=True):
    accepted: list[str]
    """Ids of the transactions queued for the workers."""
    rejected: list[ItemError]


class LabelAccepted(msgspec.Struct, frozen=True):
    accepted: str


class ReviewVerdict(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Body of ``POST /v1/reviews/{review_id}/resolve``."""

    verdict: Verdict
    note: Annotated[str, msgspec.Meta(max_length=4000)] = ""
    """Why: kept with the review."""


class ChallengeCode(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Body of ``POST /v1/challenges/{transaction_id}/verify``: what the buyer typed."""

    code: Annotated[str, msgspec.Meta(pattern="^[0-9]{6}$")]
    """Six digits (one that is not six digits spends no attempt: 422)."""


class ReviewPage(msgspec.Struct, frozen=True):
    reviews: list[Review]
    """Oldest decision first."""


Value = Annotated[str, msgspec.Meta(max_length=256)]
ListKind = Literal["ip", "email", "domain", "string"]


class ListChange(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Body of ``POST /v1/lists/{name}``: values to add."""

    values: Annotated[list[Value], msgspec.Meta(max_length=1_000)]
    kind: ListKind = "string"
    """For a list created by this request."""
    ttl: Annotated[float, msgspec.Meta(gt=0, le=10 * 365 * 86_400)] | None = None
    """Seconds until the added entries expire; none = permanent."""


class ListValues(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Body of ``POST /v1/lists/{name}/remove``."""

    values: Annotated[list[Value], msgspec.Meta(max_length=1_000)]


class ListEntryBody(msgspec.Struct, frozen=True):
    value: str
    expires_at: float | None


class ListPage(msgspec.Struct, frozen=True):
    name: str
    kind: str
    size: int
    entries: list[ListEntryBody]
    """The first 1,000 entries."""


class ListAdded(msgspec.Struct, frozen=True):
    added: int
    size: int


class ListRemoved(msgspec.Struct, frozen=True):
    removed: int


class Health(msgspec.Struct, frozen=True):
    status: Literal["ok", "degraded"]
    """``degraded`` while a model version a pointer names does not load."""
    model: dict[str, Any]
    """The model stage: state, version deciding, version wanted, error, failed loads."""


class Ready(msgspec.Struct, frozen=True, omit_defaults=True):
    status: Literal["ready", "not ready"]
    valkey: str
    """``ok``, or the error that made it unreachable."""
    model_version: str | None = None
    rules_version: str | None = None
    pid: int | None = None
    """The server process that answered (``serve --workers N`` runs several on one port)."""
