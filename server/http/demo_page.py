"""The demo page: the static files of ``client_demo/``, served at ``/`` and ``/demo/<name>``.

Only the files listed in ``DEMO_FILES`` are served, each with a fixed content type.
No part of a URL is ever joined to a file-system path, so there is nothing to
traverse, and nothing else under ``client_demo/`` (``package.json``, the rest of
``node_modules``) is reachable. The browser client is socket.io-client's own ESM
bundle, installed by ``npm ci`` in ``client_demo/``: no build step, no CDN.
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath

from aiohttp import web

__all__ = ["DEMO_DIR", "DEMO_FILES", "demo_routes"]

logger = logging.getLogger(__name__)

DEMO_DIR = Path(__file__).resolve().parents[2] / "client_demo"

_JS = "text/javascript; charset=utf-8"
_CLIENT_DIST = PurePosixPath("node_modules/socket.io-client/dist")

# Name under /demo/ -> (path inside client_demo/, content type).
DEMO_FILES: dict[str, tuple[PurePosixPath, str]] = {
    "demo.css": (PurePosixPath("demo.css"), "text/css; charset=utf-8"),
    "favicon.svg": (PurePosixPath("favicon.svg"), "image/svg+xml"),
    "main.js": (PurePosixPath("main.js"), _JS),
    "connection.js": (PurePosixPath("connection.js"), _JS),
    "event-log.js": (PurePosixPath("event-log.js"), _JS),
    "http.js": (PurePosixPath("http.js"), _JS),
    "socket.io.esm.min.js": (_CLIENT_DIST / "socket.io.esm.min.js", _JS),
    "socket.io.esm.min.js.map": (_CLIENT_DIST / "socket.io.esm.min.js.map", "application/json"),
}
_INDEX = (PurePosixPath("index.html"), "text/html; charset=utf-8")

# Revalidate every time (an edited file shows on reload; unchanged ones answer 304),
# and let the page load nothing but its own files and talk to nothing but its origin.
_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
}


def demo_routes(root: Path = DEMO_DIR) -> list[web.RouteDef]:
    """Routes serving the demo from ``root``; logs a warning for each file missing now."""
    missing = [str(path) for path, _type in [_INDEX, *DEMO_FILES.values()] if not (root / path).is_file()]
    if missing:
        logger.warning("demo page incomplete: run `npm ci` in client_demo/", extra={"missing": missing})

    def serve(path: PurePosixPath, content_type: str) -> web.FileResponse:
        return web.FileResponse(root / path, headers={**_HEADERS, "Content-Type": content_type})

    async def index(request: web.Request) -> web.FileResponse:
        return serve(*_INDEX)

    async def asset(request: web.Request) -> web.FileResponse:
        entry = DEMO_FILES.get(request.match_info["name"])
        if entry is None:
            raise web.HTTPNotFound(reason="no such file in the demo page")
        return serve(*entry)

    return [web.get("/", index), web.get("/demo/{name}", asset)]
