"""``python -m bench.traced_replica``: our replica under tracemalloc, for ``bench.memory``.

It runs alone on the memory backend (``REDIS_URL`` is ignored): traced, every Redis
round trip is several times slower, and the presence heartbeat, which writes every
socket to Redis every 3 s, then stalls the loop until clients time out. What Redis
keeps for a connection in Redis mode -- its presence entry, its session, its user's
history -- is kept in the process here, and charged to ``kindmap_realtime/backends/memory/``.

On SIGUSR1 it collects garbage and writes a tracemalloc snapshot to
``snapshot_path(pid)`` (under a temporary name first, so a reader never sees
half a file). Tracing slows the replica and adds its own memory: its RSS says
nothing; ``bench.memory`` reads RSS from an untraced replica.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import tempfile
import tracemalloc
from pathlib import Path
from types import FrameType

from server.__main__ import main

__all__ = ["FRAMES", "snapshot_path"]

FRAMES = 16  # frames kept per allocation: deep enough to reach our code from inside aiohttp


def snapshot_path(pid: int) -> Path:
    return Path(tempfile.gettempdir()) / f"kindmap-tracemalloc-{pid}.snapshot"


def _dump(_signum: int, _frame: FrameType | None) -> None:
    gc.collect()
    path = snapshot_path(os.getpid())
    partial = path.with_suffix(".partial")
    tracemalloc.take_snapshot().dump(str(partial))
    os.replace(partial, path)


if __name__ == "__main__":
    os.environ.pop("REDIS_URL", None)
    tracemalloc.start(FRAMES)
    signal.signal(signal.SIGUSR1, _dump)
    sys.exit(main())
