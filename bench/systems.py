"""The systems the benchmark measures, and the commands that run their replicas and emitters.

- **baseline**: the same app on python-socketio's stock ``AsyncRedisManager``, stock write-only emitter;
- **ours**: ``python -m server`` and ``server.emitter.Emitter``;
- **node-classic**, **node-sharded**: Node Socket.IO 4 with ``@socket.io/redis-adapter``
  (``createAdapter``: PSUBSCRIBE/PUBLISH; ``createShardedAdapter``: SSUBSCRIBE/SPUBLISH, one
  channel per room), the reference for what a replica and an emitter can cost
  (``bench/node/``, installed by ``make install``).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cluster.processes import REPO_ROOT

from .control import python_module

__all__ = ["NODE_DIR", "SYSTEMS", "System", "missing_tools"]

NODE_DIR = REPO_ROOT / "bench" / "node"


def _node(script: str) -> tuple[str, ...]:
    return ("node", str(NODE_DIR / script))


@dataclass(frozen=True)
class System:
    """How one system runs: its replica's command, its emitter's (a ``bench.control`` worker),
    the settings its replicas get on top of the ones every system gets, and whether its emitter
    can send *volatile* messages, kept out of the history that connection state recovery replays
    (ours only: the others keep no history, so every send of theirs is volatile already)."""

    replica: tuple[str, ...]
    emitter: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    volatile: bool = False

    @property
    def node(self) -> bool:
        return self.replica[0] == "node"


SYSTEMS = {
    "baseline": System(python_module("bench.stock_replica"), python_module("bench.emitter")),
    "ours": System(python_module("server"), python_module("bench.emitter"), volatile=True),
    "node-classic": System(_node("server.js"), _node("emitter.js"), {"SOCKETIO_ADAPTER": "classic"}),
    "node-sharded": System(_node("server.js"), _node("emitter.js"), {"SOCKETIO_ADAPTER": "sharded"}),
}


def missing_tools(systems: Iterable[str]) -> str | None:
    """Why ``systems`` cannot run here (Node or its packages missing), or ``None``."""
    if not any(SYSTEMS[name].node for name in systems):
        return None
    if shutil.which("node") is None:
        return "node is not installed (apt-get install nodejs npm), needed by the node-* systems"
    if not (NODE_DIR / "node_modules").is_dir():
        return f"the node-* systems' packages are not installed: make install (npm ci in {NODE_DIR})"
    return None
