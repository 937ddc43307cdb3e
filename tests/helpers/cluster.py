"""Several replica processes sharing one Redis channel, as the integration and e2e tests start them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from cluster import LocalCluster, ReplicaSet

from .clients import TEST_SECRET

API_KEY = "integration-api-key-0123456789"


def replica_env(redis_url: str, channel: str, **extra: str) -> dict[str, str]:
    """JWT mode with the test secret and the emit API on, the queue unsigned unless ``extra``
    gives a ``QUEUE_SIGNING_KEY``, and a loose per-address handshake limit; ``extra``
    overrides (``""`` unsets)."""
    return {"REDIS_URL": redis_url, "SOCKETIO_CHANNEL": channel, "JWT_SECRET": TEST_SECRET,
            "SERVER_API_KEY": API_KEY, "AUTH_MODE": "jwt", "LOG_LEVEL": "INFO", "ALLOW_UNSIGNED_QUEUE": "true",
            # A module's tests open hundreds of sessions from 127.0.0.1 in seconds.
            "HANDSHAKE_BURST": "10000", **extra}


# A POSIX TZ nine hours east of UTC (no tz database needed).
EAST_OF_UTC = "KST-9"


@contextmanager
def local_cluster_east_of_utc(**options: Any) -> Iterator[LocalCluster]:
    """A ``LocalCluster`` (replicas and Nginx) whose processes inherit a zone other than UTC,
    so a test can see that every timestamp they write is UTC all the same."""
    with pytest.MonkeyPatch.context() as zone:
        zone.setenv("TZ", EAST_OF_UTC)
        with LocalCluster(**options) as cluster:
            zone.undo()  # the processes have their environment; this one keeps its own
            yield cluster


def new_channel() -> str:
    """A Socket.IO channel of one test's own: its messages never meet another test's."""
    return f"kindmap_it_{uuid.uuid4().hex[:10]}"


def unique_user(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Cluster(ReplicaSet):
    """``count`` replicas on a Socket.IO channel of their own; ``with`` starts them (each ready
    on ``/readyz``) and stops them. ``env`` adds to ``replica_env``."""

    def __init__(self, redis_url: str, log_dir: Path, count: int, *, redis_mode: str = "redis", **env: str) -> None:
        self.redis_url = redis_url
        self.redis_mode = redis_mode  # "redis" or "redis-cluster": what REDIS_URL names
        self.channel = new_channel()
        super().__init__(count, env=replica_env(redis_url, self.channel, **env), log_dir=log_dir)
