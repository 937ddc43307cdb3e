"""Sending an event to one user from a backend: the rule the emitter and HTTP API share."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from socketio.async_manager import AsyncManager

from ..backends.base import Presence
from ..errors import RealtimeError, RequestError, UserNotConnectedError
from ..messages.checks import check_data, check_event, check_user_id
from ..messages.rooms import user_room
from ..metrics import Metrics
from .client_manager import QueueManager

__all__ = ["Outcome", "send_many_to_users", "send_to_user"]

logger = logging.getLogger(__name__)

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
    else:  # the benchmark's stock manager: presence is this process's sockets
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
