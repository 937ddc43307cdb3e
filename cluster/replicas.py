"""Replicas started and stopped together: the one runner that the cluster command, the tests
and the benchmark share."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from .processes import Lifecycle, Replica, wait_until, wait_until_async

__all__ = ["READY_TIMEOUT", "ReplicaSet"]

READY_TIMEOUT = 30.0
READY_POLL = 0.05


class ReplicaSet(Lifecycle):
    """``count`` replicas of ``python -m <module>`` (or of ``argv``), same settings, ``<name>-1`` .. ``<name>-N``.

    Starting launches them all, then waits until each answers ``/readyz``, so they start
    in parallel; if one exits or the deadline passes, every replica launched is stopped.
    Stopping sends SIGTERM to all before waiting for any, so they drain at the same time.
    ``with`` or ``async with`` starts them and stops them. ``replicas`` is a plain list: a
    replica started on its own and appended to it is stopped with the others.
    """

    def __init__(self, count: int, *, env: Mapping[str, str], log_dir: Path, module: str = "server",
                 argv: Sequence[str] | None = None, name: str = "replica",
                 ready_timeout: float = READY_TIMEOUT) -> None:
        self.replicas = [Replica(instance_id=f"{name}-{n}", env=env, log_dir=log_dir, module=module, argv=argv)
                         for n in range(1, count + 1)]
        self.ready_timeout = ready_timeout

    @property
    def urls(self) -> list[str]:
        return [replica.url for replica in self.replicas]

    @property
    def pids(self) -> list[int]:
        return [replica.pid for replica in self.replicas]

    def start(self) -> None:
        with self._stopped_on_failure():
            ready = self._launch()
            wait_until(ready, timeout=self.ready_timeout, what=self._waiting_for(), interval=READY_POLL)

    async def start_async(self) -> None:
        """``start`` that yields to the event loop while it waits: Ctrl-C or SIGTERM in an
        asyncio program cancels it at once, and what was launched is stopped."""
        with self._stopped_on_failure():
            ready = self._launch()
            await wait_until_async(ready, timeout=self.ready_timeout, what=self._waiting_for(), interval=READY_POLL)

    def stop(self) -> None:
        for replica in self.replicas:
            replica.request_stop()
        for replica in self.replicas:
            replica.stop()

    def _launch(self) -> Callable[[], bool]:
        """Launch every replica; the predicate returned holds once each is ready, and raises,
        with its log, as soon as one has exited."""
        for replica in self.replicas:
            replica.launch()
        waiting = list(self.replicas)

        def all_ready() -> bool:
            waiting[:] = [replica for replica in waiting if not replica.is_ready()]
            return not waiting

        return all_ready

    def _waiting_for(self) -> str:
        return f"{', '.join(replica.name for replica in self.replicas)} to answer /readyz"

    @contextlib.contextmanager
    def _stopped_on_failure(self) -> Iterator[None]:
        try:
            yield
        except BaseException:
            self.stop()
            raise

    async def __aenter__(self) -> Self:
        await self.start_async()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.stop()
