"""Sending an event to one user from a backend: the rule the emitter and HTTP API share."""

from __future__ import annotations

import logging
from typing import Any

from socketio.async_manager import AsyncManager

from .auth import validate_user_id
from .errors import RequestError, UserNotConnectedError
from .metrics import Metrics
from .presence import Presence
from .queue.keys import user_room

__all__ = ["RESERVED_EVENTS", "check_event", "check_user_id", "send_to_user"]

logger = logging.getLogger(__name__)

# Names Socket.IO clients give a meaning of their own; a backend may not fake them.
RESERVED_EVENTS = frozenset({
    "connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener",
})
MAX_EVENT_LENGTH = 128


def check_event(event: Any) -> str:
    if not isinstance(event, str) or not 0 < len(event) <= MAX_EVENT_LENGTH:
        raise RequestError(f"event must be a string of 1-{MAX_EVENT_LENGTH} characters")
    if event in RESERVED_EVENTS:
        raise RequestError(f"event {event!r} is reserved by Socket.IO")
    return event


def check_user_id(user_id: Any) -> str:
    checked = validate_user_id(user_id)
    if checked is None:
        raise RequestError("user_id must be 1-128 letters, digits or _.:@-")
    return checked


async def send_to_user(manager: AsyncManager, presence: Presence, metrics: Metrics,
                       user_id: object, event: object, data: Any) -> None:
    """Emit ``event`` to every socket of ``user_id`` on every replica.

    Raises ``RequestError`` for a bad user id or event name,
    ``UserNotConnectedError`` when the user has no socket anywhere (counted as
    dropped), ``QueueUnavailableError`` / ``PublishError`` when the queue fails.
    """
    checked_user, checked_event = check_user_id(user_id), check_event(event)
    if not await presence.is_online(checked_user):
        metrics.dropped.labels(reason="user_not_connected").inc()
        logger.debug("not sent: user %s is not connected", checked_user)
        raise UserNotConnectedError(f"user {checked_user!r} is not connected to any replica")
    await manager.emit(checked_event, data, namespace="/", room=user_room(checked_user))
