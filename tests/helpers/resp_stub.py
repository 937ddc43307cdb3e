"""A stub Redis that speaks just enough RESP2 pub/sub for a listening connection, and that a
test steers: it pushes what Redis would (a ``sunsubscribe`` of a moved slot), refuses channels,
falls silent or cuts its connections."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def _array(*items: bytes | int) -> bytes:
    parts = [b":%d\r\n" % item if isinstance(item, int) else _bulk(item) for item in items]
    return b"*%d\r\n" % len(items) + b"".join(parts)


class RespStub:
    """Listens on a loopback port; ``connections`` counts every connection ever accepted."""

    def __init__(self) -> None:
        self.connections = 0
        self.pings = 0
        self.commands: list[list[bytes]] = []  # every command received, in order
        self.refused: set[bytes] = set()  # channels whose SSUBSCRIBE gets an error
        self.silent = False  # read commands, answer nothing
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def push_sunsubscribe(self, channel: bytes) -> None:
        """What Redis 7 sends the subscribers of a channel whose slot moved to another node."""
        for writer in self._writers:
            writer.write(_array(b"sunsubscribe", channel, 0))

    def publish(self, channel: bytes, data: bytes) -> None:
        for writer in self._writers:
            writer.write(_array(b"smessage", channel, data))

    def cut(self) -> None:
        for writer in self._writers:
            writer.close()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            async for command in _commands(reader):
                self.commands.append(command)
                if not self.silent:
                    writer.write(self._answer(command))

    def _answer(self, command: list[bytes]) -> bytes:
        name = command[0].upper()
        if name == b"SSUBSCRIBE":
            if command[1] in self.refused:
                return b"-NOPERM this user has no permissions to access the channel\r\n"
            return _array(b"ssubscribe", command[1], 1)
        if name == b"SUNSUBSCRIBE":
            return _array(b"sunsubscribe", command[1], 0)
        if name == b"PING":
            self.pings += 1
            return _array(b"pong", b"")
        return b"+OK\r\n"


async def _commands(reader: asyncio.StreamReader) -> AsyncIterator[list[bytes]]:
    while True:
        header = await reader.readuntil(b"\r\n")
        count = int(header[1:-2])
        args = []
        for _ in range(count):
            length = int((await reader.readuntil(b"\r\n"))[1:-2])
            args.append((await reader.readexactly(length + 2))[:-2])
        yield args
