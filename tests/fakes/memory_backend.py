"""The shipped memory backend (``kindmap_realtime.backends.memory``) with the controls a unit test needs.

Several in-process replicas share one ``FlakyBroker``, as replicas share Redis; a test
takes it down to see how the manager copes with an outage, reads what was published,
and injects raw bytes as a forger on the queue would.
"""

from __future__ import annotations

from typing import Any

from kindmap_realtime.backends.base import Backend, Routed
from kindmap_realtime.backends.memory import MemoryBroker, MemoryTransport, open_memory_backend
from kindmap_realtime.backends.memory.broker import Member
from kindmap_realtime.errors import PublishError, QueueUnavailableError
from kindmap_realtime.limits import DEFAULT_CHANNEL

__all__ = ["FlakyBroker", "FlakyTransport", "flaky_transport", "memory_backend"]


class FlakyBroker(MemoryBroker):
    """A broker that can go down, and records every publish (``published``: channel, envelope)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.available = True
        self.published: list[tuple[str, bytes]] = []
        self.transports: list[FlakyTransport] = []

    def go_down(self) -> None:
        """An outage: every listener reads what it was sent, then its iterator fails; publishes fail."""
        self.available = False
        for transport in self.transports:
            transport.lose()

    def come_back(self) -> None:
        self.available = True

    def inject(self, channel: str, data: bytes) -> int:
        """Deliver raw bytes to every listener, as if any publisher had sent them (for forged input)."""
        listeners = self.listeners(channel)
        return sum(member.inbox.put((data, None)) for member in listeners)

    def waiting(self) -> int:
        """Messages sent to listeners and not yet read by them."""
        return sum(len(transport.member.inbox) for transport in self.transports)

    def check(self, error: type[Exception]) -> None:
        if not self.available:
            raise error("memory broker is down")


class FlakyTransport(MemoryTransport):
    """Fails, as a Redis transport would, while its broker is down."""

    broker: FlakyBroker

    def __init__(self, broker: MemoryBroker, member: Member) -> None:
        assert isinstance(broker, FlakyBroker), "a FlakyTransport needs a FlakyBroker"
        super().__init__(broker, member)
        broker.transports.append(self)

    def lose(self) -> None:
        """The connection is gone: no channel is listened to any more."""
        for channel in self.channels:
            self.broker.stop_listening(channel, self.member)
        self.channels.clear()
        self.member.inbox.wake()

    async def connect(self) -> None:
        self.broker.check(QueueUnavailableError)

    async def publish(self, channel: str, data: bytes) -> int:
        self.broker.check(PublishError)
        self.broker.published.append((channel, data))
        return await super().publish(channel, data)

    async def publish_to_user(self, channel: str, user_id: str, data: bytes, *, volatile: bool = False) -> Routed:
        self.broker.check(PublishError)
        self.broker.published.append((channel, data))
        return await super().publish_to_user(channel, user_id, data, volatile=volatile)

    async def subscribe(self, channel: str) -> None:
        self.broker.check(QueueUnavailableError)
        await super().subscribe(channel)

    async def ping(self) -> bool:
        return self.broker.available


def memory_backend(broker: MemoryBroker, **options: Any) -> Backend:
    """One replica's (or emitter's) parts on ``broker``, as ``open_backend`` gives them: options as
    ``open_memory_backend``'s (no session store unless ``recovery_window`` is given)."""
    options.setdefault("channel", DEFAULT_CHANNEL)
    options.setdefault("instance_id", "memory")
    return open_memory_backend(broker, transport=FlakyTransport, **options)


def flaky_transport(broker: MemoryBroker, name: str = "memory") -> FlakyTransport:
    """A transport of its own on ``broker``, for a manager without presence or sessions."""
    return FlakyTransport(broker, Member(name))
