"""What the review routes read from a request: the review id of the path, the queue's query,
the calling key's name. (The routes themselves are in `fraudstream.api.app`, with the others.)
"""

from __future__ import annotations

from starlette.requests import Request

from fraudstream.api.spec import Param
from fraudstream.errors import NotFoundError, SchemaError
from fraudstream.store import reviews as queue

REVIEW_ID = Param("review_id", {"type": "integer", "minimum": 1, "maximum": queue.REVIEW_ID_MAX})
QUEUE_PARAMS = (
    Param("status", {"enum": list(queue.STATUSES), "default": "open"}),
    Param("limit", {"type": "integer", "minimum": 1, "maximum": queue.MAX_LIMIT, "default": 100}),
)


def review_id_of(request: Request) -> int:
    """The path's review id; one that cannot be an id names no review.

    Raises:
        NotFoundError: ``review_id``.
    """
    raw: str = request.path_params["review_id"]
    if raw.isascii() and raw.isdigit() and len(raw) <= 10 and 1 <= int(raw) <= queue.REVIEW_ID_MAX:
        return int(raw)
    raise NotFoundError("review_id", f"no review {raw[:32]!r}")


def queue_query(request: Request) -> tuple[queue.ReviewStatus, int]:
    """``status`` and ``limit`` of ``GET /v1/reviews``.

    Raises:
        SchemaError: naming the parameter.
    """
    status = queue.check_status(request.query_params.get("status", "open"))
    raw = request.query_params.get("limit", "100")
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6):
        raise SchemaError("limit", f"must be an integer, got {raw[:32]!r}")
    return status, queue.check_limit(int(raw))


def caller(request: Request) -> str:
    """The name of the calling key: who claims and resolves."""
    return str(request.state.api_key.name)
