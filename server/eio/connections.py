"""The HTTP connections that carry Socket.IO, so a drain can cut every one of them.

Closing Engine.IO sockets is not enough to let a replica stop promptly: a WebSocket
in the middle of its upgrade (probe answered, ``5`` not yet sent) belongs to no
socket's queue, and its handler waits on the client with no timeout. aiohttp would
then wait ``SHUTDOWN_TIMEOUT`` for that handler and as long again after cancelling
it. Aborting the TCP connection ends every such handler at once, and to the client
it is what a lost connection looks like, so it reconnects elsewhere.
"""

from __future__ import annotations

import asyncio

__all__ = ["OpenConnections"]


class OpenConnections:
    """The connections of Socket.IO requests in progress (long-polls and WebSockets), added and
    discarded around each by ``engine_http.engine_middleware``."""

    def __init__(self) -> None:
        self._transports: set[asyncio.Transport] = set()

    def __len__(self) -> int:
        return len(self._transports)

    def add(self, transport: asyncio.Transport) -> None:
        self._transports.add(transport)

    def discard(self, transport: asyncio.Transport) -> None:
        self._transports.discard(transport)

    def abort_all(self) -> int:
        """Abort the TCP connection of every request in progress; returns how many."""
        transports = list(self._transports)
        for transport in transports:
            transport.abort()
        return len(transports)
