"""One shard's listening connection: ``SSUBSCRIBE`` one channel at a time, every reply read by one task.

Not redis-py's ``PubSub``, for two of its habits that lose messages on a Redis Cluster:

- on a fresh ``PubSub``, concurrent subscribes (a connect storm: many users' first
  sockets at once) can each find no connection and open one; a subscription confirmed
  on a connection that nobody reads still counts as a receiver for ``SPUBLISH``, so the
  send is answered "sent" and the message is lost;
- on reconnecting it subscribes to every channel again in one ``SSUBSCRIBE``, which a
  cluster refuses (``CROSSSLOT``) for channels of different slots, and hides the gap.

Here one connection is opened once and never again: when it fails or goes silent the
listener is reported lost and the transport listens again on a fresh one (re-reading
the slot map first), then catches up on what was stored meanwhile. Commands are written
in turn under a lock and their replies, which Redis sends in the same order, complete
them in turn; pushes (``smessage``, and a ``sunsubscribe`` nobody asked for: Redis 7
sends one to the subscribers of a slot that moved away, by resharding or failover)
are told apart by their kind and channel.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.connection import Connection, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .client import COMMAND_TIMEOUT

__all__ = ["KEEPALIVE_INTERVAL", "KEEPALIVE_TIMEOUT", "ShardListener", "node_options"]

logger = logging.getLogger(__name__)

# A listening connection is PINGed when idle; silent this long, it is presumed dead.
KEEPALIVE_INTERVAL = 1.0
KEEPALIVE_TIMEOUT = 3.0
_OPTIONS = ("username", "password", "socket_connect_timeout", "socket_timeout", "ssl_ca_certs", "ssl_cert_reqs",
            "ssl_certfile", "ssl_keyfile")
_PONG = b"pong"


def node_options(cluster_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The cluster client's credentials, TLS and timeouts, for a connection of our own to one node.
    RESP2: on a listening connection every push is a plain reply, read in order with the answers
    (redis-py's RESP3 parser hands pushes to a callback instead)."""
    options = {key: value for key, value in cluster_kwargs.items() if key in _OPTIONS}
    options["protocol"] = 2
    options["connection_class"] = SSLConnection if issubclass(
        cluster_kwargs.get("connection_class", Connection), SSLConnection) else Connection
    return options


@dataclass(slots=True)
class _Pending:
    """A command written and not answered yet: the kind of reply it expects, for which channel."""

    kind: bytes
    channel: bytes | None
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def __post_init__(self) -> None:
        # A waiter that timed out no longer looks at it: its failure is no news to anyone.
        self.done.add_done_callback(lambda done: done.cancelled() or done.exception())


class ShardListener:
    """Listens to shard channels of one node on one connection, read by one task.

    :param out: where every message heard goes (its payload).
    :param on_lost: called once when the connection failed or went silent (never after ``close``).
    :param on_dropped: called with a channel Redis unsubscribed on its own (its slot moved).
    """

    def __init__(self, host: str, port: int, *, options: Mapping[str, Any], out: asyncio.Queue[bytes],
                 on_lost: Callable[[ShardListener, Exception], None],
                 on_dropped: Callable[[ShardListener, str], None]) -> None:
        kwargs = dict(options)
        connection_class: type[Connection] = kwargs.pop("connection_class", Connection)
        self.address = f"{host}:{port}"
        self._connection = connection_class(host=host, port=port, retry=Retry(NoBackoff(), 0), **kwargs)
        self._out = out
        self._on_lost = on_lost
        self._on_dropped = on_dropped
        self.channels: set[str] = set()  # confirmed, and not unsubscribed since
        self._pending: collections.deque[_Pending] = collections.deque()
        self._writing = asyncio.Lock()
        self._opening: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []  # the reader, the keepalive, a disconnect after a failure
        self._failure: Exception | None = None
        self._closing = False
        self._last_heard = time.monotonic()

    @property
    def failed(self) -> bool:
        return self._failure is not None or self._closing

    async def subscribe(self, channel: str) -> None:
        """Listen to ``channel``; returns once Redis confirmed it. Raises redis-py's errors
        (a refusal, ``MOVED``; a failed or silent connection, which is also reported lost)."""
        await self._command(b"ssubscribe", channel, ("SSUBSCRIBE", channel), COMMAND_TIMEOUT)

    async def unsubscribe(self, channel: str) -> None:
        """Stop listening to ``channel``, returning once Redis confirmed it: what Redis sent on it
        before is read (and counted by the replica when its user left), not dropped with the
        connection. A failing connection is not waited for: the listener is reported lost."""
        self.channels.discard(channel)
        try:
            await self._command(b"sunsubscribe", channel, ("SUNSUBSCRIBE", channel), COMMAND_TIMEOUT)
        except (RedisError, OSError) as exc:
            logger.debug("unsubscribe not confirmed: %s", exc)

    async def close(self) -> None:
        """Stop reading and close the connection; nothing is reported lost from now on."""
        self._closing = True
        tasks = [task for task in (self._opening, *self._tasks) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._fail_pending(RedisConnectionError("the listener closed"))
        await self._disconnect()

    async def _command(self, kind: bytes, channel: str | None, args: tuple[str, ...], timeout: float) -> None:
        """Write one command and wait for its reply, in turn with the others."""
        if self._opening is None:
            self._opening = asyncio.create_task(self._open(), name="redis-shard-open")
        await asyncio.shield(self._opening)
        async with self._writing:
            # Checked with nothing awaited before the write: redis-py would connect again on its own.
            if self.failed or not self._connection.is_connected:
                raise RedisConnectionError(f"the listening connection to {self.address} is gone")
            pending = _Pending(kind, channel.encode() if channel is not None else None)
            self._pending.append(pending)
            try:
                await self._connection.send_command(*args, check_health=False)
            except (RedisError, OSError) as exc:
                self._fail(exc)
                raise
        try:
            await asyncio.wait_for(asyncio.shield(pending.done), timeout)
        except TimeoutError:
            error = RedisTimeoutError(f"{args[0]} unanswered by {self.address} for {timeout} s")
            self._fail(error)
            raise error from None

    async def _open(self) -> None:
        try:
            await self._connection.connect()  # type: ignore[no-untyped-call]
        except (RedisError, OSError) as exc:
            self._fail(exc)
            raise
        self._last_heard = time.monotonic()
        self._tasks += [asyncio.create_task(self._read(), name="redis-shard-reader"),
                        asyncio.create_task(self._keep_alive(), name="redis-shard-keepalive")]

    async def _read(self) -> None:
        while True:
            try:
                reply = await self._connection.read_response(timeout=math.inf)
            except ResponseError as exc:  # the answer to the oldest command: a refusal, MOVED
                self._last_heard = time.monotonic()
                if self._pending:
                    self._pending.popleft().done.set_exception(exc)
                continue
            except (RedisError, OSError) as exc:
                self._fail(exc)
                return
            self._last_heard = time.monotonic()
            self._dispatch(reply)

    def _dispatch(self, reply: Any) -> None:
        if not isinstance(reply, list):  # +PONG: a PING answered outside pub/sub mode (no channel left)
            self._answered(_PONG, None)
            return
        kind = reply[0].lower() if reply and isinstance(reply[0], bytes) else b""
        if kind == b"smessage" and len(reply) == 3:
            self._out.put_nowait(reply[2])
        elif kind == b"sunsubscribe" and not self._expects(kind, reply[1]):
            name = reply[1].decode()
            if name in self.channels:
                self.channels.discard(name)
                self._on_dropped(self, name)
        elif kind in (b"ssubscribe", b"sunsubscribe", _PONG):
            self._answered(kind, reply[1] if kind != _PONG else None)
        else:
            logger.debug("unexpected reply on a listening connection: %r", kind)

    def _expects(self, kind: bytes, channel: bytes | None) -> bool:
        return bool(self._pending) and self._pending[0].kind == kind and self._pending[0].channel == channel

    def _answered(self, kind: bytes, channel: bytes | None) -> None:
        """The oldest command's reply. The channels change here, in the order Redis acted: a push
        read right after a confirmation finds the channel it concerns."""
        if not self._expects(kind, channel):
            self._fail(RedisConnectionError(f"{self.address} answered {kind!r} out of turn"))
            return
        if kind == b"ssubscribe" and channel is not None:
            self.channels.add(channel.decode())
        elif channel is not None:
            self.channels.discard(channel.decode())
        done = self._pending.popleft().done
        if not done.done():
            done.set_result(None)

    async def _keep_alive(self) -> None:
        """PING the idle connection; one silent for ``KEEPALIVE_TIMEOUT`` is presumed dead."""
        while True:
            await asyncio.sleep(KEEPALIVE_INTERVAL)
            if time.monotonic() - self._last_heard >= KEEPALIVE_INTERVAL:
                try:
                    await self._command(_PONG, None, ("PING",), KEEPALIVE_TIMEOUT)
                except (RedisError, OSError):
                    return  # reported lost already

    def _fail(self, error: Exception) -> None:
        """The connection is unusable: fail what waits on it, stop reading, report it once."""
        if self._failure is not None:
            return
        self._failure = error
        self._fail_pending(RedisConnectionError(f"the listening connection to {self.address} failed: {error}"))
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        self._tasks.append(asyncio.get_running_loop().create_task(self._disconnect(), name="redis-shard-disconnect"))
        if not self._closing:
            self._on_lost(self, error)

    async def _disconnect(self) -> None:
        try:
            await self._connection.disconnect(nowait=True)
        except (RedisError, OSError):
            pass  # closing a dead connection can fail; it is gone either way

    def _fail_pending(self, error: Exception) -> None:
        while self._pending:
            done = self._pending.popleft().done
            if not done.done():
                done.set_exception(error)
