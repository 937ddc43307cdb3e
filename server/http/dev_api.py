"""What exists only when ``AUTH_MODE=dev``: the dev token endpoint, and the ``Host``
check that keeps other web sites out. ``create_app`` adds them to no other app."""

from __future__ import annotations

import logging
from collections.abc import Awaitable

from aiohttp import web
from aiohttp.typedefs import Handler

from kindmap_realtime.errors import HostNotAllowedError
from kindmap_realtime.messages.checks import check_user_id

from ..config import is_loopback_host
from .app_keys import AUTHENTICATOR, SETTINGS

__all__ = ["dev_host_middleware", "dev_routes"]

logger = logging.getLogger(__name__)

dev_routes = web.RouteTableDef()


@web.middleware
def dev_host_middleware(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    """Refuse every request (HTTP API, demo page, Socket.IO handshake) whose ``Host`` is not
    a loopback name or one of ``DEV_ALLOWED_HOSTS``.

    DNS rebinding: a page of ``evil.example`` whose name is made to resolve to 127.0.0.1
    is same-origin with a developer's dev replica, so its scripts could fetch dev tokens,
    send to any user and connect as anyone. Its requests still carry ``Host: evil.example``.

    Not a coroutine (aiohttp awaits what a middleware returns): it has nothing to do after
    the handler, and its coroutine would stay suspended under every WebSocket.
    """
    name = _host_name(request.headers.get("Host", ""))
    if not (is_loopback_host(name) or name in request.app[SETTINGS].dev_allowed_hosts):
        raise HostNotAllowedError(f"dev mode answers only loopback host names and DEV_ALLOWED_HOSTS, "
                                  f"not {name[:64]!r}")
    return handler(request)


def _host_name(header: str) -> str:
    """``Host`` without its port, lower case: ``[::1]:8000`` -> ``[::1]``, ``Localhost:80`` -> ``localhost``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header.split("]", 1)[0] + "]"
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


@dev_routes.get("/api/v1/dev/token")
async def dev_token(request: web.Request) -> web.Response:
    """A dev token for any ``user_id``: the demo page connects with it, as production
    clients do with a JWT, and it authorises the page's ``POST /api/v1/emit``.

    Dev mode already lets anyone claim any user id, so the token grants nothing more;
    what it adds is that only a script of this origin can read it (the HTTP API sends
    no CORS headers), so another site cannot emit through a developer's browser.
    """
    issued = request.app[AUTHENTICATOR].issue_dev_token(check_user_id(request.query.get("user_id")))
    logger.debug("dev token issued", extra={"user_id": issued.user_id})
    return web.json_response(
        {"user_id": issued.user_id, "token": issued.token, "expires_at": issued.expires_at.isoformat()},
        headers={"Cache-Control": "no-store"},
    )
