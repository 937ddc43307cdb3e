"""Sending an event to one user from a backend: the rule the emitter and the HTTP emit API share.

The caller's user id, event name and data are checked first (a ``RequestError`` says which
is wrong); a user with neither a socket anywhere nor a session to recover is refused with
``UserNotConnectedError`` and counted, so the backend can fall back (a push notification)
instead of the message vanishing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .backends.base import Routed
from .errors import RealtimeError, RequestError, UserNotConnectedError
from .messages.checks import check_data, check_event, check_user_id
from .publisher import SendCounts

__all__ = ["BatchSender", "Outcome", "Sender", "send_many_to_users", "send_to_user"]

logger = logging.getLogger(__name__)


class Sender(Protocol):
    """What sends to a user's sockets on every replica: an emitter's ``Publisher``, or a
    replica's client manager (which also writes to its own sockets)."""

    async def emit_to_user(self, user_id: str, event: str, data: Any, *, volatile: bool = False) -> Routed: ...


class BatchSender(Sender, Protocol):
    """A ``Sender`` that sends many messages in one round trip to the queue."""

    async def emit_many_to_user(self, messages: Sequence[tuple[str, str, Any]], *, volatile: bool = False
                                ) -> list[Routed | RealtimeError]: ...


async def send_to_user(sender: Sender, counts: SendCounts, user_id: object, event: object, data: Any, *,
                       volatile: bool = False) -> str:
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
    status = (await sender.emit_to_user(checked_user, checked_event, check_data(data), volatile=volatile)).status
    if status is None:
        raise _not_connected(counts, checked_user)
    return status


def _not_connected(counts: SendCounts, user_id: str) -> UserNotConnectedError:
    counts.count_dropped("user_not_connected")
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


async def send_many_to_users(sender: BatchSender, counts: SendCounts, messages: Iterable[tuple[object, object, Any]], *,
                             volatile: bool = False) -> list[Outcome]:
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
    results = await sender.emit_many_to_user([message for _, message in checked], volatile=volatile)
    for (index, (user_id, event, _)), result in zip(checked, results, strict=True):
        if isinstance(result, RealtimeError):
            outcomes[index] = Outcome(user_id, event, result)
        elif result.status is None:
            outcomes[index] = Outcome(user_id, event, _not_connected(counts, user_id))
        else:
            outcomes[index] = Outcome(user_id, event, status=result.status)
    return outcomes
