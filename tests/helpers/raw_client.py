"""A raw Engine.IO 4 / Socket.IO 5 client that sends exactly what a test writes.

Real clients cannot send a malformed or hostile packet; this one can, over either
transport (``websocket``: one aiohttp WebSocket; ``polling``: GET and POST requests).
It answers Engine.IO pings, so a session stays open until the server closes it, and
records every Socket.IO packet it receives.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

_SEPARATOR = "\x1e"  # between packets of one long-polling body
_MAX_PACKETS_PER_POST = 16  # python-engineio refuses a longer payload


class RawClient:
    def __init__(self, url: str, *, transport: str = "websocket") -> None:
        self.url = url
        self.transport = transport
        self.packets: list[str] = []
        self.closed = False
        self.eio_sid = ""
        self._http = aiohttp.ClientSession()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()

    def _endpoint(self, **query: str) -> str:
        params = "&".join(f"{k}={v}" for k, v in {"EIO": "4", "transport": self.transport, **query}.items())
        return f"{self.url}/socket.io/?{params}"

    async def open(self) -> None:
        """The Engine.IO handshake; the reader then runs until the server closes the session."""
        if self.transport == "websocket":
            self._ws = await self._http.ws_connect(self._endpoint(), max_msg_size=0)
            opened = await self._ws.receive_str()
        else:
            async with self._http.get(self._endpoint()) as response:
                response.raise_for_status()
                opened = await response.text()
        assert opened.startswith("0"), opened
        self.eio_sid = json.loads(opened[1:])["sid"]
        self._reader = asyncio.create_task(self._read())

    async def connect(self, auth: Any = None, *, namespace: str = "/") -> str:
        """Send a Socket.IO CONNECT and return the server's answer (``0...`` or ``4...``)."""
        prefix = "" if namespace == "/" else f"{namespace},"
        start = len(self.packets)
        await self.send(f"0{prefix}{json.dumps(auth) if auth is not None else ''}")
        await self.wait_for(lambda: any(p[:1] in "04" for p in self.packets[start:]), what="a CONNECT answer")
        return next(p for p in self.packets[start:] if p[:1] in "04")

    async def send(self, *packets: str | bytes) -> None:
        """Send Socket.IO packets (text, or bytes for binary attachments) as Engine.IO messages."""
        if self.transport == "websocket":
            assert self._ws is not None
            for packet in packets:
                if isinstance(packet, bytes):
                    await self._ws.send_bytes(packet)
                else:
                    await self._ws.send_str(f"4{packet}")
            return
        for start in range(0, len(packets), _MAX_PACKETS_PER_POST):
            body = _SEPARATOR.join(f"b{base64.b64encode(p).decode()}" if isinstance(p, bytes) else f"4{p}"
                                   for p in packets[start:start + _MAX_PACKETS_PER_POST])
            try:
                async with self._http.post(self._endpoint(sid=self.eio_sid), data=body.encode()) as response:
                    await response.read()
                    refused = response.status >= 400
            except aiohttp.ServerDisconnectedError:  # an oversized body is refused before it is read
                refused = True
            if refused:
                await self._mark_closed()

    def events(self, name: str) -> list[list[Any]]:
        """The arguments of every ``name`` event received, in order."""
        found = []
        for packet in self.packets:
            if packet.startswith("2"):
                data = json.loads(packet[packet.index("["):])
                if data[0] == name:
                    found.append(data[1:])
        return found

    def errors(self) -> list[dict[str, Any]]:
        """Every error payload received: ``error`` events and CONNECT_ERROR packets."""
        found = [args[0] for args in self.events("error")]
        found += [json.loads(p[p.index("{"):])["data"] for p in self.packets if p.startswith("4") and "{" in p]
        return found

    async def wait_for(self, done: Any, *, timeout: float = 5.0, what: str = "condition") -> None:
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(done), timeout)
            except TimeoutError:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; got {self.packets!r}") from None

    async def wait_closed(self, *, timeout: float = 5.0) -> None:
        await self.wait_for(lambda: self.closed, timeout=timeout, what="the server to close the session")

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._ws is not None:
            await self._ws.close()
        await self._http.close()

    async def _read(self) -> None:
        try:
            while not self.closed:
                messages = await self._receive()
                if messages is None:
                    break
                for message in messages:
                    await self._on_message(message)
        except (aiohttp.ClientError, ConnectionError):
            pass
        await self._mark_closed()

    async def _receive(self) -> list[str] | None:
        """The next Engine.IO messages; ``None`` once the connection is closed."""
        if self._ws is not None:
            message = await self._ws.receive()
            if message.type == aiohttp.WSMsgType.TEXT:
                return [message.data]
            return None if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                            aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR) else []
        async with self._http.get(self._endpoint(sid=self.eio_sid)) as response:
            body = await response.text()
            return body.split(_SEPARATOR) if response.status == 200 else None

    async def _on_message(self, message: str) -> None:
        kind, rest = message[:1], message[1:]
        if kind == "2":  # Engine.IO ping
            if self._ws is not None:
                await self._ws.send_str("3")
            else:
                async with self._http.post(self._endpoint(sid=self.eio_sid), data=b"3") as response:
                    await response.read()
        elif kind == "1" and self._ws is None:  # over WebSocket, only the socket's close counts
            await self._mark_closed()
        elif kind == "4":
            async with self._changed:
                self.packets.append(rest)
                self._changed.notify_all()

    async def _mark_closed(self) -> None:
        async with self._changed:
            self.closed = True
            self._changed.notify_all()


OpenRaw = Callable[..., Awaitable[RawClient]]
"""The ``open_raw`` fixture (tests/conftest.py): ``await open_raw(url, transport="polling")``."""
