"""HTTP endpoints: health, readiness, metrics, and the emit API for backends (and, in dev mode, the demo page)."""

from __future__ import annotations

import hmac
import logging

from aiohttp import ClientConnectionError, ClientPayloadError, web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST

from kindmap_realtime.errors import (
    ErrorCode,
    HostNotAllowedError,
    PayloadTooLargeError,
    PublishError,
    QueueBusyError,
    QueueUnavailableError,
    RealtimeError,
    UserNotConnectedError,
    error_payload,
)
from kindmap_realtime.log_throttle import LogThrottle
from kindmap_realtime.sending import send_to_user

from ..manager.client_manager import QueueManager
from ..manager.sending import sender_for
from ..sio.auth import AuthError, bearer_token
from .app_keys import AUTHENTICATOR, GATEWAY, MANAGER, METRICS, PRESENCE, SETTINGS

__all__ = ["ErrorMiddleware", "routes"]

logger = logging.getLogger(__name__)

routes = web.RouteTableDef()

QUEUE_BUSY_RETRY_AFTER = 1  # seconds

_HTTP_CODES = {
    401: ErrorCode.UNAUTHORIZED,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
}
_STATUS_FOR: dict[type[RealtimeError], int] = {
    HostNotAllowedError: 403,
    PayloadTooLargeError: 413,
    UserNotConnectedError: 404,
    PublishError: 503,
    QueueUnavailableError: 503,
}


def error_response(status: int, code: ErrorCode, message: str) -> web.Response:
    return web.json_response(error_payload(code, message), status=status)


class ErrorMiddleware:
    """HTTP errors leave in the same schema as Socket.IO errors.

    One per app: it holds the throttle that keeps a flood of requests failing the
    same way from writing a traceback each.
    """

    __middleware_version__ = 1  # what @web.middleware marks: a new-style middleware

    def __init__(self) -> None:
        self._unhandled = LogThrottle()

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400 or request.path.startswith("/socket.io"):
                raise
            code = _HTTP_CODES.get(exc.status, ErrorCode.INVALID_PARAMETERS)
            return error_response(exc.status, code, exc.reason)
        except RealtimeError as exc:
            status = next((s for cls, s in _STATUS_FOR.items() if isinstance(exc, cls)), 400)
            # Busy is not down: a caller that waits this long and retries gets through.
            headers = {"Retry-After": str(QUEUE_BUSY_RETRY_AFTER)} if isinstance(exc, QueueBusyError) else None
            return web.json_response(exc.payload(), status=status, headers=headers)
        except (ConnectionResetError, ClientConnectionError, ClientPayloadError) as exc:
            # The peer went away mid-request (a body shorter than announced, a reset): not our bug,
            # and nobody is left to answer.
            logger.debug("client left during %s %s: %r", request.method, request.path, exc)
            self._abort(request)
            return error_response(400, ErrorCode.INVALID_PARAMETERS, "the request ended early")
        except Exception as exc:
            held = self._unhandled.allow(type(exc).__name__)
            if held is not None:
                logger.exception("unhandled error in %s %s", request.method, request.path,
                                 extra={"suppressed": held})
            if request.path.startswith("/socket.io"):
                # The request may be an upgraded WebSocket: an HTTP answer would land inside its stream.
                self._abort(request)
            return error_response(500, ErrorCode.INTERNAL_SERVER_ERROR, "internal server error")

    @staticmethod
    def _abort(request: web.Request) -> None:
        if request.transport is not None:
            request.transport.abort()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "instance_id": request.app[SETTINGS].instance_id})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    if request.app[GATEWAY].draining:
        return error_response(503, ErrorCode.SERVER_SHUTTING_DOWN, "this replica is shutting down")
    manager = request.app[MANAGER]
    # Only our manager can tell whether it is subscribed; with another one the process answers alone.
    if isinstance(manager, QueueManager) and not await manager.is_ready():
        return error_response(503, ErrorCode.QUEUE_UNAVAILABLE, "not subscribed to the queue, or Redis does not answer")
    return web.json_response({"status": "ready", "instance_id": request.app[SETTINGS].instance_id})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@routes.post("/api/v1/emit")
async def emit(request: web.Request) -> web.Response:
    """``{"user_id", "event", "data", "volatile"}`` from a backend holding ``SERVER_API_KEY``, or
    from the demo page holding a dev token (dev mode only). 202 with ``"status": "sent"``, or
    ``"stored"`` for a user offline within a session's recovery window (``send_to_user``)."""
    sender = _emit_sender(request)
    limit = request.app[SETTINGS].max_payload_bytes
    if request.content_length is not None and request.content_length > limit:
        # Refused before reading: aiohttp would otherwise wait for a body it then refuses.
        return error_response(413, ErrorCode.PAYLOAD_TOO_LARGE, f"the body is over {limit} bytes")
    try:
        body = await request.json()
    except (ValueError, RecursionError):  # also an integer of over 4,300 digits, and deep nesting
        return error_response(400, ErrorCode.INVALID_PARAMETERS, "the body must be a JSON object")
    if not isinstance(body, dict) or set(body) - {"user_id", "event", "data", "volatile"}:
        return error_response(400, ErrorCode.INVALID_PARAMETERS,
                              'expected {"user_id", "event", "data", "volatile"} only')
    volatile = body.get("volatile", False)
    if not isinstance(volatile, bool):
        return error_response(400, ErrorCode.INVALID_PARAMETERS, "volatile must be true or false")
    app = request.app
    status = await send_to_user(sender_for(app[MANAGER], app[PRESENCE]), app[METRICS], body.get("user_id"),
                                body.get("event"), body.get("data"), volatile=volatile)
    if sender is not None:
        logger.debug("demo emit", extra={"from_user": sender, "user_id": body["user_id"], "event": body["event"]})
    return web.json_response({"status": status, "user_id": body["user_id"], "event": body["event"]}, status=202)


def _emit_sender(request: web.Request) -> str | None:
    """Who may emit: ``None`` for a backend with the API key; in dev mode, the user id
    of a dev token of this replica. Raises 404 when the API is off, 401 otherwise.

    Outside dev mode nothing but the API key is accepted, and without one the API does
    not exist. The demo page needs no key: it sends the dev token it connected with.
    """
    settings = request.app[SETTINGS]
    if settings.server_api_key is None and not settings.dev_mode:
        raise web.HTTPNotFound(reason="the emit API is disabled (no SERVER_API_KEY)")
    supplied = request.headers.get("Authorization", "")
    if not supplied.isascii():
        # A byte outside ASCII reaches us as a surrogate escape: no key or token has one.
        raise web.HTTPUnauthorized(reason="the Authorization header must be ASCII")
    if settings.server_api_key is not None and hmac.compare_digest(
            supplied.encode(), f"Bearer {settings.server_api_key}".encode()):
        return None
    if not settings.dev_mode:
        raise web.HTTPUnauthorized(reason="missing or wrong API key")
    token = bearer_token(supplied)
    if not token:
        raise web.HTTPUnauthorized(reason="missing API key or dev token (Authorization: Bearer ...)")
    try:
        return request.app[AUTHENTICATOR].verify_dev_token(token)
    except AuthError as exc:
        raise web.HTTPUnauthorized(reason=f"not the API key, nor a dev token of this replica: {exc.message}") from None
