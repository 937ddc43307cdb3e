"""``python -m bench.emitter``: the backend publisher, a worker process of the orchestrator.

It publishes at an offered rate (open loop, see ``bench.pacing``) through one of
two publishers:

- **ours**: ``kindmap_realtime.emitter.Emitter`` (presence check, then a validated, hardened publish);
  a sender that fell behind the schedule sends what is overdue in one ``send_many``; a step
  can send volatile, leaving the messages out of the users' histories for recovery;
- **baseline**: python-socketio's stock write-only ``AsyncRedisManager``, no hardening, no
  batch call (one emit per message) and no history, so no volatile send either.

Commands (see ``bench.control``): ``open``, ``run``, ``close``.
"""

from __future__ import annotations

import asyncio
import math
import random
import sys
import time
from abc import ABC, abstractmethod
from collections import Counter
from typing import Any

import socketio

from kindmap_realtime.emitter import Emitter

from . import control
from .message import EVENT, payload, user_room
from .pacing import Schedule

__all__ = ["BaselinePublisher", "OursPublisher", "Publisher", "make_publisher"]


class Publisher(ABC):
    """Sends the benchmark message to one user, to several at once, or to everybody."""

    max_batch = 1  # messages ``to_users`` takes in one call; 1: the publisher has no batch call
    volatile = False  # whether it can send without storing for recovery; ``run`` refuses ``volatile`` if not

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def to_user(self, user: str, data: dict[str, Any], *, volatile: bool = False) -> None: ...

    async def to_users(self, messages: list[tuple[str, dict[str, Any]]], *,
                       volatile: bool = False) -> list[str | None]:
        """Send each ``(user, data)``; returns, per message, ``None`` if sent, else its error's name."""
        raise NotImplementedError("this publisher has no batch call")

    @abstractmethod
    async def to_all(self, data: dict[str, Any]) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...


class OursPublisher(Publisher):
    max_batch = 500
    volatile = True

    def __init__(self, redis_url: str, channel: str) -> None:
        self._emitter = Emitter(redis_url, channel=channel)

    async def open(self) -> None:
        await self._emitter.connect()

    async def to_user(self, user: str, data: dict[str, Any], *, volatile: bool = False) -> None:
        await self._emitter.send_to_user(user, EVENT, data, volatile=volatile)

    async def to_users(self, messages: list[tuple[str, dict[str, Any]]], *,
                       volatile: bool = False) -> list[str | None]:
        outcomes = await self._emitter.send_many(((user, EVENT, data) for user, data in messages), volatile=volatile)
        return [None if outcome.error is None else type(outcome.error).__name__ for outcome in outcomes]

    async def to_all(self, data: dict[str, Any]) -> None:
        await self._emitter.broadcast(EVENT, data)

    async def close(self) -> None:
        await self._emitter.close()


class BaselinePublisher(Publisher):
    """The stock write-only manager, as its documentation shows it for external processes."""

    def __init__(self, redis_url: str, channel: str) -> None:
        self._manager = socketio.AsyncRedisManager(redis_url, channel=channel, write_only=True)

    async def open(self) -> None:
        """Nothing to do: the stock manager connects on its first publish."""

    async def to_user(self, user: str, data: dict[str, Any], *, volatile: bool = False) -> None:
        """Every emit is volatile in effect (stock keeps no history): ``run`` never asks for it."""
        await self._manager.emit(EVENT, data, namespace="/", room=user_room(user))

    async def to_all(self, data: dict[str, Any]) -> None:
        await self._manager.emit(EVENT, data, namespace="/")

    async def close(self) -> None:
        """Nothing to do: the stock manager has no close; the process exit closes its connection."""


def make_publisher(system: str, redis_url: str, channel: str) -> Publisher:
    if system == "ours":
        return OursPublisher(redis_url, channel)
    if system == "baseline":
        return BaselinePublisher(redis_url, channel)
    raise ValueError(f"unknown system {system!r}")


class EmitterWorker:
    """The command handlers around one publisher."""

    def __init__(self) -> None:
        self.publisher: Publisher | None = None

    def handlers(self) -> dict[str, control.Handler]:
        return {"open": self.open, "run": self.run, "close": self.close}

    async def open(self, *, system: str, redis_url: str, channel: str) -> dict[str, Any]:
        self.publisher = make_publisher(system, redis_url, channel)
        await self.publisher.open()
        return {}

    async def run(self, *, mode: str, rate: float | None, duration: float, step: int, users: list[str],
                  senders: int, seed: int, batch: int = 1, volatile: bool = False) -> dict[str, Any]:
        """Publish ``mode`` ("targeted": each message to a random user; "broadcast":
        to all) at ``rate`` msg/s (``None``: as fast as possible) for ``duration`` s.

        ``senders`` coroutines share the schedule, so a slow publish does not hold
        back the next one: up to ``senders`` publishes are in flight at once. A
        targeted sender that wakes behind the schedule takes what else is overdue,
        up to ``batch`` messages (capped by the publisher's batch call), and sends
        them in one call: what a backend service with a queue of messages would do.
        ``volatile`` targeted messages are not stored for recovery (ours only).
        """
        publisher = self._open()
        if volatile and not publisher.volatile:
            raise ValueError(f"{type(publisher).__name__} has no volatile send: its system keeps no history")
        schedule = Schedule(math.inf if rate is None else rate, duration, time.monotonic())
        pick = random.Random(seed).choice
        per_user: Counter[str] = Counter()
        failures: Counter[str] = Counter()

        limit = min(batch, publisher.max_batch) - 1 if mode == "targeted" else 0

        async def sender() -> None:
            while (due := schedule.take(time.monotonic())) is not None:
                first = schedule.issued  # read before any await: unique per message
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                last = first + schedule.take_overdue(time.monotonic(), limit)
                try:
                    if mode == "broadcast":
                        await publisher.to_all(payload(step, first))
                        per_user["*"] += 1
                    elif last == first:
                        user = pick(users)
                        await publisher.to_user(user, payload(step, first), volatile=volatile)
                        per_user[user] += 1
                    else:
                        messages = [(pick(users), payload(step, seq)) for seq in range(first, last + 1)]
                        errors = await publisher.to_users(messages, volatile=volatile)
                        for (user, _), error in zip(messages, errors, strict=True):
                            if error is None:
                                per_user[user] += 1
                            else:
                                failures[error] += 1
                except Exception as exc:
                    failures[type(exc).__name__] += 1

        await asyncio.gather(*(sender() for _ in range(senders)))
        return {"per_user": dict(per_user), "failed": dict(failures)}

    async def close(self) -> dict[str, Any]:
        if self.publisher is not None:
            await self.publisher.close()
            self.publisher = None
        return {}

    def _open(self) -> Publisher:
        if self.publisher is None:
            raise RuntimeError("open first")
        return self.publisher


if __name__ == "__main__":
    sys.exit(control.run_worker(EmitterWorker))
