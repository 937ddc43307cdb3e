"""Engine.IO spoken by hand, for clients no library would be: one that stops reading,
one that posts oversized or malformed long-poll bodies, one that sends junk frames, one that
answers pings and nothing else.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp

RECORD_SEPARATOR = "\x1e"


def engineio_url(base_url: str, *, transport: str = "polling", sid: str | None = None) -> str:
    url = f"{base_url}/socket.io/?EIO=4&transport={transport}"
    return url if sid is None else f"{url}&sid={sid}"


async def open_polling_session(session: aiohttp.ClientSession, base_url: str) -> str:
    """A long-polling Engine.IO session (not yet a Socket.IO connection); returns its sid."""
    async with session.get(engineio_url(base_url)) as response:
        assert response.status == 200, await response.text()
        return str(json.loads((await response.text())[1:])["sid"])


async def poll(session: aiohttp.ClientSession, base_url: str, sid: str) -> tuple[int, list[str]]:
    """One long-poll GET: its status and the packets it carried."""
    async with session.get(engineio_url(base_url, sid=sid)) as response:
        text = await response.text()
        return response.status, text.split(RECORD_SEPARATOR) if response.status == 200 else [text]


def _masked_frame(opcode: int, data: bytes) -> bytes:
    mask = os.urandom(4)
    size = len(data)
    if size < 126:
        header = bytes([0x80 | opcode, 0x80 | size])
    elif size < 1 << 16:
        header = bytes([0x80 | opcode, 0x80 | 126]) + struct.pack("!H", size)
    else:
        header = bytes([0x80 | opcode, 0x80 | 127]) + struct.pack("!Q", size)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


class NonReadingClient:
    """A Socket.IO client over a raw WebSocket that connects, then never reads again.

    Its receive buffer is made small, so what the server pushes piles up on the
    server's side, as with a phone that went into a tunnel but keeps its TCP connection.
    """

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)

    def connect(self, auth: dict[str, Any], *, timeout: float = 5.0) -> None:
        """Handshake and wait for ``connected`` (blocking; the replica is another process)."""
        self.sock.settimeout(timeout)
        self.sock.connect(self.address)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {}:{}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).format(*self.address, key).encode())
        received = b""
        while b"\r\n\r\n" not in received:
            received += self._recv()
        assert received.startswith(b"HTTP/1.1 101"), received[:200]
        self.sock.sendall(_masked_frame(0x1, ("40" + json.dumps(auth)).encode()))
        while b'"connected"' not in received:
            received += self._recv()

    def send(self, packet: str) -> None:
        """Send one Socket.IO packet (blocking), as an Engine.IO message in a WebSocket frame."""
        self.sock.sendall(_masked_frame(0x1, ("4" + packet).encode()))

    def _recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection during the handshake")
        return chunk

    def closed_by_server(self) -> bool:
        """Whether the server has reset or closed the connection (reads what is left to find out)."""
        self.sock.settimeout(5.0)
        try:
            while self.sock.recv(1 << 20):
                pass
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        self.sock.close()


class StubbornClient:
    """A Socket.IO client over a raw WebSocket that answers Engine.IO pings and does nothing else:
    it never closes its connection and never answers a close frame, so its session and its TCP
    connection end only when the server ends them. Like a client bent on holding a replica's
    connection slots after the server has disconnected it.

    ``received`` holds every Engine.IO message but pings, in order (``"41"`` is a Socket.IO
    DISCONNECT, ``"1"`` an Engine.IO CLOSE); ``ended`` says the server has closed the connection.
    """

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.received: list[str] = []
        self.ended = False
        self._writer: asyncio.StreamWriter | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()

    async def connect(self, auth: dict[str, Any], *, refused: bool = False) -> None:
        """Handshake over a WebSocket, join namespace ``/`` and wait for ``connected`` (or, when
        ``refused``, for the server's CONNECT_ERROR)."""
        reader, self._writer = await asyncio.open_connection(*self.address)
        key = base64.b64encode(os.urandom(16)).decode()
        self._writer.write((
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {}:{}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).format(*self.address, key).encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101"), head[:200]
        self._reader = asyncio.create_task(self._read(reader))
        self.send("0" + json.dumps(auth))
        if refused:
            await self.wait_for(lambda: any(m.startswith("44") for m in self.received), what="a CONNECT_ERROR")
        else:
            await self.wait_for(lambda: any(m.startswith('42["connected"') for m in self.received), what="connected")

    def refusal(self) -> str:
        """The code of the CONNECT_ERROR received."""
        return str(next(json.loads(m[2:])["data"]["code"] for m in self.received if m.startswith("44")))

    def send(self, packet: str) -> None:
        """Send one Socket.IO packet, as an Engine.IO message in a WebSocket frame."""
        self._write("4" + packet)

    def errors(self) -> list[str]:
        """The codes of the ``error`` events received, in order."""
        return [json.loads(m[2:])[1]["code"] for m in self.received if m.startswith('42["error"')]

    async def wait_disconnected(self, *, timeout: float = 10.0) -> None:
        """Wait for the server's Socket.IO DISCONNECT."""
        await self.wait_for(lambda: "41" in self.received, timeout=timeout, what="the server's DISCONNECT")

    async def wait_hung_up(self, *, within: float = 5.0, timeout: float = 10.0) -> None:
        """Wait up to ``timeout`` s for the server's DISCONNECT, then at most ``within`` s more for the
        server to close the connection (for a client that reads at once, only the close is left)."""
        await self.wait_disconnected(timeout=timeout)
        await self.wait_for(lambda: self.ended, timeout=within, what="the server to close the connection")

    async def wait_for(self, done: Callable[[], bool], *, timeout: float = 5.0, what: str = "condition") -> None:
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(done), timeout)
            except TimeoutError:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; got {self.received!r}") from None

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._writer is not None:
            self._writer.close()

    def _write(self, text: str) -> None:
        assert self._writer is not None
        self._writer.write(_masked_frame(0x1, text.encode()))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                opcode, data = await _server_frame(reader)
                if opcode == 0x1 and data == b"2":
                    self._write("3")  # the pong: the only thing it ever does on its own
                elif opcode == 0x1:
                    await self._record(data.decode())
        await self._mark_ended()

    async def _record(self, message: str) -> None:
        async with self._changed:
            self.received.append(message)
            self._changed.notify_all()

    async def _mark_ended(self) -> None:
        async with self._changed:
            self.ended = True
            self._changed.notify_all()


async def _server_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The opcode and payload of the next WebSocket frame from a server (never masked)."""
    head = await reader.readexactly(2)
    size = head[1] & 0x7F
    if size == 126:
        size = struct.unpack("!H", await reader.readexactly(2))[0]
    elif size == 127:
        size = struct.unpack("!Q", await reader.readexactly(8))[0]
    return head[0] & 0x0F, await reader.readexactly(size)


OpenStubborn = Callable[..., Awaitable[StubbornClient]]
"""The ``open_stubborn`` fixture (tests/integration/conftest.py): ``await open_stubborn(url, auth)``."""
