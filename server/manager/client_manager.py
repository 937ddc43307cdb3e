"""The client manager: python-socketio's pub/sub manager, hardened.

``QueueManager`` fills the ``_publish`` hook of ``socketio.AsyncPubSubManager``
through a ``QueueTransport``, listens itself, and adds what the stock Redis manager
lacks:

- it subscribes when the app starts (stock waits for the first client) and
  resubscribes within a fraction of a second after an outage (stock backs off
  up to 60 s, deaf all the while);
- every message taken from the channel is validated; a bad one is dropped,
  counted and logged, and the listener keeps running; with a signing key, so
  is one with a bad signature, and one that is stale or a repeat (``replay``);
- a failed publish is counted, logged at ERROR and raised to the caller (stock
  logs and returns ``None``);
- an emit to a socket of this replica never touches the queue, and nothing
  received from the queue is published again;
- an emit is published before it is delivered locally, so a publish error
  means nobody received it;
- ``disconnect_room`` disconnects every socket of a room on every replica, also
  from a write-only manager (stock's write-only ``disconnect`` cannot).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from socketio.async_manager import AsyncManager
from socketio.packet import Packet

from kindmap_realtime.backends.base import QueueTransport, Routed
from kindmap_realtime.errors import InvalidEnvelopeError, QueueUnavailableError, RealtimeError
from kindmap_realtime.limits import DEFAULT_CHANNEL, DEFAULT_MAX_QUEUE_MESSAGE_BYTES
from kindmap_realtime.log_throttle import LogThrottle
from kindmap_realtime.messages import envelope
from kindmap_realtime.messages.replay import DEFAULT_WINDOW, ReplayGuard
from kindmap_realtime.messages.rooms import user_of_room, user_room
from kindmap_realtime.publisher import Publisher, disconnect_message, emit_message

from ..compat.socketio import HookedPubSubManager, register_ack
from ..metrics import Metrics
from .local_delivery import LocalDelivery
from .recovery import is_offset

__all__ = ["QueueManager"]

logger = logging.getLogger(__name__)

RETRY_MIN = 0.05
RETRY_MAX = 0.5


class QueueManager(HookedPubSubManager, LocalDelivery):
    """Shares sockets, rooms and events between replicas through a ``QueueTransport``.

    :param transport: the backend's transport (Redis, or memory for a replica alone).
    :param channel: the channel every replica and emitter uses.
    :param write_only: ``True`` for emitters: publish only, never listen.
    :param metrics: where to count; a private ``Metrics`` when not given.
    :param retry_max: longest pause between resubscribe attempts, in seconds;
        it bounds how long a replica stays deaf after the queue comes back.
    :param signing_key: when given, envelopes are signed and unsigned ones dropped;
        every replica and emitter on the channel must share it.
    :param max_message_bytes: the largest envelope published (``MAX_QUEUE_MESSAGE_BYTES``);
        a larger one raises ``PayloadTooLargeError``, because Redis would cut the
        subscription of every replica rather than deliver it.
    :param replay_window: with a signing key, seconds a signed envelope is accepted
        (either side of this host's clock), and only once.
    """

    name = "kindmap-queue"

    def __init__(
        self,
        transport: QueueTransport,
        *,
        channel: str = DEFAULT_CHANNEL,
        write_only: bool = False,
        metrics: Metrics | None = None,
        retry_max: float = RETRY_MAX,
        signing_key: bytes | None = None,
        max_message_bytes: int = DEFAULT_MAX_QUEUE_MESSAGE_BYTES,
        replay_window: float = DEFAULT_WINDOW,
    ) -> None:
        super().__init__(channel=channel, write_only=write_only, logger=logger)
        self.transport = transport
        self.metrics = metrics or Metrics()
        self.retry_max = retry_max
        self._signing_key = signing_key
        self.publisher = Publisher(transport, channel=channel, host_id=self.host_id, counts=self.metrics,
                                   signing_key=signing_key, max_message_bytes=max_message_bytes,
                                   write_only=write_only)
        self._replay = None if signing_key is None or write_only else ReplayGuard(replay_window)
        self.subscribed = False
        self._ever_subscribed = False
        self._listener: asyncio.Task[None] | None = None
        self._closing = False
        self._on_subscribed: list[Callable[[], Awaitable[None]]] = []
        self._on_key_probe: Callable[[str], Awaitable[None]] | None = None
        self._throttle = LogThrottle()
        self._connected_at: dict[str, float] = {}  # sid -> when its Socket.IO connect began (Unix time)

    # --- lifecycle -------------------------------------------------------

    def initialize(self) -> None:
        """Called by the server on its first client; ``start()`` already did the work."""

    def on_subscribed(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run ``callback`` after every (re)subscription, e.g. to re-announce presence."""
        self._on_subscribed.append(callback)

    def on_key_probe(self, callback: Callable[[str], Awaitable[None]]) -> None:
        """Answer an emitter's ``key_probe`` (its nonce) with ``callback``; see ``KeyCheck``."""
        self._on_key_probe = callback

    async def start(self) -> None:
        """Connect, and for a listening manager subscribe and start the listener.

        A write-only manager raises ``QueueUnavailableError`` when the queue is
        unreachable. A listening one logs the failure and keeps retrying in the
        background, so a replica started during a Redis blip recovers by itself.
        """
        if self._listener is not None:
            return  # already started
        self._closing = False
        if self.write_only:
            await self.transport.connect()
            return
        try:
            await self._subscribe()
        except QueueUnavailableError as exc:
            logger.error("queue unavailable at start-up; retrying", extra={"channel": self.channel, "error": str(exc)})
        self._listener = asyncio.create_task(self._listen_forever(), name="queue-listener")

    async def close(self) -> None:
        """Stop listening, unsubscribe and release the transport's connections."""
        if self._listener is not None:
            self._closing = True
            self._listener.cancel()
            try:
                await self._listener
            except asyncio.CancelledError:
                pass
            self._listener = None
        if self.subscribed:
            await self.transport.unsubscribe(self.channel)
            self._set_subscribed(False)
        await self.transport.close()

    async def is_ready(self) -> bool:
        """Subscribed, and the queue answers a ping now."""
        return self.subscribed and await self.transport.ping()

    # --- sending ---------------------------------------------------------

    async def emit(self, event: str, data: Any, namespace: str | None = None, room: Any = None,
                   skip_sid: Any = None, callback: Any = None, to: Any = None, **kwargs: Any) -> None:
        """Emit on every replica, like stock ``AsyncPubSubManager.emit``, but:

        - a message for one user's room goes only to the replicas holding that user; stored
          for recovery, it reaches this replica's sockets through the queue too, so that each
          replica writes a user's stored messages in the order of their offsets;
        - a message for one socket of this replica stays local (stock publishes it);
        - the message is published *before* it is delivered here, so when the
          publish raises nobody has it and the caller can retry without duplicates.
        """
        room = to or room
        namespace = namespace or "/"
        if isinstance(room, list) and not room:
            return  # a list of no rooms reaches nobody
        if kwargs.get("ignore_queue") or (isinstance(room, str) and self.is_sid_room(namespace, room)):
            await LocalDelivery.emit(self, event, data, namespace, room=room, skip_sid=skip_sid, callback=callback)
            return
        message = self._emit_message(event, data, namespace, room, skip_sid, callback)
        user_id = user_of_room(room)
        if user_id is not None and namespace == "/" and callback is None:
            volatile = bool(kwargs.get("volatile") or message["binary"])  # attachments are never replayed
            routed = await self.publisher.publish_to_user(user_id, message, volatile)
            if routed.offset is None:
                await self._deliver(message)
            return
        await self._publish(message)
        await self._deliver(message)

    async def emit_to_user(self, user_id: str, event: str, data: Any, *, volatile: bool = False) -> Routed:
        """Emit to every socket of ``user_id``, on whichever replicas hold one; ``data`` is
        plain JSON (``delivery.check_data``).

        The presence lookup, the storing for recovery (unless ``volatile``) and the
        publish are one round trip. Returns whether the user is online, and the offset
        when the message was stored: ``Routed.status`` is ``None``, having delivered
        nothing, when the user has no socket anywhere and no session to recover.
        """
        message = self.publisher.user_emit(user_id, event, data)
        routed = await self.publisher.publish_to_user(user_id, message, volatile)
        if routed.online and routed.offset is None:
            await self._deliver(message)
        return routed

    async def emit_many_to_user(self, messages: Sequence[tuple[str, str, Any]], *, volatile: bool = False
                                ) -> list[Routed | RealtimeError]:
        """``emit_to_user`` for each ``(user_id, event, data)`` (plain JSON), in one round trip where the
        transport can; for each, what it did, or why it was not sent (``PayloadTooLargeError``,
        ``PublishError``). Nothing raises for one message."""
        built = [(user_id, self.publisher.user_emit(user_id, event, data)) for user_id, event, data in messages]
        outcomes = await self.publisher.publish_many_to_user(built, volatile=volatile)
        if self.server is not None:
            for (_, message), outcome in zip(built, outcomes, strict=True):
                if isinstance(outcome, Routed) and outcome.online and outcome.offset is None:
                    await self._deliver(message)
        return outcomes

    def _emit_message(self, event: str, data: Any, namespace: str, room: Any, skip_sid: Any,
                      callback: Any) -> dict[str, Any]:
        """python-socketio's pub/sub ``emit`` message (binary attachments base64-encoded); one for a
        user's room with plain JSON data is the publisher's (``Publisher.user_emit``)."""
        if callback is not None:
            if self.server is None:
                raise RuntimeError("callbacks can only be issued from the context of a server")
            if room is None:
                raise ValueError("cannot use a callback without a room")
            callback = (room, namespace, register_ack(self, room, callback))
        args = list(data) if isinstance(data, tuple) else [data]
        binary = Packet.data_is_binary(args)
        if binary:
            args, attachments = Packet.deconstruct_binary(args)
            args = [args, *[base64.b64encode(a).decode() for a in attachments]]
        return emit_message(event, args, host_id=self.host_id, room=room, namespace=namespace, skip_sid=skip_sid,
                            callback=callback, binary=binary)

    async def disconnect_room(self, room: str, namespace: str = "/", *, skip_sid: str | None = None,
                              notice: dict[str, Any] | None = None) -> None:
        """Disconnect every socket in ``room`` on every replica, except ``skip_sid``.

        Each socket first gets ``notice`` (an error payload) as an ``error`` event.
        Disconnecting is idempotent, so this replica does its part even when the
        publish fails (and the caller still hears of the failure).
        """
        message = disconnect_message(room, host_id=self.host_id, namespace=namespace, skip_sid=skip_sid,
                                     notice=notice)
        try:
            await self._publish(message)
        finally:
            await self.handle_disconnect_room(message)

    async def kick(self, user_id: str, sid: str) -> None:
        """Disconnect socket ``sid`` of ``user_id`` wherever it is connected (the old socket of a
        recovered session): here at once, elsewhere through the queue, routed to the replicas
        that hold the user. A socket of that id in another user's room is never touched."""
        message = {**disconnect_message(sid, host_id=self.host_id), "user": user_id}
        try:
            await self.publisher.publish_to_user(user_id, message, volatile=True)
        finally:
            await self.handle_disconnect_room(message)

    async def _publish(self, data: dict[str, Any]) -> int:
        """python-socketio's hook for what its own methods publish (``Publisher.publish``)."""
        return await self.publisher.publish(data)

    # --- receiving -------------------------------------------------------

    async def _subscribe(self) -> None:
        await self.transport.subscribe(self.channel)
        self._set_subscribed(True)
        if self._ever_subscribed:
            self.metrics.queue_reconnects.inc()
            logger.warning("queue subscribed again", extra={"channel": self.channel})
        else:
            logger.info("queue subscribed", extra={"channel": self.channel})
        self._ever_subscribed = True
        for callback in self._on_subscribed:
            try:
                await callback()
            except Exception:
                logger.exception("on_subscribed callback failed")

    async def _listen_forever(self) -> None:
        delay = RETRY_MIN
        # A flag, not only cancel(): redis-py may turn a cancellation in mid-read into
        # a connection error, which this loop would otherwise treat as an outage.
        while not self._closing:
            try:
                if not self.subscribed:
                    await self._subscribe()
                delay = RETRY_MIN
                # aclosing: the iterator's clean-up (e.g. its keepalive task) runs now, not at GC.
                async with contextlib.aclosing(self.transport.messages()) as messages:
                    async for data, offset in messages:
                        await self._receive(data, offset)
            except QueueUnavailableError as exc:
                if self.subscribed:
                    logger.error("queue connection lost; resubscribing", extra={
                        "channel": self.channel, "error": str(exc)})
                else:
                    logger.debug("resubscribe failed: %s", exc)
                self._set_subscribed(False)
            except Exception:
                logger.exception("queue listener failed; restarting it")
                self._set_subscribed(False)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.retry_max)

    def _set_subscribed(self, value: bool) -> None:
        self.subscribed = value
        self.metrics.queue_subscribed.set(1 if value else 0)

    async def _receive(self, raw: bytes, offset: str | None = None) -> None:
        """Validate one message from the channel (``offset``: where its user's history holds it)
        and act on it; never raises."""
        try:
            message = envelope.decode(raw, self._signing_key)
            if self._replay is not None:
                self._replay.check(message)
        except InvalidEnvelopeError as exc:
            self.metrics.dropped.labels(reason=exc.reason).inc()
            held = self._throttle.allow(exc.reason)
            if held is not None:
                logger.warning("dropped invalid queue message: %s", exc.message, extra={
                    "reason": exc.reason, "sample": envelope.sample(raw), "suppressed": held})
            return
        method = message["method"]
        if method != "callback" and message["host_id"] == self.host_id and offset is None:
            return  # our own message, already handled here before publishing
        self.metrics.received.inc()
        logger.debug("queue message: %s", method)
        if offset is not None and method == "emit" and is_offset(offset):
            message["offset"] = offset
        # Ours, or python-socketio's way (HookedPubSubManager) for the methods of its own.
        handler: Callable[[dict[str, Any]], Awaitable[None]] = getattr(self, f"handle_{method}")
        try:
            await handler(message)
        except Exception:
            self.metrics.dropped.labels(reason="handler_error").inc()
            logger.exception("queue message handler failed", extra={"method": method})

    async def handle_emit(self, message: dict[str, Any]) -> None:
        """An emit from the queue. One for a user came here because this replica held a socket
        of the user when it was sent; finding none, the user left while it was on its way."""
        if await self._deliver(message, message.get("offset")) == 0 and user_of_room(message.get("room")) is not None:
            self.metrics.dropped.labels(reason="user_left").inc()
            held = self._throttle.allow("user_left")
            if held is not None:
                logger.info("a message for a user who had just left this replica reached no socket",
                            extra={"reason": "user_left", "suppressed": held})

    async def _deliver(self, message: dict[str, Any], offset: str | None = None) -> int:
        """Deliver an emit (from the queue, or made here) to this replica's sockets, with the
        offset it was stored under, if any; how many it reached."""
        recipients = self._count_recipients(message)
        if message.get("callback") or message.get("binary"):
            await super().handle_emit(message)  # python-socketio's own way: acks, attachments
        else:
            data = message["data"]
            await LocalDelivery.emit(self, message["event"], data[0] if len(data) == 1 else tuple(data),
                                     message["namespace"], room=message.get("room"),
                                     skip_sid=message.get("skip_sid"), offset=offset)
        self.metrics.delivered.inc(recipients)
        return recipients

    def open_envelope(self, raw: bytes) -> dict[str, Any]:
        """A stored envelope (a user's history), verified and decoded; not checked for freshness,
        which a message kept for recovery has lost. Raises ``InvalidEnvelopeError``."""
        return envelope.decode(raw, self._signing_key)

    async def pre_connect(self, eio_sid: str, namespace: str) -> str | None:
        sid: str | None = await super().pre_connect(eio_sid, namespace)
        if sid is not None:
            self._connected_at[sid] = time.time()
        return sid

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        self._connected_at.pop(sid, None)
        super().basic_disconnect(sid, namespace, **kwargs)

    async def handle_disconnect_room(self, message: dict[str, Any]) -> None:
        """Disconnect this replica's sockets of the room a ``disconnect_room`` names."""
        if self.server is None:
            return  # a write-only manager has no sockets of its own
        skip = {message.get("skip_sid")}
        if isinstance(message.get("user"), str):
            members = {sid for sid, _ in self.get_participants(message["namespace"], user_room(message["user"]))}
            skip |= {sid for sid, _ in self.get_participants(message["namespace"], message["room"])
                     if sid not in members}
        if isinstance(message.get("ts"), int):
            # Signed, it spares sockets newer than itself: each replica sees only the messages
            # addressed to it, so a recorded kick replayed to the replica a user moved to
            # would pass its replay guard, but finds no socket old enough to kick. ``ts`` is
            # whole ms: a socket connected in the same ms as the kick may be older, so it goes.
            sent_by = (message["ts"] + 1) / 1000
            skip |= {sid for sid, _ in self.get_participants(message["namespace"], message["room"])
                     if self._connected_at.get(sid, 0.0) >= sent_by}
        await _disconnect_local(self, message["room"], message["namespace"], skip, message.get("notice"))

    async def handle_key_probe(self, message: dict[str, Any]) -> None:
        # Reaching here, the probe passed the signature check: this replica shares the key.
        if self._on_key_probe is not None:
            await self._on_key_probe(message["nonce"])

    def _count_recipients(self, message: dict[str, Any]) -> int:
        skip = message.get("skip_sid")
        skip_sids = set(skip) if isinstance(skip, list) else {skip}
        return sum(1 for sid, _ in self.get_participants(message["namespace"], message.get("room"))
                   if sid not in skip_sids)


async def _disconnect_local(manager: AsyncManager, room: str, namespace: str, skip: set[str | None],
                            notice: dict[str, Any] | None) -> None:
    """Disconnect this replica's sockets in ``room`` but those in ``skip``, each told why by ``notice``."""
    targets = [sid for sid, _ in manager.get_participants(namespace, room) if sid not in skip]
    for sid in targets:
        if notice:
            await manager.server.emit("error", notice, to=sid, namespace=namespace, ignore_queue=True)
        await manager.server.disconnect(sid, namespace=namespace, ignore_queue=True)
