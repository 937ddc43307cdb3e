"""The systems the benchmark measures, and the commands that run their replicas and emitters.

- **baseline**: the same app on python-socketio's stock ``AsyncRedisManager``, stock write-only emitter;
- **ours**: ``python -m server`` and ``kindmap_realtime.emitter.Emitter``;
- **node-classic**, **node-sharded**: Node Socket.IO 4 with ``@socket.io/redis-adapter``
  (``createAdapter``: PSUBSCRIBE/PUBLISH; ``createShardedAdapter``: SSUBSCRIBE/SPUBLISH, one
  channel per room), the reference for what a replica and an emitter can cost
  (``bench/node/``, installed by ``make install``);
- **ours-<ref>** (``python -m bench --ours-at REF``): ours as it was at a git commit, its replica
  and emitter run from a worktree of that commit with this interpreter, beside ours now
  (``ours_at``).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cluster.processes import REPO_ROOT

from .control import python_module

__all__ = ["NODE_DIR", "OURS_AT", "SYSTEMS", "System", "commit_of", "missing_tools", "ours_at", "ours_at_system"]

NODE_DIR = REPO_ROOT / "bench" / "node"


def _node(script: str) -> tuple[str, ...]:
    return ("node", str(NODE_DIR / script))


@dataclass(frozen=True)
class System:
    """How one system runs: its replica's command, its emitter's (a ``bench.control`` worker),
    the settings its replicas get on top of the ones every system gets, and whether its emitter
    can send *volatile* messages, kept out of the history that connection state recovery replays
    (ours only: the others keep no history, so every send of theirs is volatile already).

    ``publisher`` is what its emitter's ``open`` is told to publish as (``bench.emitter``,
    ``bench/node/emitter.js``); ``tree``, where its Python code comes from, if not this checkout
    (``ours_at``): both its replicas and its emitter import from there."""

    replica: tuple[str, ...]
    emitter: tuple[str, ...]
    publisher: str
    env: Mapping[str, str] = field(default_factory=dict)
    volatile: bool = False
    tree: Path | None = None

    @property
    def node(self) -> bool:
        return self.replica[0] == "node"

    @property
    def python_env(self) -> dict[str, str]:
        """What its Python processes need in their environment to import from ``tree``."""
        return {} if self.tree is None else {"PYTHONPATH": str(self.tree)}


SYSTEMS = {
    "baseline": System(python_module("bench.stock_replica"), python_module("bench.emitter"), "baseline"),
    "ours": System(python_module("server"), python_module("bench.emitter"), "ours", volatile=True),
    "node-classic": System(_node("server.js"), _node("emitter.js"), "node-classic", {"SOCKETIO_ADAPTER": "classic"}),
    "node-sharded": System(_node("server.js"), _node("emitter.js"), "node-sharded", {"SOCKETIO_ADAPTER": "sharded"}),
}
OURS_AT = "ours-"  # the name of ours at a commit: ours-<ref>


def _isolated(module: str) -> tuple[str, ...]:
    """``python -P -m <module>``: the working directory (this checkout) stays off ``sys.path``,
    so ``PYTHONPATH`` decides where ``server`` and ``bench`` come from."""
    return (sys.executable, "-P", "-m", module)


def ours_at_system(tree: Path) -> System:
    """Ours as checked out in ``tree``: its ``python -m server`` and its ``bench.emitter``
    (the emitter worker's protocol is older than any commit worth comparing), with this
    interpreter and its packages."""
    return System(_isolated("server"), _isolated("bench.emitter"), "ours", volatile=True, tree=tree)


def commit_of(ref: str) -> str:
    """The short hash of the commit ``ref`` names in this checkout; ``ValueError`` if none."""
    known = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--verify", "--quiet", "--short",
                            f"{ref}^{{commit}}"], capture_output=True, text=True, check=False)
    if known.returncode != 0:
        raise ValueError(f"git knows no commit {ref!r} in {REPO_ROOT}")
    return known.stdout.strip()


@contextlib.contextmanager
def ours_at(ref: str) -> Iterator[str]:
    """``with ours_at("869c95d") as name:`` checks ``ref`` out in a temporary worktree
    (``git worktree add --detach``), adds system ``ours-<commit>`` (its short hash) to ``SYSTEMS``
    for the run, and removes both on the way out. Raises ``ValueError`` for a ref git does not know.

    Only the Python code comes from ``ref``: the interpreter and its packages are this
    checkout's, so a ref whose requirements differ is not measured as it shipped.
    """
    commit = commit_of(ref)
    name = f"{OURS_AT}{commit}"
    if name in SYSTEMS:
        raise ValueError(f"system {name} exists already")
    tree = Path(tempfile.mkdtemp(prefix=f"kindmap-bench-{commit}-")) / "tree"
    try:
        subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "add", "--detach", str(tree), commit],
                       check=True, capture_output=True)
        SYSTEMS[name] = ours_at_system(tree)
        yield name
    finally:
        SYSTEMS.pop(name, None)
        subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "remove", "--force", str(tree)], check=False,
                       capture_output=True)
        shutil.rmtree(tree.parent, ignore_errors=True)


def missing_tools(systems: Iterable[str]) -> str | None:
    """Why ``systems`` cannot run here (Node or its packages missing), or ``None``."""
    if not any(SYSTEMS[name].node for name in systems):
        return None
    if shutil.which("node") is None:
        return "node is not installed (apt-get install nodejs npm), needed by the node-* systems"
    if not (NODE_DIR / "node_modules").is_dir():
        return f"the node-* systems' packages are not installed: make install (npm ci in {NODE_DIR})"
    return None
