"""Auto-pipelining: concurrent senders share one Redis connection, one write per event-loop tick.

Taking a pooled connection for every send cost the emitter more CPU than Redis spends
running the command: the blocking pool's condition and timeouts, a write and a read
wake-up per message. Like node-redis and ioredis, ``AutoPipeline`` instead queues
what callers send during one tick of the event loop, writes it all at once, and one
reader task hands the replies, which Redis sends in order, back to the callers in order.
A single ``send_to_user`` went from about 1.3 times the CPU of python-socketio's stock
write-only ``AsyncRedisManager.emit`` (one plain PUBLISH) to about half of it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from ...compat.redis import stream_of
from .client import PoolExhaustedError

__all__ = ["AutoPipeline"]


@dataclass(eq=False)
class _Call:
    """One caller's commands: how many replies it waits for, and those read so far."""

    expected: int
    future: asyncio.Future[list[Any]]
    replies: list[Any] = field(default_factory=list)


class AutoPipeline:
    """Sends packed commands on ``connection``; replies in order, errors as values.

    At most ``max_calls`` calls are in flight at once; more wait up to ``wait_timeout``
    for one to finish, then raise ``PoolExhaustedError`` (Redis busy), as the pool did.
    A connection that fails or stays silent (the pool's ``socket_timeout``) fails every
    call in flight with redis-py's ``ConnectionError`` or ``TimeoutError`` (Redis down);
    the next call connects again. A cancelled caller's replies are still read, so
    the others' stay in step.
    """

    def __init__(self, connection: AbstractConnection, *, max_calls: int, wait_timeout: float) -> None:
        self._connection = connection
        self._slots = asyncio.Semaphore(max_calls)
        self._max_calls = max_calls
        self._wait_timeout = wait_timeout
        self._connecting: asyncio.Future[None] | None = None
        self._calls: deque[_Call] = deque()  # in the order their commands were queued
        self._unsent: list[bytes] = []
        self._flush_scheduled = False
        self._reader: asyncio.Task[None] | None = None

    async def execute(self, commands: Sequence[bytes]) -> list[Any]:
        """Send ``commands`` (packed) and return their replies; a Redis error reply is returned, not raised."""
        if not commands:
            return []
        await self._take_slot()
        try:
            if not self._calls:  # the connection was idle: it may have been closed meanwhile
                await self._connected()
        except BaseException:
            self._slots.release()
            raise
        loop = asyncio.get_running_loop()
        call = _Call(len(commands), loop.create_future())
        self._calls.append(call)
        self._unsent.extend(commands)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        if self._reader is None:
            self._reader = loop.create_task(self._read())
        return await call.future

    async def close(self) -> None:
        """Fail the calls in flight and close the connection."""
        if self._connecting is not None:
            self._connecting.cancel()
            await asyncio.gather(self._connecting, return_exceptions=True)
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        self._fail(RedisConnectionError("the Redis connection was closed"))
        await self._connection.disconnect()

    async def _connected(self) -> None:
        """Join the attempt to connect of every caller that found the pipeline idle: while Redis
        is down they fail together, not one connect timeout after another."""
        if self._connecting is None:
            if self._connection.is_connected and not await self._connection.can_read():
                return  # up, and Redis did not close it meanwhile: the usual case, without a task
            self._connecting = asyncio.ensure_future(self._connect())
            self._connecting.add_done_callback(self._connect_done)
        await asyncio.shield(self._connecting)

    def _connect_done(self, _attempt: asyncio.Future[None]) -> None:
        self._connecting = None

    async def _connect(self) -> None:
        """Connect, replacing a connection that Redis closed (or that has stray data) while idle."""
        connection = self._connection
        if self._calls:  # callers of the attempt before got in first: the connection is in use
            return
        if connection.is_connected and await connection.can_read():
            await connection.disconnect()
        await connection.connect()  # type: ignore[no-untyped-call]

    async def _take_slot(self) -> None:
        if not self._slots.locked():
            await self._slots.acquire()  # free: returns at once
            return
        try:
            await asyncio.wait_for(self._slots.acquire(), self._wait_timeout)
        except TimeoutError:
            raise PoolExhaustedError(f"{self._max_calls} Redis calls stayed in flight") from None

    def _flush(self) -> None:
        """Write what this tick queued, in one write; the reader reads the replies."""
        self._flush_scheduled = False
        data, self._unsent = b"".join(self._unsent), []
        # redis-py's send_packed_command is a coroutine with a timeout task: write to its stream instead
        writer = stream_of(self._connection)
        if writer is None:  # the connection failed or closed after the commands were queued
            self._fail(RedisConnectionError("the Redis connection was lost"))
        elif data:
            writer.write(data)

    async def _read(self) -> None:
        """Read a reply for each queued command, in order, until none is outstanding."""
        try:
            while self._calls:
                call = self._calls[0]
                try:
                    reply = await self._connection.read_response()
                except ResponseError as exc:
                    reply = exc
                call.replies.append(reply)
                if len(call.replies) == call.expected:
                    self._calls.popleft()
                    self._slots.release()
                    if not call.future.done():  # else its caller was cancelled
                        call.future.set_result(call.replies)
        except asyncio.CancelledError:
            self._fail(RedisConnectionError("the Redis connection was closed"))
            raise
        except Exception as exc:  # redis-py disconnected already: the next call connects again
            self._fail(exc)
        finally:
            self._reader = None

    def _fail(self, exc: Exception) -> None:
        """Fail every call in flight with ``exc``: their replies are lost or out of step."""
        self._unsent = []
        while self._calls:
            call = self._calls.popleft()
            self._slots.release()
            if not call.future.done():
                call.future.set_exception(exc)
