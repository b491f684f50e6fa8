"""The HTTP stack's ceiling: a bare Starlette app answering ``POST /v1/score`` with the body it
got, served by uvicorn the way ``fraudstream serve`` serves the API (`uvicorn.run` with
`fraudstream.api.serving.uvicorn_options`: httptools, uvloop).

Run: ``python benchmarks/echo_app.py PORT`` (`bench_api.py` starts it).
"""

from __future__ import annotations

import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fraudstream.api.serving import uvicorn_options


async def echo(request: Request) -> Response:
    return Response(await request.body(), media_type="application/json")


async def healthz(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


app = Starlette(
    routes=[Route("/v1/score", echo, methods=["POST"]), Route("/healthz", healthz)],
)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), **uvicorn_options())
