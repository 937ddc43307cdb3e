"""``python -m bench.memory``: what an idle connection costs one of our replicas, and where.

    python -m bench.memory                      2,000 idle WebSockets (1,000 traced), deflate offered
    python -m bench.memory --connections 500 --traced 500 --top 20 --compression

Two runs, each one replica with its own Redis, the clients on it offering
permessage-deflate as browsers do (accepted only with ``--compression``):

- an untraced replica: resident memory (``/proc``) before and after the
  clients connected, per connection;
- the same replica under tracemalloc (``bench.traced_replica``): Python
  allocations per connection, by the line that allocated them and by the
  first frame in server/, python-engineio or python-socketio that led there.

Every process it starts is stopped on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cluster.processes import REPO_ROOT

from .rig import SETTLE_S, Rig
from .scenarios import users
from .traced_replica import snapshot_path

__all__ = ["Allocations", "attribute", "main"]

SNAPSHOT_TIMEOUT = 120.0
# Where an allocation is charged: the innermost frame in one of these (server/__main__.py, the
# entry point under every allocation, excepted), else the innermost frame of any installed package.
OWNERS = ("/server/", "/engineio/", "/socketio/")
_ENTRY_POINT = "/server/__main__.py"


@dataclass(frozen=True)
class Allocations:
    """Bytes and blocks allocated between two snapshots, per connection, by site."""

    connections: int
    total_bytes: int
    total_blocks: int
    by_line: list[tuple[str, int, int]]  # (site, bytes, blocks)
    by_owner: list[tuple[str, int, int]]

    def text(self, top: int) -> str:
        n = self.connections

        def rows(items: list[tuple[str, int, int]]) -> list[str]:
            return [f"{size / n:9.0f} B {blocks / n:6.1f}  {site}" for site, size, blocks in items[:top]]

        return "\n".join([
            f"tracemalloc: {self.total_bytes / n:.0f} bytes in {self.total_blocks / n:.1f} blocks per connection",
            "", "per connection (bytes, blocks), by allocating line:", *rows(self.by_line),
            "", "per connection, by the innermost frame in server/, engineio/ or socketio/ (else in any package):",
            *rows(self.by_owner), ""])


def attribute(frames: Iterable[tracemalloc.Frame]) -> str:
    """The frame an allocation is charged to, given its frames innermost first."""
    frames = list(frames)
    for frame in frames:
        if any(owner in frame.filename for owner in OWNERS) and not frame.filename.endswith(_ENTRY_POINT):
            return _site(frame)
    return _site(next((frame for frame in frames if "site-packages/" in frame.filename), frames[0]))


def _site(frame: tracemalloc.Frame) -> str:
    """``file:line``, the file relative to the repository, site-packages or the standard library."""
    path = frame.filename
    for root in ("site-packages/", f"{REPO_ROOT}/", f"python{sys.version_info.major}.{sys.version_info.minor}/"):
        if root in path:
            path = path.split(root, 1)[1]
            break
    return f"{path}:{frame.lineno}"


def allocations(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, connections: int) -> Allocations:
    traced = tracemalloc.Filter(False, tracemalloc.__file__)
    before, after = before.filter_traces([traced]), after.filter_traces([traced])
    diffs = [d for d in after.compare_to(before, "traceback") if d.size_diff or d.count_diff]
    by_line: Counter[str] = Counter()
    by_owner: Counter[str] = Counter()
    blocks_line: Counter[str] = Counter()
    blocks_owner: Counter[str] = Counter()
    for diff in diffs:
        innermost = list(reversed(diff.traceback))  # a Traceback runs oldest frame first
        line, owner = _site(innermost[0]), attribute(innermost)
        by_line[line] += diff.size_diff
        blocks_line[line] += diff.count_diff
        by_owner[owner] += diff.size_diff
        blocks_owner[owner] += diff.count_diff
    return Allocations(
        connections=connections, total_bytes=sum(d.size_diff for d in diffs),
        total_blocks=sum(d.count_diff for d in diffs),
        by_line=[(site, size, blocks_line[site]) for site, size in by_line.most_common()],
        by_owner=[(site, size, blocks_owner[site]) for site, size in by_owner.most_common()])


async def _snapshot(pid: int) -> tracemalloc.Snapshot:
    path = snapshot_path(pid)
    path.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + SNAPSHOT_TIMEOUT
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no tracemalloc snapshot from pid {pid} after {SNAPSHOT_TIMEOUT}s")
        await asyncio.sleep(0.1)
    try:
        return tracemalloc.Snapshot.load(str(path))
    finally:
        path.unlink()


async def traced(connections: int, *, compression: bool, log_dir: Path) -> Allocations:
    async with Rig("ours", replicas=1, users=[], log_dir=log_dir, compression=compression,
                   module="bench.traced_replica") as rig:
        pid = rig.cluster.replicas[0].pid
        before = await _snapshot(pid)
        await rig.connect(compress=True, users=users(connections), replica=0)
        await asyncio.sleep(SETTLE_S)
        return allocations(before, await _snapshot(pid), connections)


async def resident(connections: int, *, compression: bool, log_dir: Path) -> float:
    async with Rig("ours", replicas=1, users=[], log_dir=log_dir, compression=compression) as rig:
        return (await rig.idle_memory(connections=users(connections), compress=True)).bytes_per_connection


async def _run(args: argparse.Namespace) -> None:
    deflate = "on" if args.compression else "off"
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as log_dir:
        rss = await resident(args.connections, compression=args.compression, log_dir=Path(log_dir))
        print(f"RSS: {rss:.0f} bytes per connection ({args.connections} idle WebSockets, deflate {deflate})",
              flush=True)
        found = await traced(args.traced, compression=args.compression, log_dir=Path(log_dir))
    print(f"{args.traced} idle WebSockets under tracemalloc, deflate {deflate}")
    print(found.text(args.top))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=2000, help="for the RSS figure")
    parser.add_argument("--traced", type=int, default=1000,
                        help="connections under tracemalloc, which slows the replica several times")
    parser.add_argument("--top", type=int, default=15, help="sites to list")
    parser.add_argument("--compression", action="store_true", help="the replica accepts permessage-deflate")
    asyncio.run(_run(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
