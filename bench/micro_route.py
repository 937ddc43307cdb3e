"""``python -m bench.micro route``: what storing a message for recovery adds to its send.

Every targeted message goes through one Redis function that routes it (``send`` of
``kindmap_realtime/backends/redis/routing.lua``); unless it is volatile, the same function first
appends it to the user's history for connection state recovery. Here the two are
measured alone, without replicas or clients: a private ``redis-server``, a stand-in
replica process that registers itself and records a socket with a recoverable session
for each user (as a replica does at connect, through the same backend code), and
``kindmap_realtime.emitter.Emitter.send_many`` in batches. Nobody reads the stand-in's inbox: it
is emptied between runs.

Each run sends the same number of messages to random users, durable and volatile
taking turns (which goes first alternates), and measures:

- Redis's CPU per message (``/proc``), and the time Redis
  spent inside the function (``INFO commandstats``: ``FCALL``), with the commands it ran,
  per message;
- the emitter's CPU per message (this process's CPU time).

``--prefill`` first fills every user's history to that many messages (not timed); the
stand-in's heartbeat before each run trims them to ``RECOVERY_MAX_MESSAGES``, as a
replica's does, the steady state of a user who keeps receiving.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis import asyncio as aioredis

from cluster.processes import RedisServer
from kindmap_realtime.backends import open_backend
from kindmap_realtime.backends.base import Backend
from kindmap_realtime.backends.redis.keys import inbox_key
from kindmap_realtime.emitter import Emitter

from .cpu import cpu_seconds
from .message import EVENT, payload

__all__ = ["LUA", "RouteCosts", "route_costs"]

CHANNEL = "kindmap_micro"
WINDOW_S = 120.0  # RECOVERY_WINDOW_SECONDS and RECOVERY_MAX_MESSAGES as shipped
MAX_MESSAGES = 200
SCRIPT = "fcall"
OWN_COMMANDS = {"config|resetstat", "info"}  # this measurement's own commands, not the function's
LUA = "(the function's Lua and call: FCALL's time but its commands')"


@dataclass
class RouteCosts:
    """Per message, each run's figures of one kind of send (durable or volatile)."""

    redis_us: list[float] = field(default_factory=list)  # Redis's CPU, from /proc
    script_us: list[float] = field(default_factory=list)  # inside FCALL, from INFO commandstats
    emitter_us: list[float] = field(default_factory=list)  # this process's CPU
    # The commands the functions ran: calls and µs per message, summed over the runs.
    commands: dict[str, list[float]] = field(default_factory=dict)
    script_usec: float = 0.0  # inside FCALL, summed over the runs
    messages: int = 0

    def add_commands(self, stats: dict[str, dict[str, float]], messages: int) -> None:
        self.messages += messages
        self.script_usec += stats[SCRIPT]["usec"]
        for name, stat in stats.items():
            if name != SCRIPT and name not in OWN_COMMANDS:
                totals = self.commands.setdefault(name, [0.0, 0.0])
                totals[0] += stat["calls"]
                totals[1] += stat["usec"]

    def per_message(self) -> dict[str, tuple[float, float]]:
        """``{command: (calls, µs)}`` per message, over every run, and ``LUA``: the rest of the
        functions' time (their Lua code, and calling them)."""
        commands = {name: (calls / self.messages, usec / self.messages)
                    for name, (calls, usec) in self.commands.items()}
        return {**commands, LUA: (0.0, self.script_usec / self.messages - sum(usec for _, usec in commands.values()))}


async def _stand_in_replica(url: str, users: list[str]) -> Backend:
    """A replica's backend holding one socket, with a recoverable session, for each user."""
    backend = open_backend(url, channel=CHANNEL, instance_id="micro-replica", recovery_window=WINDOW_S,
                           recovery_max_messages=MAX_MESSAGES)
    sessions = backend.sessions
    if sessions is None:
        raise RuntimeError("the backend keeps no sessions")
    await backend.transport.connect()
    for n, user in enumerate(users):
        sid = f"sid{n}"
        await backend.presence.add(user, sid, await sessions.open(user, sid))
    await backend.presence.heartbeat()
    return backend


async def _send(emitter: Emitter, targets: list[str], batch: int, *, volatile: bool) -> None:
    """One message to each of ``targets``, ``batch`` per ``send_many``; raises unless every one was sent."""
    for first in range(0, len(targets), batch):
        outcomes = await emitter.send_many(((user, EVENT, payload(1, first + n))
                                            for n, user in enumerate(targets[first:first + batch])),
                                           volatile=volatile)
        if failed := [outcome for outcome in outcomes if outcome.status != "sent"]:
            raise RuntimeError(f"{len(failed)} of {len(outcomes)} messages not sent, e.g. {failed[0]}")


async def _command_stats(client: aioredis.Redis) -> dict[str, dict[str, float]]:
    """``INFO commandstats``: ``{command: {"calls": n, "usec": n, ...}}``."""
    info: dict[str, Any] = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): stat for name, stat in info.items()}


async def _measure(redis: RedisServer, *, users: int, prefill: int, messages: int, runs: int,
                   batch: int) -> dict[bool, RouteCosts]:
    names = [f"micro-{n:05d}" for n in range(users)]
    pick = random.Random(1)
    costs = {False: RouteCosts(), True: RouteCosts()}
    replica = await _stand_in_replica(redis.url, names)
    inbox = inbox_key(CHANNEL, replica.transport.process)  # type: ignore[attr-defined]
    admin = aioredis.Redis.from_url(redis.url)
    try:
        async with Emitter(redis.url, channel=CHANNEL) as emitter:
            await _send(emitter, names * prefill, batch, volatile=False)
            for volatile in (False, True):  # warm-up
                await _send(emitter, [pick.choice(names) for _ in range(messages)], batch, volatile=volatile)
            for run in range(runs):
                for volatile in (False, True) if run % 2 == 0 else (True, False):
                    targets = [pick.choice(names) for _ in range(messages)]
                    await replica.presence.heartbeat()  # keeps the stand-in alive, outside the measurement
                    await admin.delete(inbox)
                    await admin.config_resetstat()
                    redis_before, began = cpu_seconds(redis.pid), time.process_time()
                    await _send(emitter, targets, batch, volatile=volatile)
                    emitter_s, redis_s = time.process_time() - began, cpu_seconds(redis.pid) - redis_before
                    stats = await _command_stats(admin)
                    cost = costs[volatile]
                    cost.redis_us.append(redis_s / messages * 1e6)
                    cost.script_us.append(stats[SCRIPT]["usec"] / messages)
                    cost.emitter_us.append(emitter_s / messages * 1e6)
                    cost.add_commands(stats, messages)
    finally:
        await admin.aclose()
        await replica.presence.close()
        await replica.transport.close()
    return costs


def route_costs(*, users: int, prefill: int, messages: int, runs: int, batch: int) -> dict[bool, RouteCosts]:
    """Durable (``False``) and volatile (``True``) sends' costs, on a private ``redis-server``."""
    with tempfile.TemporaryDirectory(prefix="bench-micro-route-") as tmp:
        redis = RedisServer(work_dir=Path(tmp))
        redis.start()
        try:
            return asyncio.run(_measure(redis, users=users, prefill=prefill, messages=messages, runs=runs,
                                        batch=batch))
        finally:
            redis.stop()
