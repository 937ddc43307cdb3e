"""Engine.IO spoken by hand, for clients no library would be: one that stops reading,
one that posts oversized or malformed long-poll bodies, one that sends junk frames.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
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
