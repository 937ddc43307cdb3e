"""The transport interface the queue manager talks to."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator

__all__ = ["QueueBackend"]


class QueueBackend(ABC):
    """A pub/sub transport: publish bytes on a channel, read what was published.

    Implementations raise ``PublishError`` when a publish fails and
    ``QueueUnavailableError`` when subscribing or listening fails; the manager
    decides what to log, count and retry.
    """

    @abstractmethod
    async def connect(self) -> None:
        """Open connections; raises ``QueueUnavailableError`` if unreachable."""

    @abstractmethod
    async def close(self) -> None:
        """Release every connection; safe to call twice."""

    @abstractmethod
    async def publish(self, channel: str, data: bytes) -> int:
        """Publish ``data``; returns how many subscribers received it."""

    @abstractmethod
    async def subscribe(self, channel: str) -> None:
        """Start (or restart, after a failure) receiving ``channel``."""

    @abstractmethod
    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel``."""

    @abstractmethod
    def messages(self) -> AsyncGenerator[tuple[str, bytes], None]:
        """Yield ``(channel, data)`` until the connection is lost, then raise."""

    @abstractmethod
    async def ping(self) -> bool:
        """Whether the queue answers right now (never raises)."""
