"""Putting messages on the queue: what a replica's manager and an emitter both do to send.

A ``Publisher`` turns a python-socketio pub/sub message (``emit``, ``disconnect_room``,
``key_probe``) into a signed envelope, refuses one over the queue's size limit before
Redis sees it, hands it to the backend's ``QueueTransport`` and counts what became of it.
It needs no Socket.IO server: the emitter sends with it alone, and the replica's
``QueueManager`` sends with it before delivering to its own sockets.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .backends.base import QueueTransport, Routed
from .errors import PayloadTooLargeError, PublishError, RealtimeError
from .log_throttle import LogThrottle
from .messages import envelope
from .messages.rooms import user_of_room, user_room

__all__ = ["Publisher", "SendCounts", "Tally", "disconnect_message", "emit_message"]

logger = logging.getLogger(__name__)


class SendCounts(Protocol):
    """Where a publisher counts: a replica's Prometheus ``Metrics``, or an emitter's ``Tally``."""

    def count_published(self) -> None: ...

    def count_dropped(self, reason: str) -> None: ...


@dataclass
class Tally:
    """An emitter's own counts, without Prometheus: envelopes published, and messages
    dropped by reason (``too_large``, ``publish_failed``, ``user_not_connected``)."""

    published: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    def count_published(self) -> None:
        self.published += 1

    def count_dropped(self, reason: str) -> None:
        self.dropped[reason] += 1


def emit_message(event: str, args: list[Any], *, host_id: str, room: Any = None, namespace: str = "/",
                 skip_sid: Any = None, callback: Any = None, binary: bool = False) -> dict[str, Any]:
    """python-socketio's pub/sub ``emit`` message: ``args`` are the event's arguments (with
    ``binary``, the first holds placeholders and the rest are its attachments, base64-encoded)."""
    return {"method": "emit", "event": event, "data": args, "binary": binary, "namespace": namespace,
            "room": room, "skip_sid": skip_sid, "callback": callback, "host_id": host_id}


def disconnect_message(room: str, *, host_id: str, namespace: str = "/", skip_sid: str | None = None,
                       notice: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``disconnect_room`` message: every socket in ``room`` but ``skip_sid`` is disconnected,
    each told why by ``notice`` (an error payload) first."""
    return {"method": "disconnect_room", "room": room, "namespace": namespace, "skip_sid": skip_sid,
            "notice": notice, "host_id": host_id}


class Publisher:
    """Sends messages to the replicas on ``channel`` through ``transport``.

    :param host_id: names the sender in every message, so it can tell its own messages apart.
    :param signing_key: when given, envelopes are signed; every replica and emitter on the
        channel must share it.
    :param max_message_bytes: the largest envelope sent (``MAX_QUEUE_MESSAGE_BYTES``); a larger
        one raises ``PayloadTooLargeError``, because Redis would cut the subscription of every
        replica rather than deliver it.
    :param write_only: an emitter's: a message for all that reaches no replica raises, since
        nobody received it and no local socket will.
    """

    def __init__(self, transport: QueueTransport, *, channel: str, host_id: str, counts: SendCounts,
                 signing_key: bytes | None, max_message_bytes: int, write_only: bool = False) -> None:
        self.transport = transport
        self.channel = channel
        self.host_id = host_id
        self.counts = counts
        self.max_message_bytes = max_message_bytes
        self._signing_key = signing_key
        self._write_only = write_only
        self._throttle = LogThrottle()

    async def emit_to_user(self, user_id: str, event: str, data: Any, *, volatile: bool = False) -> Routed:
        """Emit ``event`` with ``data`` (plain JSON) to every socket of ``user_id`` on every
        replica, storing it for recovery unless ``volatile`` (a ``sending.Sender``)."""
        return await self.publish_to_user(user_id, self.user_emit(user_id, event, data), volatile)

    async def emit_many_to_user(self, messages: Sequence[tuple[str, str, Any]], *, volatile: bool = False
                                ) -> list[Routed | RealtimeError]:
        """``emit_to_user`` for each ``(user_id, event, data)``, as ``publish_many_to_user``."""
        return await self.publish_many_to_user(
            [(user_id, self.user_emit(user_id, event, data)) for user_id, event, data in messages], volatile=volatile)

    def user_emit(self, user_id: str, event: str, data: Any) -> dict[str, Any]:
        """The ``emit`` message of ``event`` with ``data`` (plain JSON) for one user's room."""
        return emit_message(event, [data], host_id=self.host_id, room=user_room(user_id))

    async def publish(self, message: dict[str, Any]) -> int:
        """Hand ``message`` to the queue: one for one user's room to the replicas holding that
        user (never stored for recovery: ``publish_to_user`` stores an emit), any other to every
        replica.

        Returns how many replicas a message for all reached, and for one user whether the user
        has a socket anywhere (1 or 0). Raises ``PublishError`` if the publish fails, or a
        write-only sender's message for all reaches no replica; ``PayloadTooLargeError``
        (before Redis sees it) over ``max_message_bytes``.
        """
        user_id = user_of_room(message.get("room"))
        if user_id is not None:
            return int((await self.publish_to_user(user_id, message, volatile=True)).online)
        encoded = self.encode(message)
        try:
            reached = await self.transport.publish(self.channel, encoded)
            if reached == 0 and self._write_only:
                raise PublishError("no replica is listening on the channel; nobody received the message")
        except PublishError as exc:
            self._count_failed(message, exc)
            raise
        self.counts.count_published()
        return reached

    async def publish_to_user(self, user_id: str, message: dict[str, Any], volatile: bool) -> Routed:
        """Hand a message for one user's room to the replicas holding that user, storing it for
        recovery unless ``volatile``, in the same round trip as the presence lookup; raises as
        ``publish``."""
        encoded = self.encode(message)
        try:
            routed = await self.transport.publish_to_user(self.channel, user_id, encoded, volatile=volatile)
        except PublishError as exc:
            self._count_failed(message, exc)
            raise
        self.counts.count_published()
        return routed

    async def publish_many_to_user(self, messages: Sequence[tuple[str, dict[str, Any]]], *, volatile: bool
                                   ) -> list[Routed | RealtimeError]:
        """``publish_to_user`` for each ``(user_id, message)``, in one round trip where the
        transport can; for each, what it did, or why it was not sent (``PayloadTooLargeError``,
        ``PublishError``). Nothing raises for one message."""
        outcomes: list[Routed | RealtimeError] = []
        sendable: list[tuple[int, dict[str, Any], tuple[str, bytes]]] = []
        for index, (user_id, message) in enumerate(messages):
            try:
                sendable.append((index, message, (user_id, self.encode(message))))
                outcomes.append(Routed(False))
            except PayloadTooLargeError as exc:
                outcomes.append(exc)
        if not sendable:
            return outcomes
        batch = [encoded for _, _, encoded in sendable]
        try:
            results = await self.transport.publish_many_to_user(self.channel, batch, volatile=volatile)
        except PublishError as exc:
            results = [exc] * len(batch)
        for (index, message, _), result in zip(sendable, results, strict=True):
            outcomes[index] = result
            if isinstance(result, PublishError):
                self._count_failed(message, result)
            else:
                self.counts.count_published()
        return outcomes

    def encode(self, message: dict[str, Any]) -> bytes:
        """The envelope; ``PayloadTooLargeError`` (before Redis sees it) over ``max_message_bytes``."""
        encoded = envelope.encode(message, self._signing_key)
        if len(encoded) > self.max_message_bytes:
            self.counts.count_dropped("too_large")
            raise PayloadTooLargeError(f"the message is {len(encoded)} bytes, over the queue's limit of "
                                       f"{self.max_message_bytes} (MAX_QUEUE_MESSAGE_BYTES); nothing was sent")
        return encoded

    def _count_failed(self, message: dict[str, Any], exc: PublishError) -> None:
        self.counts.count_dropped("publish_failed")
        held = self._throttle.allow("publish_failed")
        if held is not None:
            logger.error("could not publish to the queue", extra={
                "method": message.get("method"), "channel": self.channel, "error": str(exc), "suppressed": held})
