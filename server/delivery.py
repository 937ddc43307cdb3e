"""Sending an event to one user from a backend: the rule the emitter and HTTP API share."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from socketio.async_manager import AsyncManager

from .auth import validate_user_id
from .backends.base import Presence
from .errors import RealtimeError, RequestError, UserNotConnectedError
from .metrics import Metrics
from .queue.manager import QueueManager
from .queue.rooms import user_room

__all__ = ["MAX_DATA_DEPTH", "RESERVED_EVENTS", "Outcome", "check_data", "check_event", "check_user_id",
           "send_many_to_users", "send_to_user"]

logger = logging.getLogger(__name__)

# Names Socket.IO clients give a meaning of their own; a backend may not fake them.
RESERVED_EVENTS = frozenset({
    "connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener",
})
MAX_EVENT_LENGTH = 128
# Nesting of arrays and objects in ``data``. Every replica parses each queue message
# with Python's recursive JSON decoder, which gives up near 1,000 levels; real payloads
# (routes, alerts) nest a handful.
MAX_DATA_DEPTH = 32


def check_event(event: Any) -> str:
    if not isinstance(event, str) or not 0 < len(event) <= MAX_EVENT_LENGTH:
        raise RequestError(f"event must be a string of 1-{MAX_EVENT_LENGTH} characters")
    if not _is_utf8_text(event):
        raise RequestError("event must be Unicode text (no lone surrogates such as \\ud800)")
    if event in RESERVED_EVENTS:
        raise RequestError(f"event {event!r} is reserved by Socket.IO")
    return event


def check_data(data: Any) -> Any:
    """``data`` as every Socket.IO client can parse it: strict JSON (no ``NaN`` or
    ``Infinity``, which socket.io-client rejects as a parse error and drops the
    connection), at most ``MAX_DATA_DEPTH`` levels deep, no integer too long for
    Python to print, no lone surrogate (the queue message is UTF-8, which cannot
    carry one). The HTTP API, the emitter and the CLI refuse the same data.
    """
    _check_depth(data)
    try:
        text = json.dumps(data, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:  # ValueError: NaN / Infinity, an integer of over 4,300 digits
        raise RequestError(f"data must be plain JSON: {exc}") from None
    if not _is_utf8_text(text):
        raise RequestError("data must be Unicode text (no lone surrogates such as \\ud800)")
    return data


def _is_utf8_text(text: str) -> bool:
    """False for a string holding a lone surrogate, which JSON's ``\\ud800`` escape
    lets a caller send but UTF-8 (and so the queue envelope) cannot encode."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _check_depth(data: Any) -> None:
    """Level by level, without recursion, so a hostile depth cannot exhaust the stack here."""
    containers = [data]
    for _level in range(MAX_DATA_DEPTH):
        containers = [child for item in containers if isinstance(item, dict | list | tuple)
                      for child in (item.values() if isinstance(item, dict) else item)]
        if not any(isinstance(item, dict | list | tuple) for item in containers):
            return
    raise RequestError(f"data must not nest arrays and objects more than {MAX_DATA_DEPTH} levels deep")


def check_user_id(user_id: Any) -> str:
    checked = validate_user_id(user_id)
    if checked is None:
        raise RequestError("user_id must be 1-128 letters, digits or _.:@-")
    return checked


async def send_to_user(manager: AsyncManager, presence: Presence, metrics: Metrics,
                       user_id: object, event: object, data: Any, *, volatile: bool = False) -> str:
    """Emit ``event`` to every socket of ``user_id`` on every replica.

    Returns ``"sent"`` (the user has a socket), or ``"stored"``: the user has none, but a
    session of theirs is within its recovery window, and gets the message when it
    reconnects. A ``volatile`` message is never stored (nor replayed).
    Raises ``RequestError`` for a bad user id, event name or data
    (``PayloadTooLargeError`` when the message is over the queue's limit),
    ``UserNotConnectedError`` when the user has neither (counted as
    dropped), ``QueueUnavailableError`` / ``PublishError`` when the queue fails.
    """
    checked_user, checked_event = check_user_id(user_id), check_event(event)
    check_data(data)
    status: str | None
    if isinstance(manager, QueueManager):  # presence, storing and publish at once
        status = (await manager.emit_to_user(checked_user, checked_event, data, volatile=volatile)).status
    else:  # one replica alone, or the benchmark's stock manager: presence is its rooms
        status = "sent" if await presence.is_online(checked_user) else None
        if status:
            await manager.emit(checked_event, data, namespace="/", room=user_room(checked_user))
    if status is None:
        raise _not_connected(metrics, checked_user)
    return status


def _not_connected(metrics: Metrics, user_id: str) -> UserNotConnectedError:
    metrics.dropped.labels(reason="user_not_connected").inc()
    logger.debug("not sent: user %s is not connected", user_id)
    return UserNotConnectedError(f"user {user_id!r} is not connected to any replica")


@dataclass(frozen=True)
class Outcome:
    """What became of one message of a batch: sent (``error`` is ``None``; ``status`` says
    ``"sent"`` or ``"stored"`` as ``send_to_user`` does), or refused and why
    (``RequestError``, ``UserNotConnectedError``, ``PayloadTooLargeError``, ``PublishError``)."""

    user_id: object
    event: object
    error: RealtimeError | None = None
    status: str | None = None

    @property
    def sent(self) -> bool:
        return self.error is None


async def send_many_to_users(manager: QueueManager, metrics: Metrics,
                             messages: Iterable[tuple[object, object, Any]], *, volatile: bool = False
                             ) -> list[Outcome]:
    """``send_to_user`` for each ``(user_id, event, data)``, in one round trip to the queue
    where the backend can; one ``Outcome`` per message, in order. A message that fails
    fails alone: nothing is raised for it."""
    outcomes: list[Outcome] = []
    checked: list[tuple[int, tuple[str, str, Any]]] = []
    for user_id, event, data in messages:
        try:
            checked.append((len(outcomes), (check_user_id(user_id), check_event(event), check_data(data))))
            outcomes.append(Outcome(user_id, event))
        except RequestError as exc:
            outcomes.append(Outcome(user_id, event, exc))
    results = await manager.emit_many_to_user([message for _, message in checked], volatile=volatile)
    for (index, (user_id, event, _)), result in zip(checked, results, strict=True):
        if isinstance(result, RealtimeError):
            outcomes[index] = Outcome(user_id, event, result)
        elif result.status is None:
            outcomes[index] = Outcome(user_id, event, _not_connected(metrics, user_id))
        else:
            outcomes[index] = Outcome(user_id, event, status=result.status)
    return outcomes
