"""``python -m bench.churner``: one user's token losing its connection in a loop, a worker of ``bench.churn``.

Each cycle is what a rider's phone does when it loses the network right after it got in: a
WebSocket handshake (Engine.IO 4), a Socket.IO CONNECT with the token, the server's
``connected`` event, then the TCP connection dropped (a reset: no WebSocket close, no
Socket.IO DISCONNECT), so the server keeps the session recoverable for the recovery window.
It never sends a ``pid`` back: every cycle is a new session, as from a client that cannot
recover (python-socketio) or a page that reloaded.

One loop per pair of source address (127.0.0.N) and replica, each paced open loop at
``rate`` cycles per second (``bench.pacing``): a loop that fell behind catches up, within the
handshake limit's burst. The client is a few lines of asyncio streams, not aiohttp: a cycle
must cost the load side little, and a reset is what is wanted, not a polite close.

Commands (see ``bench.control``): ``start``, ``report``, ``stop``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import struct
import sys
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

from . import control
from .pacing import Schedule

__all__ = ["Churner", "Tally", "client_frame", "cycle", "refusal_code"]

CYCLE_TIMEOUT = 10.0
STOP_GRACE = 5.0
_TEXT = 0x1


class Tally:
    """What the cycles got: ``connected`` (a session opened), refusals by code, failures by kind."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def add(self, what: str) -> None:
        self.counts[what] += 1


def refusal_code(body: str) -> str:
    """The ``code`` of an error in the server's schema (an HTTP body, or a CONNECT_ERROR's data), or ``?``."""
    try:
        data = json.loads(body)
        data = data.get("data", data) if isinstance(data, dict) else data
        return str(data["code"]) if isinstance(data, dict) and "code" in data else "?"
    except ValueError:
        return "?"


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One WebSocket frame from the server (never masked, never fragmented by python-engineio)."""
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        length = struct.unpack("!H", await reader.readexactly(2))[0]
    elif length == 127:
        length = struct.unpack("!Q", await reader.readexactly(8))[0]
    return first & 0x0F, await reader.readexactly(length)


def client_frame(text: str) -> bytes:
    """A masked, final text frame, as a client must send it."""
    data = text.encode()
    mask = os.urandom(4)
    length = len(data)
    header = bytes([0x80 | _TEXT])
    if length < 126:
        header += bytes([0x80 | length])
    elif length < 65536:
        header += bytes([0x80 | 126]) + struct.pack("!H", length)
    else:
        header += bytes([0x80 | 127]) + struct.pack("!Q", length)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


async def cycle(url: str, source: str, auth: dict[str, Any], tally: Tally) -> None:
    """One connection from ``source``: handshake, CONNECT with ``auth``, ``connected``, reset."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {host}:{port}\r\n"
                      f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        status = int(head.split(" ", 2)[1])
        if status != 101:
            length = next((int(line.split(":", 1)[1]) for line in head.split("\r\n")
                           if line.lower().startswith("content-length:")), 0)
            tally.add(f"http {status} {refusal_code((await reader.readexactly(length)).decode())}")
            return
        _opcode, opening = await _read_frame(reader)
        if not opening.startswith(b"0{"):
            tally.add("no open packet")
            return
        writer.write(client_frame("40" + json.dumps(auth)))
        while True:
            opcode, data = await _read_frame(reader)
            if opcode != _TEXT:
                tally.add("closed before connected")
                return
            if data.startswith(b'42["connected"'):  # Engine.IO message 4, Socket.IO EVENT 2
                tally.add("connected")
                return
            if data.startswith(b"44"):  # Engine.IO message 4, Socket.IO CONNECT_ERROR 4
                tally.add(f"connect_error {refusal_code(data[2:].decode())}")
                return
    finally:
        writer.transport.abort()  # a reset: what the server sees of a phone that lost its network


class Churner:
    """The command handlers: churn loops against the replicas until stopped or their time is up."""

    def __init__(self) -> None:
        self.tally = Tally()
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._began: float | None = None
        self._ended: float | None = None

    def handlers(self) -> dict[str, control.Handler]:
        return {"start": self.start, "report": self.report, "stop": self.stop}

    async def start(self, *, urls: list[str], sources: list[str], token: str, rate: float,
                    seconds: float) -> dict[str, Any]:
        """One loop per (source, url), each at ``rate`` cycles/s for ``seconds`` at most."""
        auth = {"token": token}
        self._began = time.monotonic()

        async def loop(source: str, url: str) -> None:
            schedule = Schedule(rate, seconds, time.monotonic())
            while not self._stop.is_set() and (due := schedule.take(time.monotonic())) is not None:
                if (delay := due - time.monotonic()) > 0:
                    with contextlib.suppress(TimeoutError):  # woken early by stop
                        await asyncio.wait_for(self._stop.wait(), delay)
                    if self._stop.is_set():
                        return
                try:
                    await asyncio.wait_for(cycle(url, source, auth, self.tally), CYCLE_TIMEOUT)
                except (OSError, asyncio.IncompleteReadError, ValueError, IndexError, TimeoutError) as exc:
                    self.tally.add(f"failed {type(exc).__name__}")

        self._tasks = [asyncio.create_task(loop(source, url), name=f"churn-{source}-{url}")
                       for source in sources for url in urls]
        return {"loops": len(self._tasks)}

    async def report(self) -> dict[str, Any]:
        end = self._ended or time.monotonic()
        return {"counts": dict(self.tally.counts), "seconds": 0.0 if self._began is None else end - self._began}

    async def stop(self) -> dict[str, Any]:
        """Stop every loop (a cycle under way finishes, within ``STOP_GRACE``) and report."""
        self._stop.set()
        _done, running = await asyncio.wait(self._tasks, timeout=STOP_GRACE) if self._tasks else (set(), set())
        for task in running:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._ended = self._ended or time.monotonic()
        return await self.report()

    async def close(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def main() -> int:
    return control.run_worker(Churner)


if __name__ == "__main__":
    sys.exit(main())
