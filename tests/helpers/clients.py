"""A real python-socketio client that records what it receives, for assertions.

Tests await events (``await client.wait_for("connected")``) instead of sleeping.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any, Protocol

import aiohttp
import jwt
import socketio

TEST_SECRET = "kindmap-test-secret-0123456789abcdef0123"
_OFFSET = re.compile(r"\d+-\d+")


def make_token(sub: Any = "alice", *, secret: str = TEST_SECRET, expires_in: int = 300,
               algorithm: str = "HS256", **claims: Any) -> str:
    payload = {"sub": sub, "exp": int(time.time()) + expires_in, **claims}
    return jwt.encode(payload, secret, algorithm=algorithm)


def session_from(source_address: str) -> Any:
    """An ``http_session`` factory for ``socketio.AsyncClient`` whose connections leave from
    ``source_address`` (127.0.N.1 on loopback): Nginx's ip_hash sees a client of network N.
    """
    def make() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source_address, 0)))

    return make


class RecordingClient:
    """Wraps ``socketio.AsyncClient``; every event lands in ``events`` in order.

    Like socket.io-client, it takes an event's trailing string for the offset of connection
    state recovery: offsets land in ``offsets`` (event name, offset), not in the data. It never
    sends them back (python-socketio cannot): it does not recover sessions.
    """

    def __init__(self, **client_options: Any) -> None:
        self.sio = socketio.AsyncClient(**client_options)
        self.events: list[tuple[str, Any]] = []
        self.offsets: list[tuple[str, str]] = []
        self.connect_errors: list[Any] = []
        self.disconnects: list[Any] = []
        self._changed = asyncio.Condition()
        self.sio.on("*", self._on_event)
        self.sio.on("connect_error", self._on_connect_error)
        self.sio.on("disconnect", self._on_disconnect)

    async def connect(self, url: str, *, auth: Any = None, transports: list[str] | None = None,
                      headers: dict[str, str] | None = None, wait: bool = True) -> None:
        """Connect; with ``wait`` also wait for the server's ``connected`` event."""
        await self.sio.connect(url, auth=auth, transports=transports or ["websocket"], headers=headers or {},
                               wait_timeout=5)
        if wait:
            await self.wait_for("connected")

    async def disconnect(self) -> None:
        if self.sio.connected and self.sio.transport() == "polling":
            # python-engineio's server leaves the pending long-poll open until its ping
            # timeout (~30 s) after a client's close; do not wait for it.
            await self.sio.eio.disconnect(abort=True)
        await self.sio.shutdown()

    def received(self, event: str) -> list[Any]:
        return [data for name, data in self.events if name == event]

    async def wait_for(self, event: str, *, count: int = 1, timeout: float = 5.0) -> Any:
        """The ``count``-th payload of ``event``; fails the test after ``timeout``."""
        await self._wait(lambda: len(self.received(event)) >= count, timeout, f"{count} x {event!r}")
        return self.received(event)[count - 1]

    async def wait_until(self, done: Callable[[], bool], what: str, *, timeout: float = 5.0) -> None:
        """Wait until ``done()`` holds, checked after each event; fails the test after ``timeout``."""
        await self._wait(done, timeout, what)

    async def wait_for_connect_error(self, *, timeout: float = 5.0) -> Any:
        await self._wait(lambda: bool(self.connect_errors), timeout, "connect_error")
        return self.connect_errors[-1]

    async def wait_for_disconnect(self, *, count: int = 1, timeout: float = 5.0) -> Any:
        await self._wait(lambda: len(self.disconnects) >= count, timeout, "disconnect")
        return self.disconnects[count - 1]

    async def _wait(self, done: Any, timeout: float, what: str) -> None:
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(done), timeout)
            except TimeoutError:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; got {self.events!r}") from None

    async def _record(self, target: list[Any], item: Any) -> None:
        async with self._changed:
            target.append(item)
            self._changed.notify_all()

    async def _on_event(self, event: str, *args: Any) -> None:
        if args and isinstance(args[-1], str) and _OFFSET.fullmatch(args[-1]):
            self.offsets.append((event, args[-1]))
            args = args[:-1]
        await self._record(self.events, (event, args[0] if len(args) == 1 else list(args) or None))

    async def _on_connect_error(self, data: Any) -> None:
        await self._record(self.connect_errors, data)

    async def _on_disconnect(self, reason: Any = None) -> None:
        await self._record(self.disconnects, reason)


MakeClient = Callable[..., RecordingClient]
"""The ``make_client`` fixture (tests/conftest.py): a new client, shut down after the test."""


class Served(Protocol):
    """Anything serving Socket.IO at ``url``: a replica in this process or in its own, a cluster's Nginx."""

    @property
    def url(self) -> str: ...


async def connected(make_client: MakeClient, replica: Served, user_id: str = "alice", *,
                    auth: dict[str, Any] | None = None, **connect: Any) -> RecordingClient:
    """A new client connected to ``replica`` as ``user_id`` (by a signed token unless ``auth`` is given),
    its ``connected`` event received; ``connect`` goes to ``RecordingClient.connect``."""
    client = make_client()
    await client.connect(replica.url, auth={"token": make_token(user_id)} if auth is None else auth, **connect)
    return client
