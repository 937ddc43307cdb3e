"""The Node ``socket.io-client`` (tests/integration/node/client.mjs) as an async test peer."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

from cluster.processes import REPO_ROOT

NODE_DIR = REPO_ROOT / "tests" / "integration" / "node"


class NodeClient:
    """Runs client.mjs; every line it prints is kept in ``records``."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()

    async def start(self, url: str, auth: dict[str, Any], transports: list[str] | None = None, *,
                    package: str = "socket.io-client") -> None:
        """Run client.mjs; ``package``: which installed socket.io-client (package.json) it uses."""
        args = [str(NODE_DIR / "client.mjs"), url, json.dumps(auth)]
        if transports:
            args.append(json.dumps(transports))
        self._process = await asyncio.create_subprocess_exec(
            "node", *args, cwd=NODE_DIR, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "SOCKET_IO_CLIENT": package})
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        async for line in self._process.stdout:
            async with self._changed:
                self.records.append(json.loads(line))
                self._changed.notify_all()

    def events(self, name: str) -> list[Any]:
        return [r["data"] for r in self.records if r["kind"] == "event" and r["event"] == name]

    async def wait_for(self, predicate: Any, *, timeout: float = 10.0, what: str = "a record") -> None:
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: predicate(self.records)), timeout)
            except TimeoutError:
                raise AssertionError(f"node client: timed out waiting for {what}; got {self.records!r}") from None

    async def wait_for_event(self, name: str, *, count: int = 1, timeout: float = 10.0) -> Any:
        await self.wait_for(lambda _: len(self.events(name)) >= count, timeout=timeout, what=f"event {name!r}")
        return self.events(name)[count - 1]

    async def send(self, command: dict[str, Any]) -> None:
        assert self._process is not None and self._process.stdin is not None
        self._process.stdin.write((json.dumps(command) + "\n").encode())
        await self._process.stdin.drain()

    async def stop(self) -> None:
        if self._process is None:
            return
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            await asyncio.wait_for(self._process.wait(), 5)
        except TimeoutError:
            self._process.kill()
            await self._process.wait()
        if self._reader is not None:
            await self._reader
        self._process = None


StartNodeClient = Callable[..., Awaitable[NodeClient]]
"""The ``node_client`` fixture (tests/integration/conftest.py): ``await node_client(url, auth)``."""
