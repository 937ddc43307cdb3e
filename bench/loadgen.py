"""``python -m bench.loadgen``: the load generator, a worker process of the orchestrator.

It holds thousands of Socket.IO clients in one asyncio process. Each client is a
raw Engine.IO 4 / Socket.IO 5 WebSocket over aiohttp (handshake, ping/pong, event
packets) and one reading task, with no client library on top, so the load side
stays cheap; its CPU is reported with every step all the same. With ``compress``
it offers ``permessage-deflate; client_max_window_bits`` as browsers do.

Commands (see ``bench.control``): ``connect``, ``begin``, ``progress``,
``collect``; the clients close when the orchestrator closes the worker's stdin.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from collections import Counter
from typing import Any

import aiohttp

from . import control
from .message import parse_delivery

__all__ = ["Recorder"]

CONNECT_TIMEOUT = 15.0
CLOSE_TIMEOUT = 10.0


class Recorder:
    """What the clients received during the current step.

    A message stamped with another step arrived late (after its step was
    collected); it is counted as such, never as a delivery of this step.
    """

    def __init__(self) -> None:
        self.begin(step=-1)

    def begin(self, step: int) -> None:
        self.step = step
        self.received: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.late = 0
        self.first: float | None = None
        self.last: float | None = None

    def record(self, user: str, step: int, sent_at: float, now: float) -> None:
        if step != self.step:
            self.late += 1
            return
        self.received[user] += 1
        self.latencies.append(now - sent_at)
        if self.first is None:
            self.first = now
        self.last = now

    def total(self) -> int:
        return len(self.latencies)

    def report(self) -> dict[str, Any]:
        return {"step": self.step, "received": dict(self.received), "late": self.late, "first": self.first,
                "last": self.last, "latencies": [round(x, 6) for x in self.latencies]}


class Client:
    """One user's WebSocket; hands every benchmark message to the recorder."""

    def __init__(self, user: str, ws: aiohttp.ClientWebSocketResponse, recorder: Recorder) -> None:
        self.user = user
        self.ws = ws
        self.recorder = recorder
        self.task = asyncio.create_task(self._read(), name=f"client-{user}")

    @classmethod
    async def connect(cls, session: aiohttp.ClientSession, url: str, user: str, *, compress: bool,
                      recorder: Recorder, auth: dict[str, Any] | None = None) -> Client:
        """Open the WebSocket and join the default namespace as ``user`` (dev-mode auth, or ``auth``:
        ``{"token": ...}`` for a replica in JWT mode).

        Returns once the server's ``connected`` event arrived: the user is in its room.
        """
        ws = await session.ws_connect(f"{url}/socket.io/?EIO=4&transport=websocket", compress=15 if compress else 0)
        try:
            opening = await ws.receive_str(timeout=CONNECT_TIMEOUT)
            if not opening.startswith("0{"):
                raise ConnectionError(f"expected an Engine.IO open packet, got {opening[:80]!r}")
            await ws.send_str("40" + json.dumps({"user_id": user} if auth is None else auth))
            while not (frame := await ws.receive_str(timeout=CONNECT_TIMEOUT)).startswith('42["connected"'):
                if frame.startswith("44"):
                    raise ConnectionError(f"connection refused: {frame[2:200]}")
        except BaseException:
            await ws.close()
            raise
        return cls(user, ws, recorder)

    async def _read(self) -> None:
        async for message in self.ws:
            now = time.monotonic()
            if message.type is not aiohttp.WSMsgType.TEXT:
                continue
            if message.data == "2":  # Engine.IO ping: answer or the server drops us
                await self.ws.send_str("3")
                continue
            delivery = parse_delivery(message.data)
            if delivery is not None:
                self.recorder.record(self.user, delivery.step, delivery.sent_at, now)

    async def close(self) -> None:
        await self.ws.close()
        await self.task


class LoadGenerator:
    """The command handlers: a pool of clients and the recorder they share."""

    def __init__(self) -> None:
        self.recorder = Recorder()
        self.clients: list[Client] = []
        self._session: aiohttp.ClientSession | None = None

    def handlers(self) -> dict[str, control.Handler]:
        return {"connect": self.connect, "begin": self.begin, "progress": self.progress, "collect": self.collect}

    async def connect(self, *, urls: list[str], users: list[str], compress: bool,
                      concurrency: int) -> dict[str, Any]:
        """Connect ``users[i]`` to ``urls[i % len(urls)]``, ``concurrency`` handshakes at a time."""
        if self.clients:
            raise RuntimeError("already connected: one connect per worker")
        # limit=0: every WebSocket holds a connection, the default pool of 100 would stall the rest.
        session = self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        gate = asyncio.Semaphore(concurrency)
        began = time.monotonic()

        async def one(i: int, user: str) -> Client:
            async with gate:
                return await Client.connect(session, urls[i % len(urls)], user, compress=compress,
                                            recorder=self.recorder)

        results = await asyncio.gather(*(one(i, u) for i, u in enumerate(users)), return_exceptions=True)
        self.clients = [r for r in results if isinstance(r, Client)]
        errors = Counter(f"{type(r).__name__}: {r}"[:200] for r in results if isinstance(r, BaseException))
        return {"connected": len(self.clients), "failed": dict(errors), "seconds": time.monotonic() - began,
                "compressed": sum(1 for c in self.clients if c.ws.compress)}

    async def begin(self, *, step: int) -> dict[str, Any]:
        self.recorder.begin(step)
        return {}

    async def progress(self) -> dict[str, Any]:
        return {"received": self.recorder.total()}

    async def collect(self) -> dict[str, Any]:
        return {**self.recorder.report(), "open": sum(1 for c in self.clients if not c.ws.closed)}

    async def close(self) -> None:
        clients, self.clients = self.clients, []
        await asyncio.wait_for(asyncio.gather(*(c.close() for c in clients)), CLOSE_TIMEOUT)
        if self._session is not None:
            await self._session.close()
            self._session = None


def main() -> int:
    # Thousands of sockets: take the whole file descriptor allowance.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return control.run_worker(LoadGenerator)


if __name__ == "__main__":
    sys.exit(main())
