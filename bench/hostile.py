"""``python -m bench.hostile``: hostile clients for the soak run, a worker process of ``bench.soak``.

Each attack is one of the ways issue 9's review broke a replica, run in a bounded
loop until the orchestrator says stop (or its deadline passes). Every attacker
reconnects when the server drops it, so the pressure lasts the whole run, and
counts what the server answered: error codes, disconnects, HTTP statuses.

Commands (see ``bench.control``): ``start``, ``report``, ``stop``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import aiohttp

from kindmap_realtime.emitter import Emitter
from kindmap_realtime.errors import RealtimeError

from . import control

__all__ = ["ATTACKS", "Hostile"]

OPEN_TIMEOUT = 10.0
RETRY_PAUSE = 0.5  # after a refused or dropped connection, before the next
STOP_GRACE = 5.0  # attacks blocked on a socket the server stopped reading are cancelled after this
_WS_TIMEOUT = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0)
_POST_TIMEOUT = aiohttp.ClientTimeout(total=10)  # a POST the server never answers counts as failed:TimeoutError
BATCH = 50  # packets sent between two yields to the event loop


class Tally:
    """What one attack did and what the server answered."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def add(self, what: str, n: int = 1) -> None:
        self.counts[what] += n

    def answer(self, frame: str) -> None:
        """Count an ``error`` event by its code, and a refused connect."""
        if frame.startswith('42["error"'):
            with contextlib.suppress(ValueError, IndexError, KeyError, TypeError):
                self.add(f"error:{json.loads(frame[2:])[1]['code']}")
        elif frame.startswith("44"):
            self.add("connect_error")


async def _open(session: aiohttp.ClientSession, url: str, user: str | None) -> aiohttp.ClientWebSocketResponse:
    """An Engine.IO WebSocket, joined to ``/`` as ``user`` (dev mode) unless ``user`` is None."""
    ws = await session.ws_connect(f"{url}/socket.io/?EIO=4&transport=websocket", timeout=_WS_TIMEOUT)
    await ws.receive_str(timeout=OPEN_TIMEOUT)  # the Engine.IO open packet
    if user is not None:
        await ws.send_str("40" + json.dumps({"user_id": user}))
    return ws


async def _answer_pings(ws: aiohttp.ClientWebSocketResponse, tally: Tally) -> None:
    """Read until the server closes: answer pings, count what it says."""
    async for message in ws:
        if message.type is not aiohttp.WSMsgType.TEXT:
            continue
        if message.data == "2":
            await ws.send_str("3")
        else:
            tally.answer(message.data)


async def _flood(ws: aiohttp.ClientWebSocketResponse, frames: list[str | bytes], tally: Tally,
                 stop: Callable[[], bool]) -> None:
    """Send ``frames`` over and over until the server closes the socket or the run stops."""
    while not stop() and not ws.closed:
        for frame in frames * BATCH:
            await (ws.send_bytes(frame) if isinstance(frame, bytes) else ws.send_str(frame))
        tally.add("sent", BATCH * len(frames))
        await asyncio.sleep(0)


async def star_event(ctx: Context) -> None:
    """Event ``"*"``: once let a client address the server's ``error`` event to any room."""
    await ctx.with_socket("hostile-star", lambda ws: _flood(ws, ['42["*",null]', f'42["*","user:{ctx.victim}"]'],
                                                            ctx.tally, ctx.stopped), read=True)


async def ping_flood(ctx: Context) -> None:
    """``ping`` as fast as the socket takes it, never reading a ``pong``."""
    await ctx.with_socket("hostile-pinger", lambda ws: _flood(ws, ['42["ping"]'], ctx.tally, ctx.stopped),
                          read=False)


async def binary_bomb(ctx: Context) -> None:
    """A binary event announcing a billion attachments, then 64 KB frames for as long as it is let."""
    header = '45999999999-["ping",{"_placeholder":true,"num":0}]'
    frame = b"\x00" * 65536

    async def attack(ws: aiohttp.ClientWebSocketResponse) -> None:
        await ws.send_str(header)
        await _flood(ws, [frame], ctx.tally, ctx.stopped)

    await ctx.with_socket("hostile-binary", attack, read=True)


async def slow_consumer(ctx: Context) -> None:
    """A user that never reads while a backend pushes guidance to it."""
    user = "hostile-slow"

    async def push(ws: aiohttp.ClientWebSocketResponse) -> None:
        data = {"instruction": "x" * 4096}
        while not ctx.stopped() and not ws.closed:
            try:
                await ctx.emitter.send_to_user(user, "navigation_update", data)
                ctx.tally.add("pushed")
            except RealtimeError as exc:
                ctx.tally.add(f"push:{exc.code.value}")
            await asyncio.sleep(0.002)

    await ctx.with_socket(user, push, read=False)


async def idle_sessions(ctx: Context, count: int = 200) -> None:
    """Engine.IO sessions that answer pings and never join the namespace."""

    async def one() -> None:
        await ctx.with_socket(None, lambda ws: _answer_pings(ws, ctx.tally), read=False)

    await asyncio.gather(*(one() for _ in range(count)))


async def handshake_retry(ctx: Context) -> None:
    """One session sending CONNECT with a bad token again and again."""
    await ctx.with_socket(None, lambda ws: _flood(ws, ['40{"token":"not-a-token"}'], ctx.tally, ctx.stopped),
                          read=True)


async def oversized_post(ctx: Context) -> None:
    """Long-polling sessions each sent a POST larger than the body limit, without logging in."""
    body = "4" + "x" * (4 * 1024 * 1024)
    base = f"{ctx.url}/socket.io/?EIO=4&transport=polling"
    while not ctx.stopped():
        try:
            async with ctx.session.get(base) as response:
                sid = json.loads((await response.text())[1:])["sid"]
            async with ctx.session.post(f"{base}&sid={sid}", data=body, timeout=_POST_TIMEOUT) as response:
                ctx.tally.add(f"http:{response.status}")
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as exc:
            ctx.tally.add(f"failed:{type(exc).__name__}")
        await asyncio.sleep(0.05)


class Context:
    """What an attack needs: where to aim, a session, its tally, and when to stop."""

    def __init__(self, *, url: str, victim: str, session: aiohttp.ClientSession, emitter: Emitter,
                 deadline: float, stop: asyncio.Event) -> None:
        self.url = url
        self.victim = victim
        self.session = session
        self.emitter = emitter
        self.tally = Tally()
        self._deadline = deadline
        self._stop = stop

    def stopped(self) -> bool:
        return self._stop.is_set() or time.monotonic() > self._deadline

    async def with_socket(self, user: str | None, attack: Callable[[aiohttp.ClientWebSocketResponse], Awaitable[Any]],
                          *, read: bool) -> None:
        """Run ``attack`` on a fresh socket, again after each drop, until the run stops.

        ``read`` answers pings and counts errors meanwhile; without it the socket is
        never read, as a client whose app froze or whose network stalled.
        """
        while not self.stopped():
            try:
                ws = await _open(self.session, self.url, user)
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.tally.add(f"open_failed:{type(exc).__name__}")
                await asyncio.sleep(RETRY_PAUSE)
                continue
            self.tally.add("opened")
            reader = asyncio.create_task(_answer_pings(ws, self.tally)) if read else None
            try:
                await attack(ws)
            except (aiohttp.ClientError, ConnectionError) as exc:
                self.tally.add(f"send_failed:{type(exc).__name__}")
            finally:
                if not ws.closed:
                    await ws.close()
                if reader is not None:
                    await asyncio.gather(reader, return_exceptions=True)
            self.tally.add("dropped" if not self.stopped() else "closed_at_end")
            await asyncio.sleep(RETRY_PAUSE)


ATTACKS: dict[str, Callable[[Context], Coroutine[Any, Any, None]]] = {
    "star_event": star_event,
    "ping_flood": ping_flood,
    "binary_bomb": binary_bomb,
    "slow_consumer": slow_consumer,
    "idle_sessions": idle_sessions,
    "handshake_retry": handshake_retry,
    "oversized_post": oversized_post,
}


class Hostile:
    """The command handlers: start every attack against one replica, report, stop."""

    def __init__(self) -> None:
        self._contexts: dict[str, Context] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._emitter: Emitter | None = None

    def handlers(self) -> dict[str, control.Handler]:
        return {"start": self.start, "report": self.report, "stop": self.stop}

    async def start(self, *, url: str, victim: str, redis_url: str, channel: str, seconds: float,
                    attacks: list[str]) -> dict[str, Any]:
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        self._emitter = Emitter(redis_url, channel=channel)
        await self._emitter.connect()
        deadline = time.monotonic() + seconds
        for name in attacks:
            ctx = Context(url=url, victim=victim, session=self._session, emitter=self._emitter, deadline=deadline,
                          stop=self._stop)
            self._contexts[name] = ctx
            self._tasks.append(asyncio.create_task(ATTACKS[name](ctx), name=f"attack-{name}"))
        return {"attacks": attacks}

    async def report(self) -> dict[str, Any]:
        return {name: dict(ctx.tally.counts) for name, ctx in self._contexts.items()}

    async def stop(self) -> dict[str, Any]:
        self._stop.set()
        _done, blocked = await asyncio.wait(self._tasks, timeout=STOP_GRACE)
        for task in blocked:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        return await self.report()

    async def close(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._emitter is not None:
            await self._emitter.close()
        if self._session is not None:
            await self._session.close()


def main() -> int:
    return control.run_worker(Hostile)


if __name__ == "__main__":
    sys.exit(main())
