"""A system under test on this machine: its own redis-server and N replicas.

``ours`` runs ``python -m server``; ``baseline`` runs ``python -m bench.stock_replica``;
the ``node-*`` systems run ``node bench/node/server.js`` (see ``bench.systems``). All
get identical settings (``compression`` sets ``WEBSOCKET_COMPRESSION``); every process
is stopped on the way out, also on failure or Ctrl-C.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from cluster import ReplicaSet
from cluster.processes import RedisServer, Replica

from .control import python_module
from .systems import SYSTEMS

__all__ = ["CHANNEL", "SystemUnderTest"]

CHANNEL = "kindmap_bench"


class SystemUnderTest:
    """``async with SystemUnderTest("ours", 3, log_dir) as cluster:`` starts Redis and the replicas, then stops them.

    :param compression: whether the replicas accept permessage-deflate (``WEBSOCKET_COMPRESSION``).
    :param module: another entry point for the replicas, with the same settings
        (``bench.traced_replica``: ours under tracemalloc).
    :param env: settings that replace the benchmark's own (``bench.churn``: JWT mode, a signing
        key and the shipped handshake limits; an empty value means the server's default).
    """

    def __init__(self, system: str, replicas: int, log_dir: Path, *, compression: bool = False,
                 module: str | None = None, env: Mapping[str, str] | None = None) -> None:
        if system not in SYSTEMS:
            raise ValueError(f"system must be one of {sorted(SYSTEMS)}, got {system!r}")
        self.system = system
        self.compression = compression
        redis_dir = log_dir / f"redis-{system}"
        redis_dir.mkdir(parents=True, exist_ok=True)
        self.redis = RedisServer(work_dir=redis_dir)
        # Set here, so neither the caller's environment nor a .env file changes what is measured
        # (an empty value means the default; the emitters sign nothing).
        # Dev mode refuses a JWT_SECRET, so one in the caller's environment is unset.
        env = {"REDIS_URL": self.redis.url, "SOCKETIO_CHANNEL": CHANNEL, "AUTH_MODE": "dev", "JWT_SECRET": "",
               "LOG_LEVEL": "WARNING",
               "QUEUE_SIGNING_KEY": "", "DUPLICATE_CONNECTION_POLICY": "allow", "MAX_PAYLOAD_BYTES": "",
               # The load generator opens thousands of sessions from one address: the per-address
               # handshake limit and the session cap are lifted; per-session limits stay as shipped.
               "HANDSHAKE_RATE_PER_SECOND": "10000", "HANDSHAKE_BURST": "100000", "MAX_CONNECTIONS": "1000000",
               "WEBSOCKET_COMPRESSION": "true" if compression else "false", **SYSTEMS[system].env,
               **SYSTEMS[system].python_env, **(env or {})}
        argv = python_module(module) if module else SYSTEMS[system].replica
        self.replica_set = ReplicaSet(replicas, env=env, log_dir=log_dir, argv=argv, name=system)

    @property
    def replicas(self) -> list[Replica]:
        return self.replica_set.replicas

    @property
    def urls(self) -> list[str]:
        return self.replica_set.urls

    def pids(self) -> dict[str, int]:
        """Process ids by role: ``redis`` and ``replica-1`` .. ``replica-N``."""
        return {"redis": self.redis.pid, **{f"replica-{n}": pid for n, pid in enumerate(self.replica_set.pids, 1)}}

    async def __aenter__(self) -> SystemUnderTest:
        """Start Redis, then the replicas together (``ReplicaSet.start_async``).

        The wait yields to the event loop, so Ctrl-C or SIGTERM during a start-up
        cancels it at once, and everything launched so far is stopped.
        """
        try:
            self.redis.start()
            await self.replica_set.start_async()
        except BaseException:
            self.stop()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        self.replica_set.stop()
        self.redis.stop()
