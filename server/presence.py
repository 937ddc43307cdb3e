"""Which users have a socket somewhere, so a message for nobody is refused, not lost.

A backend that sends "elevator out of service" to a user who is not connected
must hear so (it may fall back to a push notification), rather than have the
message vanish. ``LocalPresence`` answers for a single replica from its own
rooms; ``RedisPresence`` answers for all replicas.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable

from redis import asyncio as aioredis
from redis.exceptions import RedisError
from socketio.base_manager import BaseManager

from .errors import QueueBusyError, QueueUnavailableError
from .queue.backends.redis import PoolExhaustedError
from .queue.keys import instance_key, presence_key, user_room

__all__ = ["LocalPresence", "MemoryPresence", "Presence", "RedisPresence"]

logger = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = 3.0
INSTANCE_TTL_MS = 10_000
PRESENCE_TTL_S = 24 * 3600

# True when any socket of the user lives on a replica whose heartbeat key exists;
# entries of dead replicas are removed on the way.
_IS_ONLINE = """
local entries = redis.call('HGETALL', KEYS[1])
local online = 0
for i = 1, #entries, 2 do
  if redis.call('EXISTS', ARGV[1] .. entries[i + 1]) == 1 then
    online = 1
  else
    redis.call('HDEL', KEYS[1], entries[i])
  end
end
return online
"""


class Presence(ABC):
    @abstractmethod
    async def add(self, user_id: str, sid: str) -> None: ...

    @abstractmethod
    async def remove(self, user_id: str, sid: str) -> None: ...

    @abstractmethod
    async def is_online(self, user_id: str) -> bool:
        """Raises ``QueueUnavailableError`` when it cannot tell."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Begin any background upkeep."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Stop upkeep and withdraw this replica's entries."""


class LocalPresence(Presence):
    """Single replica: a user is online when their room here is not empty."""

    def __init__(self, manager: BaseManager, namespace: str = "/") -> None:
        self._manager = manager
        self._namespace = namespace

    async def add(self, user_id: str, sid: str) -> None:
        """Room membership already records it."""

    async def remove(self, user_id: str, sid: str) -> None:
        """Room membership already records it."""

    async def is_online(self, user_id: str) -> bool:
        return any(True for _ in self._manager.get_participants(self._namespace, user_room(user_id)))


class MemoryPresence(Presence):
    """Replicas in one process sharing a ``MemoryBroker`` (unit tests): a shared table."""

    def __init__(self, sockets: dict[str, set[str]]) -> None:
        self._sockets = sockets  # user id -> sids, shared by the replicas

    async def add(self, user_id: str, sid: str) -> None:
        self._sockets.setdefault(user_id, set()).add(sid)

    async def remove(self, user_id: str, sid: str) -> None:
        self._sockets.get(user_id, set()).discard(sid)

    async def is_online(self, user_id: str) -> bool:
        return bool(self._sockets.get(user_id))


class RedisPresence(Presence):
    """Sockets in per-user Redis hashes, tied to replicas by a heartbeat key.

    A replica that dies stops its heartbeat; within ``INSTANCE_TTL_MS`` its
    sockets stop counting. Entries name the replica *process* (its instance id
    plus a random suffix), so a replacement started under the same
    ``INSTANCE_ID`` never revives a dead process's sockets. When the heartbeat
    finds its key missing (first beat, or Redis restarted empty) it writes all of
    this replica's sockets again; it also rewrites them well before their TTL.
    """

    def __init__(self, client: aioredis.Redis, *, channel: str, instance_id: str,
                 heartbeat_interval: float = HEARTBEAT_INTERVAL) -> None:
        self._redis = client
        self._channel = channel
        self._instance_id = f"{instance_id}:{uuid.uuid4().hex[:12]}"
        self._rewritten_at = 0.0  # monotonic time of the last full rewrite
        self._heartbeat_interval = heartbeat_interval
        self._local: dict[str, str] = {}  # sid -> user id, the sockets of this replica
        self._unsynced = False  # a write failed: the heartbeat must write everything again
        self._stale: set[tuple[str, str]] = set()  # (user id, sid) whose removal failed
        self._is_online = client.register_script(_IS_ONLINE)
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def add(self, user_id: str, sid: str) -> None:
        self._local[sid] = user_id
        await self._write([(user_id, sid)])

    async def remove(self, user_id: str, sid: str) -> None:
        self._local.pop(sid, None)
        try:
            await self._redis.hdel(presence_key(self._channel, user_id), sid)
        except (RedisError, OSError) as exc:
            self._stale.add((user_id, sid))
            logger.warning("presence: could not remove a socket", extra={"error": str(exc)})

    async def is_online(self, user_id: str) -> bool:
        prefix = instance_key(self._channel, "")
        try:
            return bool(await self._is_online(keys=[presence_key(self._channel, user_id)], args=[prefix]))
        except PoolExhaustedError as exc:
            raise QueueBusyError(f"Redis is busy, retry shortly: {exc}") from exc
        except (RedisError, OSError) as exc:
            raise QueueUnavailableError(f"presence lookup failed: {exc}") from exc

    async def heartbeat(self) -> None:
        """Refresh this replica's key and repair what an outage left behind.

        If the key had vanished (first beat, Redis restarted empty) or a write
        failed meanwhile, every socket of this replica is written again.
        """
        key = instance_key(self._channel, self._instance_id)
        previous = await self._redis.set(key, b"1", px=INSTANCE_TTL_MS, get=True)
        if self._stale:
            stale = set(self._stale)
            async with self._redis.pipeline(transaction=False) as pipe:
                for user_id, sid in stale:
                    pipe.hdel(presence_key(self._channel, user_id), sid)
                await pipe.execute()
            self._stale -= stale
        overdue = time.monotonic() - self._rewritten_at > PRESENCE_TTL_S / 4
        if (previous is None or self._unsynced or overdue) and self._local:
            await self._rewrite_all()
            if previous is None:
                logger.info("presence: sockets announced again", extra={"sockets": len(self._local)})

    async def _rewrite_all(self) -> None:
        self._unsynced = False
        self._rewritten_at = time.monotonic()
        snapshot = list(self._local.items())
        await self._write([(user, sid) for sid, user in snapshot])
        # A socket that left while the rewrite was in flight must not come back to life.
        gone = [(user, sid) for sid, user in snapshot if sid not in self._local]
        for user, sid in gone:
            await self.remove(user, sid)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._beat_forever(), name="presence-heartbeat")

    async def close(self) -> None:
        if self._task is not None:
            self._stopping.set()
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for sid, user_id in self._local.items():
                    pipe.hdel(presence_key(self._channel, user_id), sid)
                pipe.delete(instance_key(self._channel, self._instance_id))
                await pipe.execute()
        except (RedisError, OSError) as exc:
            logger.warning("presence: could not withdraw on close", extra={"error": str(exc)})

    async def _beat_forever(self) -> None:
        # A flag, not only cancel(): redis-py may turn a cancellation in mid-command
        # into a connection error, which this loop would otherwise survive.
        while not self._stopping.is_set():
            try:
                await self.heartbeat()
            except (RedisError, OSError) as exc:
                logger.debug("presence heartbeat failed: %s", exc)
            try:
                await asyncio.wait_for(self._stopping.wait(), self._heartbeat_interval)
            except TimeoutError:
                pass

    async def _write(self, entries: Iterable[tuple[str, str]]) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for user_id, sid in entries:
                    key = presence_key(self._channel, user_id)
                    pipe.hset(key, sid, self._instance_id)
                    pipe.expire(key, PRESENCE_TTL_S)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            self._unsynced = True  # the heartbeat writes every socket again once Redis is back
            logger.warning("presence: could not record sockets", extra={"error": str(exc)})
