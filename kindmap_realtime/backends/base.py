"""What a replica and an emitter need from the service that links replicas.

("Backend" here is that service, Redis in production; the backend *services* that send
to users -- route engine, alerts -- are the emitter's callers.)

A backend is a matched set of parts, built together by one factory
(``kindmap_realtime.backends.open_backend``) because they share a connection and a
key space: the *queue transport* that carries envelopes between replicas,
the *presence* table that says whether a user has a socket anywhere, the
*key check* that keeps emitters on the replicas' signing key, and the
*session store* that keeps what a reconnecting client needs to recover its
session (Socket.IO's connection state recovery). A new kind of backend
implements these interfaces in a package of its own beside ``redis/``.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass

from ..errors import PublishError

__all__ = ["Backend", "CatchUp", "Claim", "HistoryGone", "KeyCheck", "Presence", "QueueTransport", "Received",
           "Routed", "Session", "SessionStore"]

# An envelope read from the queue, and its offset when the sender stored it for recovery.
Received = tuple[bytes, str | None]


@dataclass(frozen=True, slots=True)
class Routed:
    """What a send to one user did: ``online``, the user has a socket on a live replica, which
    has it; ``offset``, it was stored in the user's history for recovery (else ``None``)."""

    online: bool
    offset: str | None = None

    @property
    def status(self) -> str | None:
        """``"sent"``, ``"stored"`` (only for a session to recover: the user is offline) or ``None`` (refused)."""
        if self.online:
            return "sent"
        return "stored" if self.offset is not None else None


@dataclass(frozen=True, slots=True)
class Session:
    """A socket's recoverable session: its private id (``pid``, the client's secret), the
    ``epoch`` of the connection holding it, the offset its replay starts after, when a claim
    of it is next free of delay (``tat``, ms, see ``SessionStore.claim``), and whether this
    connection ``claimed`` it (else it is new, and written with the socket's presence)."""

    pid: str
    epoch: str
    start: str
    tat: int = 0
    claimed: bool = False


@dataclass(frozen=True, slots=True)
class Claim:
    """A session a reconnecting client took over: its socket id, the process that held it, and
    whether that socket is ``vouched`` for by a signed presence entry of the same user (only
    then may it be kicked: an entry anyone could write must never make a replica disconnect)."""

    sid: str
    session: Session
    previous: str
    vouched: bool = False


class CatchUp(ABC):
    """Delivers to a replica's sockets what was stored for their users while the replica did not
    listen to them (a Redis Cluster shard lost, failed over or moved): the transport pauses
    the users before it listens again, so their live messages wait, then ``catch_up`` writes what
    their histories hold after each socket's last offset, then the live ones not among it."""

    @abstractmethod
    def pause(self, user_ids: Collection[str]) -> None:
        """Hold the live messages of these users' sockets from now on."""

    @abstractmethod
    async def catch_up(self, user_ids: Collection[str]) -> None:
        """Write what each paused socket of these users missed, then what was held; never raises."""


class QueueTransport(ABC):
    """Carries envelopes between replicas: to all of them, or only to those holding a user.

    A replica reads its own messages with ``subscribe`` and ``messages``. A message stored
    for recovery comes back to its sender when the sender holds the user (with its offset, so
    that a replica writes a user's stored messages in offset order); any other may come back
    too (a Redis Cluster's shard channel echoes it), and the manager drops its own by ``host_id``.

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
    async def publish_to_user(self, channel: str, user_id: str, data: bytes, *, volatile: bool = False) -> Routed:
        """Send ``data`` only to the replicas holding a socket of ``user_id`` (but this one),
        in the same round trip as the presence lookup that finds them.

        Unless ``volatile``, and in the same step, ``data`` is stored in the user's history
        when a session of theirs can still recover it (``SessionStore``).
        Returns whether the user has a socket anywhere, this replica included, by
        the presence rules of the backend (signed entries, live replicas), and the offset.
        """

    async def publish_many_to_user(self, channel: str, messages: Sequence[tuple[str, bytes]], *,
                                   volatile: bool = False) -> list[Routed | PublishError]:
        """``publish_to_user`` for each ``(user_id, data)``, at once; for each, the result or the
        ``PublishError`` it raised. A transport that can pipeline does it in one round trip."""
        results = await asyncio.gather(*(self.publish_to_user(channel, user, data, volatile=volatile)
                                         for user, data in messages), return_exceptions=True)
        return [_result_or_publish_error(result) for result in results]

    @abstractmethod
    async def subscribe(self, channel: str) -> None:
        """Start (or restart, after a failure) receiving this replica's messages on ``channel``."""

    @abstractmethod
    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel``."""

    @abstractmethod
    def messages(self) -> AsyncGenerator[Received, None]:
        """Yield envelopes, each with its offset or ``None``, until the connection is lost,
        then raise ``QueueUnavailableError``.

        After ``subscribe`` again, a transport that can resume continues where this
        stopped, so an outage delays messages rather than losing them.
        """

    @abstractmethod
    async def ping(self) -> bool:
        """Whether the queue answers right now (never raises)."""

    def on_listening_again(self, catch_up: CatchUp) -> None:  # noqa: B027 - optional hook
        """A transport that can stop hearing some users (and store what they are sent meanwhile)
        catches their sockets up with ``catch_up`` when it hears them again."""


class Presence(ABC):
    """Which users have a socket somewhere, so a message for nobody is refused, not lost.

    A backend that sends "elevator out of service" to a user who is not connected
    must hear so (it may fall back to a push notification), rather than have the
    message vanish.
    """

    @abstractmethod
    async def add(self, user_id: str, sid: str, session: Session | None = None) -> None:
        """Record a socket, and keep its ``session`` (if it has one) alive while the socket is.

        Raises ``TooManyConnectionsError`` when the user already holds the most live sockets
        allowed, ``SessionTakenError`` when another connection took a claimed ``session`` over
        meanwhile, ``QueueUnavailableError`` when this replica cannot receive the user's messages
        (the queue did not confirm it listens for them); nothing is recorded then.
        """

    @abstractmethod
    async def remove(self, user_id: str, sid: str, session: Session | None = None, *, keep: bool = False) -> None:
        """Withdraw a socket, unless a recovered connection now holds its sid elsewhere. Its
        ``session`` is kept for the recovery window when ``keep`` (a lost connection), else ended."""

    @abstractmethod
    async def is_online(self, user_id: str) -> bool:
        """Raises ``QueueUnavailableError`` when it cannot tell."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Begin any background upkeep."""

    async def heartbeat(self) -> None:  # noqa: B027 - optional hook
        """Write this replica's entries again; run after every (re)subscription to the queue."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Stop upkeep and withdraw this replica's entries."""

    def on_taken(self, callback: Callable[[str], Awaitable[None]]) -> None:  # noqa: B027 - optional hook
        """Disconnect, with ``callback``, a socket of this replica whose socket id a connection
        elsewhere now holds (it recovered the socket's session there)."""


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


class HistoryGone(Exception):
    """The entry a replay starts from was trimmed (or lost) after its session was claimed."""


class SessionStore(ABC):
    """Where recoverable sessions and each user's history of messages are kept, for all replicas.

    A session is opened when a socket connects, kept alive by the presence while the
    socket is (``Presence.add``), and kept for the recovery window after its connection
    is lost (``Presence.remove(keep=True)``): a crashed replica writes nothing, so the
    window runs from its last heartbeat. Methods raise ``QueueUnavailableError`` when
    the store cannot be reached.
    """

    @property
    @abstractmethod
    def lifetime(self) -> float:
        """The longest a session lasts after the last sign of life of its socket, in seconds."""

    @abstractmethod
    async def open(self, user_id: str, sid: str) -> Session:
        """A new session for socket ``sid``, whose replay starts after what the history holds now;
        it is written with the socket's presence (``Presence.add``)."""

    @abstractmethod
    async def claim(self, user_id: str, pid: str, offset: str | None) -> Claim | str:
        """Take over session ``pid`` of ``user_id`` for a reconnecting client that last received
        ``offset``, or say why it cannot be recovered: ``unknown``, ``expired``, ``gone`` (the
        history no longer holds what the client missed, or it missed more than is kept),
        ``too_frequent`` (claimed too often of late), ``taken`` (another connection claimed it
        at the same moment)."""

    @abstractmethod
    async def end(self, user_id: str, session: Session) -> None:
        """End a session this connection holds (a claim it will not use after all)."""

    @abstractmethod
    def history(self, user_id: str, start: str) -> AsyncIterator[list[tuple[str, bytes]]]:
        """The user's stored messages after ``start``, ``(offset, envelope)`` in order, a page at
        a time; raises ``HistoryGone`` when what follows ``start`` is no longer there (trimmed,
        lost, or not stored because the history was full)."""


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
    sessions: SessionStore | None = None


def _result_or_publish_error(result: Routed | BaseException) -> Routed | PublishError:
    """A gathered publish's result; anything but a ``PublishError`` it raised is raised again."""
    if isinstance(result, Routed | PublishError):
        return result
    raise result
