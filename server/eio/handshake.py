"""The HTTP side of ``/socket.io/``: who may open a session, and errors in the schema.

python-engineio opens a session for every handshake request, however many there
are, and answers a bad request with a bare JSON string in ``text/plain``. This
aiohttp middleware (a public hook, in front of python-engineio's handler) refuses a
new session past ``MAX_CONNECTIONS`` (503 ``SERVER_FULL``) or when one client
address opens sessions faster than ``HANDSHAKE_RATE_PER_SECOND`` (429
``RATE_LIMITED``), and rewrites python-engineio's own 400 / 405 answers into the
error schema, keeping their CORS headers so a browser's polling transport can read them.
"""

from __future__ import annotations

import json
import math

import socketio
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from kindmap_realtime.errors import ErrorCode, error_payload

from ..config import Settings
from ..metrics import Metrics
from .connections import OpenConnections
from .environ import engineio_query
from .rate_limit import KeyedBuckets

__all__ = ["ENGINEIO_PATH", "HandshakeLimiter", "engine_middleware"]

ENGINEIO_PATH = "/socket.io/"
_ENGINE_CODES = {400: ErrorCode.INVALID_PARAMETERS, 405: ErrorCode.METHOD_NOT_ALLOWED}


class HandshakeLimiter:
    """Decides whether a request that would open an Engine.IO session may do so."""

    def __init__(self, sio: socketio.AsyncServer, *, settings: Settings, metrics: Metrics) -> None:
        self.sio = sio
        self.settings = settings
        self.metrics = metrics
        self.per_client = KeyedBuckets(settings.handshake_rate_per_second, settings.handshake_burst)

    def refusal(self, request: web.Request) -> web.Response | None:
        """The answer that refuses this handshake, or None to let it through."""
        settings = self.settings
        if len(self.sio.eio.sockets) >= settings.max_connections:
            return self._refuse(503, ErrorCode.SERVER_FULL,
                                f"this replica holds its maximum of {settings.max_connections} connections; "
                                "retry later or elsewhere", retry_after=5)
        if not self.per_client.take(self.client_address(request)):
            return self._refuse(429, ErrorCode.RATE_LIMITED,
                                f"over {settings.handshake_rate_per_second:g} handshakes per second from one address",
                                retry_after=math.ceil(1 / settings.handshake_rate_per_second))
        return None

    def client_address(self, request: web.Request) -> str:
        """The peer address, or (behind a proxy that sets it) ``HANDSHAKE_CLIENT_IP_HEADER``."""
        header = self.settings.handshake_client_ip_header
        forwarded = request.headers.get(header, "").split(",")[0].strip() if header else ""
        return forwarded or request.remote or "unknown"

    def _refuse(self, status: int, code: ErrorCode, message: str, *, retry_after: int) -> web.Response:
        self.metrics.connects_rejected.labels(code=code.value).inc()
        return web.json_response(error_payload(code, message), status=status,
                                 headers={"Retry-After": str(retry_after)})


def engine_middleware(limiter: HandshakeLimiter, connections: OpenConnections) -> Middleware:
    """Also keeps ``connections`` (one middleware, not two: each one's coroutine stays
    suspended under every WebSocket for as long as it lasts)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(ENGINEIO_PATH):
            return await handler(request)
        if request.method == "GET" and "sid" not in engineio_query(request):  # a handshake, to python-engineio
            refusal = limiter.refusal(request)
            if refusal is not None:
                return refusal
        transport = request.transport
        if transport is None:
            return _in_error_schema(await handler(request))
        connections.add(transport)
        try:
            return _in_error_schema(await handler(request))
        finally:
            connections.discard(transport)

    return middleware


def _in_error_schema(response: web.StreamResponse) -> web.StreamResponse:
    code = _ENGINE_CODES.get(response.status)
    if code is None or not isinstance(response, web.Response) or response.content_type != "text/plain":
        return response
    body = response.body if isinstance(response.body, bytes) else b""
    try:
        message = json.loads(body)
    except ValueError:
        message = body.decode(errors="replace")
    rewritten = web.json_response(error_payload(code, str(message)), status=response.status)
    for name, value in response.headers.items():
        if name.lower().startswith("access-control-"):
            rewritten.headers[name] = value
    return rewritten
