"""The ``/docs`` page: vendored Swagger UI (``static/``, see its VENDORED.md) on this
server's ``/openapi.json``. No CDN: every asset is served from the package."""

from __future__ import annotations

from importlib.resources import files

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from fraudstream.api.spec import Handler

STATIC = files("fraudstream.api") / "static"
ASSETS: dict[str, tuple[str, str]] = {
    "swagger-ui.css": ("swagger-ui/swagger-ui.css", "text/css"),
    "swagger-ui-bundle.js": ("swagger-ui/swagger-ui-bundle.js", "text/javascript"),
    "docs.js": ("docs.js", "text/javascript"),
}
"""The only files served: name in the URL -> (path under static/, media type)."""

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fraudstream API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head><body>
<div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/docs.js"></script>
</body></html>
"""


def docs_page() -> Response:
    return HTMLResponse(_PAGE)


def serve_assets(assets: dict[str, tuple[str, str]]) -> Handler:
    """A handler serving the files ``assets`` names (name in the URL -> path under
    ``static/``, media type), and nothing else."""

    async def serve(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in assets:
            return Response("not found", status_code=404, media_type="text/plain")
        path, media_type = assets[name]
        body = (STATIC / path).read_bytes()
        return Response(body, media_type=media_type, headers={"cache-control": "max-age=86400"})

    return serve


asset = serve_assets(ASSETS)
