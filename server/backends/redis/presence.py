"""Presence for all replicas: per-user Redis hashes, tied to live replicas by heartbeats."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import Iterable

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from ...errors import QueueBusyError, QueueUnavailableError
from ...queue.replay import DEFAULT_WINDOW
from ..base import Presence
from .keys import instance_key, presence_key
from .transport import PoolExhaustedError

__all__ = ["RedisPresence"]

logger = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = 3.0
INSTANCE_TTL_MS = 10_000
# Every heartbeat refreshes it; it only clears the hashes of users whose replicas all died.
PRESENCE_TTL_S = 60

# The entries (sid, value, ...) of sockets on replicas whose heartbeat key exists;
# entries of dead replicas are removed on the way. A value is the replica process,
# optionally followed by "#<ms>#<hex HMAC>" (see RedisPresence).
_LIVE_ENTRIES = """
local entries = redis.call('HGETALL', KEYS[1])
local live = {}
for i = 1, #entries, 2 do
  local value = entries[i + 1]
  local process = string.match(value, '^(.*)#%d+#%x+$') or value
  if redis.call('EXISTS', ARGV[1] .. process) == 1 then
    live[#live + 1] = entries[i]
    live[#live + 1] = value
  else
    redis.call('HDEL', KEYS[1], entries[i])
  end
end
return live
"""


class RedisPresence(Presence):
    """Sockets in per-user Redis hashes, tied to replicas by a heartbeat key.

    A replica that dies stops its heartbeat; within ``INSTANCE_TTL_MS`` its
    sockets stop counting. Entries name the replica *process* (its instance id
    plus a random suffix), so a replacement started under the same
    ``INSTANCE_ID`` never revives a dead process's sockets.

    Every heartbeat writes all of this replica's sockets again (one pipelined
    HSET + EXPIRE each), so whatever removed them -- Redis restarted empty, a
    write that failed, a neighbour deleting keys -- is repaired within one beat.

    With a signing key, an entry is ``<process>#<ms>#<HMAC>``: the HMAC covers the
    channel, user, sid, process and time, and only entries with a valid HMAC no
    older than ``INSTANCE_TTL_MS`` plus ``clock_skew`` count. A neighbour who can
    write to Redis cannot make an unknown user look connected; replaying a real
    entry keeps a user who left "online" for that long at most.
    """

    def __init__(self, client: aioredis.Redis, *, channel: str, instance_id: str,
                 heartbeat_interval: float = HEARTBEAT_INTERVAL, signing_key: bytes | None = None,
                 clock_skew: float = DEFAULT_WINDOW) -> None:
        self._redis = client
        self._channel = channel
        self._instance_id = f"{instance_id}:{uuid.uuid4().hex[:12]}"
        self._heartbeat_interval = heartbeat_interval
        self._signing_key = signing_key
        self._skew_ms = int(clock_skew * 1000)
        self._local: dict[str, str] = {}  # sid -> user id, the sockets of this replica
        self._stale: set[tuple[str, str]] = set()  # (user id, sid) whose removal failed
        self._is_online = client.register_script(_LIVE_ENTRIES)
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
            entries = await self._is_online(keys=[presence_key(self._channel, user_id)], args=[prefix])
        except PoolExhaustedError as exc:
            raise QueueBusyError(f"Redis is busy, retry shortly: {exc}") from exc
        except (RedisError, OSError) as exc:
            raise QueueUnavailableError(f"presence lookup failed: {exc}") from exc
        key = self._signing_key
        if key is None:
            return bool(entries)
        now_ms = int(time.time() * 1000)
        pairs = zip(entries[::2], entries[1::2], strict=True)
        return any(self._genuine(key, user_id, sid, value, now_ms) for sid, value in pairs)

    async def heartbeat(self) -> None:
        """Refresh this replica's key and write every socket of this replica again."""
        key = instance_key(self._channel, self._instance_id)
        previous = await self._redis.set(key, b"1", px=INSTANCE_TTL_MS, get=True)
        if self._stale:
            stale = set(self._stale)
            async with self._redis.pipeline(transaction=False) as pipe:
                for user_id, sid in stale:
                    pipe.hdel(presence_key(self._channel, user_id), sid)
                await pipe.execute()
            self._stale -= stale
        if not self._local:
            return
        snapshot = list(self._local.items())
        await self._write([(user, sid) for sid, user in snapshot])
        # A socket that left while the rewrite was in flight must not come back to life.
        for sid, user in snapshot:
            if sid not in self._local:
                await self.remove(user, sid)
        if previous is None:
            logger.info("presence: sockets announced again", extra={"sockets": len(self._local)})

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
        """Record sockets; a failure is logged and left to the next heartbeat, which writes all again."""
        now_ms = int(time.time() * 1000)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for user_id, sid in entries:
                    key = presence_key(self._channel, user_id)
                    pipe.hset(key, sid, self._entry(user_id, sid, now_ms))
                    pipe.expire(key, PRESENCE_TTL_S)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            logger.warning("presence: could not record sockets", extra={"error": str(exc)})

    def _entry(self, user_id: str, sid: str, now_ms: int) -> str:
        if self._signing_key is None:
            return self._instance_id
        return f"{self._instance_id}#{now_ms}#{self._mac(self._signing_key, user_id, sid, self._instance_id, now_ms)}"

    def _mac(self, key: bytes, user_id: str, sid: str, process: str, ts_ms: int) -> str:
        text = f"{self._channel}\n{user_id}\n{sid}\n{process}\n{ts_ms}".encode()
        return hmac.new(key, text, hashlib.sha256).hexdigest()[:32]

    def _genuine(self, key: bytes, user_id: str, sid: bytes, value: bytes, now_ms: int) -> bool:
        """An entry this replica's key signed, recently enough to be a live heartbeat's."""
        # From the right, as the Lua script does: the process id (INSTANCE_ID) may hold a '#'.
        parts = value.decode("utf-8", "replace").rsplit("#", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            return False
        process, ts_text, mac = parts
        ts_ms = int(ts_text)
        if not -self._skew_ms <= now_ms - ts_ms <= INSTANCE_TTL_MS + self._skew_ms:
            return False
        expected = self._mac(key, user_id, sid.decode("utf-8", "replace"), process, ts_ms)
        return hmac.compare_digest(mac, expected)
