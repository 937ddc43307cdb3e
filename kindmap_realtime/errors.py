"""Error codes, the one error payload, and the exceptions the server raises.

Every error a client or a backend sees -- an ``error`` event, ``connect_error``
data, an HTTP error body -- is built by :func:`error_payload`, so the schema and
the timestamp format live in exactly one place.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

__all__ = [
    "AuthError",
    "ConfigError",
    "ErrorCode",
    "HostNotAllowedError",
    "InvalidEnvelopeError",
    "PayloadTooLargeError",
    "PublishError",
    "QueueBusyError",
    "QueueUnavailableError",
    "RealtimeError",
    "RequestError",
    "SessionTakenError",
    "TooManyConnectionsError",
    "UserNotConnectedError",
    "error_payload",
    "utc_now_iso",
]


class ErrorCode(StrEnum):
    """Every code a client or backend can receive; the README lists them too."""

    AUTH_REQUIRED = "AUTH_REQUIRED"
    INVALID_TOKEN = "INVALID_TOKEN"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    DUPLICATE_CONNECTION = "DUPLICATE_CONNECTION"
    UNKNOWN_EVENT = "UNKNOWN_EVENT"
    INVALID_PARAMETERS = "INVALID_PARAMETERS"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    # A disconnect reason, never an ``error`` event: it could only be queued behind
    # everything the client did not read (see server/eio/server.py).
    SLOW_CONSUMER = "SLOW_CONSUMER"
    RATE_LIMITED = "RATE_LIMITED"
    SERVER_FULL = "SERVER_FULL"
    TOO_MANY_CONNECTIONS = "TOO_MANY_CONNECTIONS"
    UNAUTHORIZED = "UNAUTHORIZED"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    USER_NOT_CONNECTED = "USER_NOT_CONNECTED"
    QUEUE_UNAVAILABLE = "QUEUE_UNAVAILABLE"
    QUEUE_BUSY = "QUEUE_BUSY"
    HOST_NOT_ALLOWED = "HOST_NOT_ALLOWED"
    SERVER_SHUTTING_DOWN = "SERVER_SHUTTING_DOWN"
    # Sent by Nginx (nginx/conf.d/kindmap_api.conf) when no replica answers.
    REPLICA_UNAVAILABLE = "REPLICA_UNAVAILABLE"
    INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"


def utc_now_iso() -> str:
    """The current time as ISO 8601 in UTC with an explicit ``+00:00`` offset."""
    return datetime.now(UTC).isoformat()


def error_payload(code: ErrorCode, message: str) -> dict[str, Any]:
    """The error schema used everywhere: events, ``connect_error`` and HTTP."""
    return {
        "type": "error",
        "code": code.value,
        "message": message,
        "timestamp": utc_now_iso(),
    }


class RealtimeError(Exception):
    """Root of the server's exceptions; each carries the code a client sees."""

    code: ErrorCode = ErrorCode.INTERNAL_SERVER_ERROR

    def __init__(self, message: str, *, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def payload(self) -> dict[str, Any]:
        return error_payload(self.code, self.message)


class ConfigError(RealtimeError, ValueError):
    """A setting is missing or invalid; the message names the variable."""


class AuthError(RealtimeError, PermissionError):
    """A handshake is refused; ``code`` says why."""

    code = ErrorCode.INVALID_TOKEN


class RequestError(RealtimeError, ValueError):
    """A client or backend sent something malformed or not allowed."""

    code = ErrorCode.INVALID_PARAMETERS


class PayloadTooLargeError(RequestError):
    """A message too large to be handled; nothing was sent."""

    code = ErrorCode.PAYLOAD_TOO_LARGE


class HostNotAllowedError(RequestError):
    """Dev mode: a request whose ``Host`` is not a loopback or configured name (DNS rebinding)."""

    code = ErrorCode.HOST_NOT_ALLOWED


class TooManyConnectionsError(RealtimeError, PermissionError):
    """A handshake is refused: the user already holds ``MAX_SOCKETS_PER_USER`` live sockets."""

    code = ErrorCode.TOO_MANY_CONNECTIONS


class SessionTakenError(RealtimeError, PermissionError):
    """A handshake is refused: another connection took over the session it was recovering meanwhile."""

    code = ErrorCode.DUPLICATE_CONNECTION


class PublishError(RealtimeError, ConnectionError):
    """A message could not be handed to the queue; it was not sent."""

    code = ErrorCode.QUEUE_UNAVAILABLE


class QueueUnavailableError(RealtimeError, ConnectionError):
    """The queue cannot be reached for subscribing or listening."""

    code = ErrorCode.QUEUE_UNAVAILABLE


class QueueBusyError(PublishError, QueueUnavailableError):
    """Every Redis connection of this process stayed busy while the request waited.

    Redis itself is fine: a retry after a moment succeeds. Nothing was sent. It is
    both a ``PublishError`` and a ``QueueUnavailableError`` so that callers catching
    either still catch it.
    """

    code = ErrorCode.QUEUE_BUSY


class UserNotConnectedError(RealtimeError, LookupError):
    """The target user has no socket on any replica; nothing was sent."""

    code = ErrorCode.USER_NOT_CONNECTED


class InvalidEnvelopeError(RealtimeError, ValueError):
    """A queue message is not a well-formed envelope; ``reason`` labels the metric."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
