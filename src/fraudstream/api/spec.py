"""The API described as data: each `Endpoint` names its handler, scope, body and answers,
and the OpenAPI 3.1 document is generated from the same msgspec structs that validate the
requests (`msgspec.json.schema_components`)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from fraudstream.api.bodies import ErrorBody

Handler = Callable[[Request], Awaitable[Response]]
REF = "#/components/schemas/{name}"
STANDARD_ERRORS: dict[int, str] = {
    401: "no key, or an unknown one",
    403: "the key lacks the endpoint's scope",
    413: "the body is larger than api_max_body_bytes",
    422: "the body is invalid; the message names the field",
    503: "Valkey or the feature store is unavailable; retry",
}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    scope: str | None
    """The key scope it needs; None = public."""
    summary: str
    body: Any = None
    """The request body's type (a msgspec struct), a tuple of alternatives, or None."""
    answers: dict[int, Any] = field(default_factory=dict)
    """Status -> the response body's type (None = no body)."""
    errors: tuple[int, ...] = (401, 403, 422, 503)
    headers: dict[str, str] = field(default_factory=dict)
    """Response headers it may set, with their meaning."""
    params: tuple[Param, ...] = ()
    """Query parameters, and path parameters that are not plain strings."""


@dataclass(frozen=True)
class Param:
    """A parameter with its JSON schema: of the path if the path names it, else of the query."""

    name: str
    schema: dict[str, Any]
    description: str = ""


def openapi(endpoints: Sequence[Endpoint], *, title: str, version: str) -> dict[str, Any]:
    types = [t for e in endpoints for t in _alternatives(e.body)]
    types += [t for e in endpoints for t in e.answers.values() if t is not None]
    types.append(ErrorBody)
    _, components = msgspec.json.schema_components(list(dict.fromkeys(types)), ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for e in endpoints:
        paths.setdefault(e.path, {})[e.method.lower()] = _operation(e)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
    }


def _operation(e: Endpoint) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": e.summary,
        "operationId": _operation_id(e),
        "responses": {},
    }
    if e.scope is not None:
        op["security"] = [{"apiKey": []}, {"bearer": []}]
        op["description"] = f"Needs a key with the `{e.scope}` scope (or `admin`)."
    parameters = _parameters(e)
    if parameters:
        op["parameters"] = parameters
    if e.body is not None:
        op["requestBody"] = {"required": True, "content": _json(e.body)}
    for status, body in e.answers.items():
        answer: dict[str, Any] = {"description": _phrase(status)}
        if body is not None:
            answer["content"] = _json(body)
        if e.headers and status < 300:
            answer["headers"] = {
                name: {"description": text, "schema": {"type": "string"}}
                for name, text in e.headers.items()
            }
        op["responses"][str(status)] = answer
    errors = e.errors if e.scope is not None else tuple(s for s in e.errors if s >= 413)
    if e.body is not None:
        errors = tuple(sorted({*errors, 413}))
    for status in errors:
        op["responses"][str(status)] = {
            "description": STANDARD_ERRORS.get(status, _phrase(status)),
            "content": _json(ErrorBody),
        }
    return op


def _parameters(e: Endpoint) -> list[dict[str, Any]]:
    """The path's parameters (strings unless the endpoint says otherwise), then the query's."""
    declared = {p.name: p for p in e.params}
    path = [
        declared.get(name, Param(name, {"type": "string"}))
        for name in re.findall(r"{(\w+)}", e.path)
    ]
    query = [p for p in e.params if p not in path]
    return [_parameter(p, "path") for p in path] + [_parameter(p, "query") for p in query]


def _parameter(p: Param, where: str) -> dict[str, Any]:
    out = {"name": p.name, "in": where, "required": where == "path", "schema": p.schema}
    if p.description:
        out["description"] = p.description
    return out


def _json(body: Any) -> dict[str, Any]:
    refs = [{"$ref": REF.format(name=t.__name__)} for t in _alternatives(body)]
    schema = refs[0] if len(refs) == 1 else {"oneOf": refs}
    return {"application/json": {"schema": schema}}


def _alternatives(body: Any) -> tuple[Any, ...]:
    """A body's struct types: one, or a tuple of alternatives (none for no body)."""
    if body is None:
        return ()
    return body if isinstance(body, tuple) else (body,)


def _operation_id(e: Endpoint) -> str:
    words = re.sub(r"[{}]", "", e.path).strip("/").replace("/", "_").replace(".", "_")
    return f"{e.method.lower()}_{words}"


def _phrase(status: int) -> str:
    from http import HTTPStatus

    return HTTPStatus(status).phrase
