"""An in-process backend for the unit tests: several replicas share one ``MemoryBroker``.

It lets unit tests run "replicas" in one event loop without Redis, and lets a
test take the broker down to see how the manager copes with an outage.
Production never uses it: a replica without ``REDIS_URL`` runs alone on
``server.backends.local`` instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from server.backends.base import Backend, KeyCheck, Presence, QueueTransport, Received, Routed, Session
from server.errors import PublishError, QueueUnavailableError

__all__ = ["MemoryBroker", "MemoryPresence", "MemoryTransport", "NoKeyCheck", "memory_backend"]

_OUTAGE = object()  # queued to a listener to end its messages() iterator


class MemoryBroker:
    """The shared "server": listeners, who holds which user, and an up/down switch."""

    def __init__(self) -> None:
        self.available = True
        self.published: list[tuple[str, bytes]] = []
        # user id -> sid -> the transport of the replica holding that socket (MemoryPresence)
        self.presence: dict[str, dict[str, MemoryTransport]] = {}
        self._subscribers: dict[str, set[MemoryTransport]] = {}

    def go_down(self) -> None:
        """Simulate an outage: every listener's iterator fails, publishes fail."""
        self.available = False
        for backends in self._subscribers.values():
            for backend in backends:
                backend.inbox.put_nowait(_OUTAGE)
        self._subscribers.clear()

    def come_back(self) -> None:
        self.available = True

    def inject(self, channel: str, data: bytes) -> int:
        """Deliver raw bytes to every listener, as if any publisher had sent them (for forged input)."""
        return self._deliver(channel, data, self._subscribers.get(channel, set()))

    def waiting(self) -> int:
        """Messages delivered to listeners and not yet read by them."""
        return sum(backend.inbox.qsize() for backends in self._subscribers.values() for backend in backends)

    def _deliver(self, channel: str, data: bytes, targets: set[MemoryTransport]) -> int:
        listening = targets & self._subscribers.get(channel, set())
        for backend in listening:
            backend.inbox.put_nowait(data)
        return len(listening)

    def _check(self, error: type[Exception]) -> None:
        if not self.available:
            raise error("memory broker is down")


class MemoryTransport(QueueTransport):
    def __init__(self, broker: MemoryBroker | None = None) -> None:
        self.broker = broker or MemoryBroker()
        self.inbox: asyncio.Queue[object] = asyncio.Queue()
        self.channels: set[str] = set()

    async def connect(self) -> None:
        self.broker._check(QueueUnavailableError)

    async def close(self) -> None:
        for channel in list(self.channels):
            await self.unsubscribe(channel)

    async def publish(self, channel: str, data: bytes) -> int:
        self.broker._check(PublishError)
        self.broker.published.append((channel, data))
        return self.broker._deliver(channel, data, self.broker._subscribers.get(channel, set()) - {self})

    async def publish_to_user(self, channel: str, user_id: str, data: bytes, *, volatile: bool = False) -> Routed:
        self.broker._check(PublishError)
        self.broker.published.append((channel, data))
        holders = set(self.broker.presence.get(user_id, {}).values())
        self.broker._deliver(channel, data, holders - {self})
        return Routed(bool(holders))

    async def subscribe(self, channel: str) -> None:
        self.broker._check(QueueUnavailableError)
        self.channels.add(channel)
        self.broker._subscribers.setdefault(channel, set()).add(self)

    async def unsubscribe(self, channel: str) -> None:
        self.channels.discard(channel)
        self.broker._subscribers.get(channel, set()).discard(self)

    async def messages(self) -> AsyncGenerator[Received, None]:
        while True:
            item = await self.inbox.get()
            if item is _OUTAGE:
                self.channels.clear()
                raise QueueUnavailableError("memory broker went down")
            yield item, None  # type: ignore[misc]

    async def ping(self) -> bool:
        return self.broker.available


class MemoryPresence(Presence):
    """The replicas of one broker share its table of who holds which user's sockets."""

    def __init__(self, broker: MemoryBroker, transport: MemoryTransport) -> None:
        self._sockets = broker.presence
        self._transport = transport

    async def add(self, user_id: str, sid: str, session: Session | None = None) -> None:
        self._sockets.setdefault(user_id, {})[sid] = self._transport

    async def remove(self, user_id: str, sid: str, session: Session | None = None, *, keep: bool = False) -> None:
        self._sockets.get(user_id, {}).pop(sid, None)

    async def is_online(self, user_id: str) -> bool:
        return bool(self._sockets.get(user_id))


class NoKeyCheck(KeyCheck):
    """Every replica and emitter of one test is built with the same key."""

    async def announce(self) -> None:
        """Nobody needs telling."""

    async def answer(self, nonce: str) -> None:
        """Nobody asks."""

    async def check(self) -> None:
        """Always the same key."""


def memory_backend(broker: MemoryBroker) -> Backend:
    """One replica's (or emitter's) parts on ``broker``, as ``open_backend`` gives a Redis one's."""
    transport = MemoryTransport(broker)
    return Backend(name="memory", transport=transport, presence=MemoryPresence(broker, transport),
                   key_check=NoKeyCheck())
