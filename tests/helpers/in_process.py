"""A replica served in the test's own process (unit tests), and what tests read off it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from server.http.app_keys import METRICS


@dataclass
class Replica:
    """A replica's app, served by an aiohttp ``TestServer`` on loopback at ``url``."""

    app: web.Application
    url: str


StartReplica = Callable[..., Awaitable[Replica]]
"""The ``start_replica`` fixture (tests/unit/conftest.py)."""


def sample(replica: Replica, name: str, **labels: str) -> float | None:
    """One sample of the replica's own metrics; None for a series never touched."""
    return replica.app[METRICS].registry.get_sample_value(name, labels)
