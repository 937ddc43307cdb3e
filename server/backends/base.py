"""What a replica and an emitter need from the service that links replicas.

("Backend" here is that service, Redis in production; the backend *services* that send
to users -- route engine, alerts -- are the emitter's callers.)

A backend is a matched set of three parts, built together by one factory
(``server.backends.open_backend``) because they share a connection and a
key space: the *queue transport* that carries envelopes between replicas,
the *presence* table that says whether a user has a socket anywhere, and the
*key check* that keeps emitters on the replicas' signing key. A new kind of
backend (per-user channels, Redis Cluster, a history store) implements these
three interfaces in a package of its own beside ``redis/``.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass

from ..errors import PublishError

__all__ = ["Backend", "KeyCheck", "Presence", "QueueTransport"]


class QueueTransport(ABC):
    """Carries envelopes between replicas: to all of them, or only to those holding a user.

    A replica reads its own messages with ``subscribe`` and ``messages``; a sender
    never gets back what it sent.

    Implementations raise ``PublishError`` when a publish fails and
    ``QueueUnavailableError`` when subscribing or listening fails; the manager
    decides what to log, count and retry.
    """

    @abstractmethod
    async def connect(self) -> None:
        """Open connections; raises ``QueueUnavailableError`` if unreachable."""

    @abstractmethod
    async def close(self) -> None:
        """Stop listening and release the transport's own connections; safe to call twice."""

    @abstractmethod
    async def publish(self, channel: str, data: bytes) -> int:
        """Send ``data`` to every replica on ``channel`` but this one; returns how many it reached."""

    @abstractmethod
    async def publish_to_user(self, channel: str, user_id: str, data: bytes) -> bool:
        """Send ``data`` only to the replicas holding a socket of ``user_id`` (but this one),
        in the same round trip as the presence lookup that finds them.

        Returns whether the user has a socket anywhere, this replica included, by
        the presence rules of the backend (signed entries, live replicas).
        """

    async def publish_many_to_user(self, channel: str, messages: Sequence[tuple[str, bytes]]
                                   ) -> list[bool | PublishError]:
        """``publish_to_user`` for each ``(user_id, data)``, at once; for each, the result or the
        ``PublishError`` it raised. A transport that can pipeline does it in one round trip."""
        results = await asyncio.gather(*(self.publish_to_user(channel, user, data) for user, data in messages),
                                       return_exceptions=True)
        return [_result_or_publish_error(result) for result in results]

    @abstractmethod
    async def subscribe(self, channel: str) -> None:
        """Start (or restart, after a failure) receiving this replica's messages on ``channel``."""

    @abstractmethod
    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel``."""

    @abstractmethod
    def messages(self) -> AsyncGenerator[bytes, None]:
        """Yield envelopes until the connection is lost, then raise ``QueueUnavailableError``.

        After ``subscribe`` again, a transport that can resume continues where this
        stopped, so an outage delays messages rather than losing them.
        """

    @abstractmethod
    async def ping(self) -> bool:
        """Whether the queue answers right now (never raises)."""


class Presence(ABC):
    """Which users have a socket somewhere, so a message for nobody is refused, not lost.

    A backend that sends "elevator out of service" to a user who is not connected
    must hear so (it may fall back to a push notification), rather than have the
    message vanish.
    """

    @abstractmethod
    async def add(self, user_id: str, sid: str) -> None: ...

    @abstractmethod
    async def remove(self, user_id: str, sid: str) -> None: ...

    @abstractmethod
    async def is_online(self, user_id: str) -> bool:
        """Raises ``QueueUnavailableError`` when it cannot tell."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Begin any background upkeep."""

    async def heartbeat(self) -> None:  # noqa: B027 - optional hook
        """Write this replica's entries again; run after every (re)subscription to the queue."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Stop upkeep and withdraw this replica's entries."""


class KeyCheck(ABC):
    """Keeps emitters and replicas on the same ``QUEUE_SIGNING_KEY``.

    Replicas drop envelopes not signed with their key, so an emitter with another
    key would lose every message without hearing of it: replicas ``announce`` their
    key and ``answer`` probes, an emitter ``check``s before its first message.
    """

    @abstractmethod
    async def announce(self) -> None:
        """Replica, after every (re)subscription: say which key the replicas use."""

    @abstractmethod
    async def answer(self, nonce: str) -> None:
        """Replica, for a ``key_probe`` whose signature it verified: prove it holds the key."""

    @abstractmethod
    async def check(self) -> None:
        """Emitter, before it sends: raise ``ConfigError`` if the replicas would drop its envelopes,
        ``QueueUnavailableError`` if it cannot tell."""


@dataclass(frozen=True)
class Backend:
    """One backend's matched parts, as ``open_backend`` built them.

    The parts were built for one channel and signing key: give the manager that
    uses them the same. They may share connections, which the transport owns:
    close the presence before the transport (the app's clean-up does).
    """

    name: str
    transport: QueueTransport
    presence: Presence
    key_check: KeyCheck


def _result_or_publish_error(result: bool | BaseException) -> bool | PublishError:
    """A gathered publish's result; anything but a ``PublishError`` it raised is raised again."""
    if isinstance(result, bool | PublishError):
        return result
    raise result
