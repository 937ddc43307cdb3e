"""What the memory backend's parts share: the replicas on it, who holds which user, sessions, histories.

One process, one broker: the embedded default opens one for its only replica. Several
replicas on one broker (each a ``Member`` with its own transport, presence and sessions)
share it as replicas share one Redis; the unit tests run replicas so. Nothing crosses
processes.

Every map is bounded and expires, so memory follows what is live rather than what ever was:

- a user's sockets: at most ``MAX_SOCKETS_PER_USER`` (the presence), each gone with its socket;
- a user's sessions: at most ``RECOVERY_MAX_SESSIONS``; a kept one lasts the recovery window
  from its lost connection, and is told apart as ``expired`` for ``expired_kept`` more;
- a user's history: bounded by count, bytes and age (``history``), kept while a session may
  still recover from it;
- a user's record: gone once it holds none of these, so there are as many as users connected
  or lost within a window (which the handshake limits bound);
- a replica's inbox: ``INBOX_MAX_LEN`` unread messages.

Deadlines wait in a heap, one live entry per user; whatever falls due is swept at the next
look at any user, and by the presence's upkeep while nobody looks.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ...messages.replay import DEFAULT_WINDOW
from ..base import Received
from .history import History

__all__ = ["INBOX_MAX_LEN", "Inbox", "Member", "MemoryBroker", "SessionEntry", "UserState"]

# As a Redis inbox: the most a replica that does not read is sent before senders hear it is full.
INBOX_MAX_LEN = 100_000

UserKey = tuple[str, str]  # (channel, user id)


class Inbox:
    """One replica's messages, in the order they were sent to it."""

    def __init__(self, limit: int = INBOX_MAX_LEN) -> None:
        self._items: deque[Received] = deque()
        self._limit = limit
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Received) -> bool:
        """Whether it took the message (not when full)."""
        if len(self._items) >= self._limit:
            return False
        self._items.append(item)
        self._ready.set()
        return True

    def take(self) -> Received | None:
        return self._items.popleft() if self._items else None

    async def wait(self) -> None:
        """Until a message is there, or ``wake`` was called."""
        if self._items:
            return
        self._ready.clear()
        await self._ready.wait()

    def wake(self) -> None:
        """Let the reader look again (it stopped listening)."""
        self._ready.set()


@dataclass(eq=False)
class Member:
    """One replica (or emitter) on a broker: its name, as a Redis process name is, and its inbox.
    ``on_taken`` is its presence's: a socket of it whose socket id another replica now holds."""

    name: str
    inbox: Inbox = field(default_factory=Inbox)
    on_taken: Callable[[str], Awaitable[None]] | None = None


@dataclass(slots=True)
class SessionEntry:
    """A recoverable session: the connection holding it (``epoch``), its socket id, the offset its
    replay starts after, when a claim of it is next free (``tat``, ms), the replica holding it, and
    until when it can be recovered (``deadline``; ``None`` while its socket is connected)."""

    epoch: str
    sid: str
    start: str
    tat: int
    holder: Member
    deadline: float | None = None

    def live(self, now: float) -> bool:
        return self.deadline is None or self.deadline > now


@dataclass(eq=False)
class UserState:
    """One user's sockets (sid -> the replica holding it), sessions (pid -> entry) and history,
    which lasts at least until ``kept_until``."""

    sockets: dict[str, Member] = field(default_factory=dict)
    sessions: dict[str, SessionEntry] = field(default_factory=dict)
    history: History | None = None
    kept_until: float = 0.0
    due: float | None = None  # when the broker looks at it next

    def recoverable(self, now: float) -> bool:
        """Whether a session may recover what the user is sent now."""
        return any(entry.live(now) for entry in self.sessions.values())

    def keep_history(self, until: float) -> None:
        self.kept_until = max(self.kept_until, until)

    def prune_sessions(self, now: float, expired_kept: float, *, cap: int = 0, keep: str = "") -> None:
        """Drop sessions expired longer than ``expired_kept`` ago; with a ``cap``, then the oldest
        until one more fits, those of sockets still connected last; never ``keep``."""
        for pid, entry in list(self.sessions.items()):
            if pid != keep and entry.deadline is not None and entry.deadline + expired_kept <= now:
                del self.sessions[pid]
        others = [pid for pid in self.sessions if pid != keep]
        if cap and len(others) >= cap:
            def age(pid: str) -> tuple[bool, float]:
                entry = self.sessions[pid]
                return entry.sid in self.sockets, entry.deadline if entry.deadline is not None else float("inf")

            for pid in sorted(others, key=age)[:len(others) - cap + 1]:
                del self.sessions[pid]

    def next_due(self, expired_kept: float) -> float | None:
        """When something of this user expires next: a kept session, the history, its oldest message."""
        times = [entry.deadline + expired_kept for entry in self.sessions.values() if entry.deadline is not None]
        if self.history is not None:
            if not self.sessions:
                times.append(self.kept_until)
            if self.history.oldest is not None:
                times.append(self.history.oldest + self.history.limits.max_age)
        return min(times, default=None)

    def expire(self, now: float, expired_kept: float) -> None:
        self.prune_sessions(now, expired_kept)
        if self.history is None:
            return
        self.history.trim(now)
        if not self.sessions and self.kept_until <= now:
            self.history = None

    def empty(self) -> bool:
        return not (self.sockets or self.sessions) and self.history is None


class MemoryBroker:
    """The shared state of the replicas on it.

    :param expired_kept: seconds a session past its deadline is still told apart from an unknown
        one (``expired``), as on Redis until a replica prunes it.
    :param clock: seconds, monotonic; a test may pass its own.
    """

    def __init__(self, *, expired_kept: float = DEFAULT_WINDOW, clock: Callable[[], float] = time.monotonic) -> None:
        self.expired_kept = expired_kept
        self.clock = clock
        self._users: dict[UserKey, UserState] = {}
        self._listeners: dict[str, set[Member]] = {}
        self._due: list[tuple[float, int, UserKey]] = []
        self._order = itertools.count()  # ties in the heap never compare keys
        self._generation = 0

    def __len__(self) -> int:
        """Users with a record: what the broker holds memory for."""
        return len(self._users)

    def now(self) -> float:
        return self.clock()

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # --- users ---------------------------------------------------------------

    def user(self, channel: str, user_id: str) -> UserState | None:
        """A user's record as of now (what expired is swept first)."""
        self.sweep()
        return self._users.get((channel, user_id))

    def writing(self, channel: str, user_id: str) -> UserState:
        """A user's record to write to, made if there is none; ``settle`` it after."""
        self.sweep()
        return self._users.setdefault((channel, user_id), UserState())

    def settle(self, channel: str, user_id: str) -> None:
        """After a write: drop the record if nothing is left in it, else look at it when it next expires."""
        key = (channel, user_id)
        user = self._users.get(key)
        if user is None:
            return
        if user.empty():
            del self._users[key]
            return
        due = user.next_due(self.expired_kept)
        if due is not None and (user.due is None or due < user.due):
            user.due = due
            heapq.heappush(self._due, (due, next(self._order), key))

    def sweep(self) -> None:
        """Expire what fell due."""
        now = self.clock()
        while self._due and self._due[0][0] <= now:
            due, _, key = heapq.heappop(self._due)
            user = self._users.get(key)
            if user is None or user.due != due:
                continue  # settled again since, or gone
            user.due = None
            user.expire(now, self.expired_kept)
            self.settle(*key)

    def new_generation(self) -> str:
        """A history generation no earlier history of this process had (microseconds, never repeated)."""
        self._generation = max(self._generation + 1, time.time_ns() // 1000)
        return str(self._generation)

    # --- listening -----------------------------------------------------------

    def listen(self, channel: str, member: Member) -> None:
        self._listeners.setdefault(channel, set()).add(member)

    def stop_listening(self, channel: str, member: Member) -> None:
        listeners = self._listeners.get(channel)
        if listeners is not None:
            listeners.discard(member)
            if not listeners:
                del self._listeners[channel]

    def listeners(self, channel: str) -> set[Member]:
        return self._listeners.get(channel, set())
