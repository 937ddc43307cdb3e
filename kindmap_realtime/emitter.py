"""Emitting from backend services (route engine, alerts) without being a client.

``Emitter`` sends with a ``Publisher`` on a backend from the same factory as the
replicas' (``kindmap_realtime.backends``): the same envelope, the same transport, and the
same sending rule as the replicas' HTTP emit API (``kindmap_realtime.sending``). It needs no
Socket.IO server. Every failure raises; nothing is dropped silently.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from .backends import Backend, open_backend
from .errors import ConfigError, QueueUnavailableError
from .limits import (
    DEFAULT_CHANNEL,
    DEFAULT_MAX_QUEUE_MESSAGE_BYTES,
    check_queue_message_bytes,
    check_queue_replay_window,
    check_signing_key,
)
from .messages.checks import check_data, check_event, check_user_id
from .messages.replay import DEFAULT_WINDOW
from .messages.rooms import user_room
from .publisher import Publisher, SendCounts, Tally, disconnect_message, emit_message
from .sending import Outcome, send_many_to_users, send_to_user

__all__ = ["Emitter", "Outcome"]

# An emitter asks about presence; it never announces any, so this name is never written.
EMITTER_INSTANCE_ID = "emitter"


class Emitter:
    """``async with Emitter("redis://…") as emitter: await emitter.send_to_user(…)``

    :param redis_url: the Redis the replicas use.
    :param channel: the replicas' ``SOCKETIO_CHANNEL``.
    :param backend: a ready ``Backend`` instead of a URL (the unit tests pass an in-memory one),
        built for the same ``channel`` and ``signing_key``.
    :param signing_key: the replicas' ``QUEUE_SIGNING_KEY``, if they use one (at least 32 bytes, as theirs).
    :param max_message_bytes: the replicas' ``MAX_QUEUE_MESSAGE_BYTES``: a larger message
        raises ``PayloadTooLargeError`` instead of reaching Redis, which would cut every
        replica's subscription rather than deliver it.
    :param replay_window: the replicas' ``QUEUE_REPLAY_WINDOW_SECONDS``: how far their clocks
        may be off this host's when the emitter checks their signed presence entries.
    :param counts: where to count what is published and dropped (for example into the
        service's own metrics); ``counts`` is a ``Tally`` when not given.
    """

    def __init__(self, redis_url: str | None = None, *, channel: str = DEFAULT_CHANNEL,
                 backend: Backend | None = None, signing_key: str | None = None,
                 max_message_bytes: int = DEFAULT_MAX_QUEUE_MESSAGE_BYTES,
                 replay_window: float = DEFAULT_WINDOW, counts: SendCounts | None = None) -> None:
        self._open = False
        check_queue_message_bytes("max_message_bytes", max_message_bytes)
        check_queue_replay_window("replay_window", replay_window)
        if signing_key is not None:
            check_signing_key("signing_key", signing_key)
        key = None if signing_key is None else signing_key.encode()
        if backend is None:
            if redis_url is None:
                raise ValueError("pass redis_url or backend")
            backend = open_backend(redis_url, channel=channel, instance_id=EMITTER_INSTANCE_ID, signing_key=key,
                                   clock_skew=replay_window, replica=False)
        self._backend = backend
        self.counts = counts or Tally()
        self._publisher = Publisher(backend.transport, channel=channel, host_id=uuid.uuid4().hex, counts=self.counts,
                                    signing_key=key, max_message_bytes=max_message_bytes, write_only=True)

    async def __aenter__(self) -> Emitter:
        await self.connect()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect and check the signing key against the replicas'.

        Raises ``QueueUnavailableError`` if Redis is unreachable and ``ConfigError``
        if the replicas would drop this emitter's messages.
        """
        try:
            await self._backend.transport.connect()
            await self._backend.key_check.check()
        except (ConfigError, QueueUnavailableError):
            await self._backend.transport.close()
            raise
        self._open = True

    async def close(self) -> None:
        if self._open:
            self._open = False
            await self._backend.transport.close()

    async def send_to_user(self, user_id: str, event: str, data: Any = None, *, volatile: bool = False) -> str:
        """Deliver ``event`` to every socket of ``user_id`` on every replica.

        Returns ``"sent"``, or ``"stored"`` when the user has no socket but a session of
        theirs is within its recovery window: the message is replayed when it reconnects.
        A ``volatile`` message (high-rate echoes: positions, countdowns) is never stored.
        Raises ``UserNotConnectedError`` when the user has neither,
        ``PublishError`` / ``QueueUnavailableError`` when Redis fails (``QueueBusyError``,
        one of both, when it is only busy: retry), ``PayloadTooLargeError`` over
        ``max_message_bytes``, and ``RequestError`` for a bad user id, event name or
        data (not strict JSON, or nested too deep).
        """
        return await send_to_user(self._publisher, self.counts, user_id, event, data, volatile=volatile)

    async def send_many(self, messages: Iterable[tuple[str, str, Any]], *, volatile: bool = False) -> list[Outcome]:
        """Send each ``(user_id, event, data)`` as ``send_to_user`` would, in one round trip to
        Redis (on a Redis Cluster, concurrently); one ``Outcome`` per message, in order, saying
        whether it was sent or stored (``status``) or why not. Raises nothing for a single
        message's failure.
        """
        return await send_many_to_users(self._publisher, self.counts, messages, volatile=volatile)

    async def broadcast(self, event: str, data: Any = None) -> None:
        """Deliver ``event`` to every connected socket on every replica."""
        await self._publisher.publish(emit_message(check_event(event), [check_data(data)],
                                                   host_id=self._publisher.host_id))

    async def disconnect_user(self, user_id: str) -> None:
        """Disconnect every socket of ``user_id`` on every replica."""
        await self._publisher.publish(disconnect_message(user_room(check_user_id(user_id)),
                                                         host_id=self._publisher.host_id))

    def __del__(self) -> None:
        if self._open:
            warnings.warn("Emitter was not closed; use 'async with Emitter(...)'", ResourceWarning, stacklevel=1)
