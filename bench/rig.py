"""One system under load: its cluster, the load generator and the emitter.

``Rig`` starts the three, connects the users and runs steps. A step is: tell
the load generator which step it is, start the CPU meter, have the emitter
publish at the offered rate, wait until every expected message arrived (or
arrivals stall), stop the meter, collect. Every process is stopped on the way
out, also on failure or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from types import TracebackType

from .cluster import CHANNEL, SystemUnderTest
from .control import Worker, python_module
from .cpu import CpuMeter, rss_bytes
from .results import IdleResult, StepResult, step_result
from .systems import SYSTEMS

__all__ = ["Rig"]

CONNECT_CONCURRENCY = 50
# Publishes in flight at once, at most: enough that round trips slowed by a busy scheduler do not
# cap the offered rate (16 did, at ~1,100 msg/s on a loaded 2-core machine).
SENDERS = 64
STALL_S = 2.0  # arrivals stopped this long: what has not arrived is lost
DRAIN_MAX_S = 30.0  # longest wait for stragglers after the emitter finished
POLL_S = 0.2
SETTLE_S = 2.0  # before reading a replica's memory, let connection set-up garbage go


class Rig:
    """``async with Rig("ours", replicas=3, users=[...], log_dir=...) as rig:``

    ``compression`` and ``module`` go to ``SystemUnderTest``.
    """

    def __init__(self, system: str, *, replicas: int, users: list[str], log_dir: Path, compression: bool = False,
                 module: str | None = None) -> None:
        self.system = system
        self.users = users
        self.cluster = SystemUnderTest(system, replicas, log_dir, compression=compression, module=module)
        self.loadgen = Worker("loadgen", python_module("bench.loadgen"), log_dir / "loadgen.log")
        self.emitter = Worker("emitter", SYSTEMS[system].emitter, log_dir / "emitter.log",
                              env=SYSTEMS[system].python_env)
        self.compression = False
        self._steps = 0
        self._exit = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Rig:
        async with contextlib.AsyncExitStack() as stack:
            for worker in (self.loadgen, self.emitter):  # first: they import while the cluster starts
                stack.push_async_callback(worker.stop)
                await worker.start()
            await stack.enter_async_context(self.cluster)
            await self.emitter.call("open", system=SYSTEMS[self.system].publisher, redis_url=self.cluster.redis.url,
                                    channel=CHANNEL, timeout=30)
            self._exit = stack.pop_all()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._exit.aclose()

    async def connect(self, *, compress: bool, users: list[str] | None = None, replica: int | None = None) -> float:
        """Connect the users (spread over every replica, or all on ``replica``); returns the seconds it took.
        With ``compress`` they offer permessage-deflate, which the replicas accept if built with ``compression``.

        Raises if any user could not connect, or deflate was not negotiated as expected:
        a step on a partial audience would mislead.
        """
        users = self.users if users is None else users
        urls = self.cluster.urls if replica is None else [self.cluster.urls[replica]]
        reply = await self.loadgen.call("connect", urls=urls, users=users, compress=compress,
                                        concurrency=CONNECT_CONCURRENCY, timeout=60 + len(users) / 10)
        if reply["connected"] != len(users):
            raise RuntimeError(f"only {reply['connected']} of {len(users)} users connected: {reply['failed']}")
        negotiated = compress and self.cluster.compression
        if reply["compressed"] != (len(users) if negotiated else 0):
            raise RuntimeError(f"permessage-deflate negotiated on {reply['compressed']} of {len(users)} connections, "
                               f"expected {'all' if negotiated else 'none'}")
        self.compression = negotiated
        return float(reply["seconds"])

    async def step(self, scenario: str, *, rate: float | None, duration: float, broadcast: bool = False,
                   seed: int = 0, batch: int = 1, volatile: bool = False) -> StepResult:
        """Offer ``rate`` msg/s (``None``: as fast as possible) for ``duration`` s and measure.
        An emitter behind the schedule sends up to ``batch`` overdue messages in one call, where
        its system has a batch call (``bench.emitter``). ``volatile`` messages are not stored for
        connection state recovery; only a system whose emitter can send them takes it (``System.volatile``).
        """
        if volatile and not SYSTEMS[self.system].volatile:
            raise ValueError(f"{self.system} has no volatile send: its emitter keeps no history to leave out")
        self._steps += 1
        step = self._steps
        meter = CpuMeter({**self.cluster.pids(), "emitter": self.emitter.pid, "loadgen": self.loadgen.pid})
        await self.loadgen.call("begin", step=step, timeout=10)
        meter.start()
        sent = await self.emitter.call("run", mode="broadcast" if broadcast else "targeted", rate=rate,
                                       duration=duration, step=step, users=self.users, senders=SENDERS,
                                       seed=seed, batch=batch, volatile=volatile, timeout=duration * 3 + 30)
        count = sum(sent["per_user"].values())
        await self._drain(count * len(self.users) if broadcast else count)
        cpu = meter.stop()
        received = await self.loadgen.call("collect", timeout=60)
        return step_result(scenario=scenario, system=self.system, compression=self.compression,
                           replicas=len(self.cluster.replicas), users=self.users, offered_rate=rate,
                           duration=duration, broadcast=broadcast, sent=sent, received=received, cpu=cpu)

    async def idle_memory(self, *, connections: list[str], compress: bool) -> IdleResult:
        """Connect ``connections`` users to the first replica and measure what they cost it in memory."""
        pid = self.cluster.replicas[0].pid
        before = rss_bytes(pid)
        seconds = await self.connect(compress=compress, users=connections, replica=0)
        await asyncio.sleep(SETTLE_S)
        return IdleResult(system=self.system, compression=self.compression, connections=len(connections),
                          rss_before_bytes=before, rss_after_bytes=rss_bytes(pid), connect_s=seconds)

    async def _drain(self, expected: int) -> None:
        """Wait until ``expected`` messages of the step arrived, arrivals stall, or the drain deadline."""
        deadline = time.monotonic() + DRAIN_MAX_S
        seen, changed_at = -1, time.monotonic()
        while time.monotonic() < deadline:
            received = (await self.loadgen.call("progress", timeout=10))["received"]
            now = time.monotonic()
            if received >= expected or now - changed_at > STALL_S:
                return
            if received != seen:
                seen, changed_at = received, now
            await asyncio.sleep(POLL_S)
