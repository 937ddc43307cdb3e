"""How the orchestrator drives its worker processes (load generator, emitter).

One JSON object per line: the orchestrator writes ``{"cmd": name, ...arguments}``
to the worker's stdin; the worker answers each with one line on stdout,
``{"ok": true, ...result}`` or ``{"ok": false, "error": "..."}``. A worker stops
when its stdin closes, so it never outlives an orchestrator that died.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import signal
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from cluster.processes import REPO_ROOT

__all__ = ["Handler", "Service", "Worker", "python_module", "run_orchestrator", "run_worker", "serve"]

logger = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[dict[str, Any]]]
T = TypeVar("T")

# A collect answer holds every latency of a step: up to a few MB of JSON on one line.
LINE_LIMIT = 256 * 1024 * 1024
STOP_TIMEOUT = 10.0


def python_module(module: str) -> tuple[str, ...]:
    """The command that runs ``python -m <module>`` with this interpreter."""
    return (sys.executable, "-m", module)


class Service(Protocol):
    """What a worker process serves: its commands, and what to release at the end."""

    def handlers(self) -> Mapping[str, Handler]: ...

    async def close(self) -> Any: ...


def run_orchestrator(main: Callable[[], Awaitable[T]]) -> T | None:
    """Run an orchestrator's ``main`` with as many files as the process may open (thousands of
    sockets); SIGTERM unwinds it like Ctrl-C, so every process it started is stopped. ``None``
    when it was interrupted (said on stderr)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    async def run() -> T:
        task = asyncio.current_task()
        if task is not None:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await main()

    try:
        return asyncio.run(run())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; every process it started was stopped", file=sys.stderr)
        return None


def run_and_write(main: Callable[[], Awaitable[T]], write: Callable[[T], Iterable[Path]]) -> int:
    """An orchestrator's exit code: its results written (each path printed) and 0, or 130 when
    it was interrupted."""
    doc = run_orchestrator(main)
    if doc is None:
        return 130
    for path in write(doc):
        print(f"written: {path}")
    return 0


def run_worker(service: Callable[[], Service]) -> int:
    """A worker's ``main``: serve the commands until stdin closes (or Ctrl-C), then close."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    async def work() -> None:
        running = service()
        try:
            await serve(running.handlers())
        finally:
            await running.close()

    try:
        asyncio.run(work())
    except KeyboardInterrupt:
        return 130
    return 0


async def serve(handlers: Mapping[str, Handler]) -> None:
    """Worker side: answer requests from stdin until it closes."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        request = json.loads(line)
        handler = handlers.get(request.pop("cmd"))
        try:
            if handler is None:
                raise ValueError(f"unknown command; known: {sorted(handlers)}")
            reply = {"ok": True, **await handler(**request)}
        except Exception as exc:
            logger.exception("command failed")
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply, separators=(",", ":")) + "\n")
        sys.stdout.flush()


class Worker:
    """Orchestrator side: one worker process (``argv``, e.g. ``python_module("bench.emitter")``)
    and its requests.

    Its stderr goes to ``log_path``; ``stop()`` closes its stdin and waits, then kills.
    ``env`` is added to this process's environment for it.
    """

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, *, env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env or {})
        self._process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        return self._running().pid

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                *self.argv, cwd=REPO_ROOT, env={**os.environ, **self.env}, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=log, limit=LINE_LIMIT)

    async def call(self, cmd: str, *, timeout: float, **arguments: Any) -> dict[str, Any]:
        """Send one request and wait at most ``timeout`` seconds for its answer."""
        process = self._running()
        assert process.stdin is not None and process.stdout is not None  # both are pipes, see start()
        process.stdin.write(json.dumps({"cmd": cmd, **arguments}).encode() + b"\n")
        await process.stdin.drain()
        line = await asyncio.wait_for(process.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"{self.name} exited during {cmd!r}; see {self.log_path}")
        reply: dict[str, Any] = json.loads(line)
        if not reply.pop("ok"):
            raise RuntimeError(f"{self.name} failed {cmd!r}: {reply['error']} (log: {self.log_path})")
        return reply

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()

    def _running(self) -> asyncio.subprocess.Process:
        if self._process is None:
            raise RuntimeError(f"{self.name} is not running")
        return self._process
