"""Where one of our replicas spends its CPU under targeted load (py-spy).

``python -m bench --profile`` runs the targeted load on our three replicas and
samples the first with py-spy for one step. The summary lists functions by
inclusive and by own ("self") share of the busy samples, and the shares of the
stages a message goes through; samples waiting in the event loop's ``select``
are idle and left out.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .rig import Rig

__all__ = ["StackSummary", "profile_replica", "summarize_stacks"]

IDLE_LEAF = "select (selectors.py)"  # the event loop waiting for I/O: idle, not a cost
# Frames every busy sample passes through; they say nothing about the cost of a message.
LOOP_FRAMES = ("_run_module_as_main", "_run_code", "<module>", "main (", "run_app", "run (asyncio", "Runner.run",
               "run_until_complete", "run_forever", "_run_once", "Handle._run")
# The path of a message through a replica: the function heading each stage's subtree (they do not nest).
STAGES = (
    ("Redis inbox read: the XREAD round trips (messages for this replica's users only)",
     "InboxTransport.messages (kindmap_realtime/backends/redis/inboxes.py)"),
    ("WebSocket write: Engine.IO writer task, aiohttp frame, send() (delivered messages)",
     "AsyncSocket._websocket_handler.<locals>.writer (engineio/async_socket.py)"),
    ("Socket.IO emit: room lookup, packet encoding, per-socket queue",
     "AsyncPubSubManager._handle_emit (socketio/async_pubsub_manager.py)"),
    ("Queue envelope decode and validation (every message)", "decode (kindmap_realtime/messages/envelope.py)"),
)
SAMPLE_RATE = 250
_LINE_NUMBER = re.compile(r":\d+\)$")


@dataclass(frozen=True)
class StackSummary:
    """Busy samples by function (line numbers merged), and by stage of a message's path."""

    busy: int
    idle: int
    inclusive: list[tuple[str, int]]
    own: list[tuple[str, int]]

    def stages(self) -> list[tuple[str, int]]:
        counts = dict(self.inclusive)
        found = [(label, counts.get(frame, 0)) for label, frame in STAGES]
        return [*found, ("everything else (event loop, timers, pings)", self.busy - sum(n for _, n in found))]

    def text(self, top: int = 25) -> str:
        def share(rows: list[tuple[str, int]]) -> list[str]:
            return [f"{count / self.busy:6.1%}  {frame}" for frame, count in rows]
        return "\n".join([f"busy samples: {self.busy}, idle samples left out: {self.idle}", "",
                          "stages of a message's path:", *share(self.stages()), "",
                          "inclusive (the function and what it calls):", *share(self.inclusive[:top]), "",
                          "self (the function's own code):", *share(self.own[:top]), ""])


def summarize_stacks(lines: Iterable[str]) -> StackSummary:
    """Summarise py-spy's ``--format raw`` output: ``frame;frame;...;leaf count`` per line."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    busy = idle = 0
    for line in lines:
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack:
            continue
        count, frames = int(count_text), [_LINE_NUMBER.sub(")", frame) for frame in stack.split(";")]
        if frames[-1].endswith(IDLE_LEAF):
            idle += count
            continue
        busy += count
        own[frames[-1]] += count
        for frame in set(frames):
            if not any(marker in frame for marker in LOOP_FRAMES):
                inclusive[frame] += count
    return StackSummary(busy=busy, idle=idle, inclusive=inclusive.most_common(), own=own.most_common())


async def profile_replica(*, users: list[str], replicas: int, rate: float, duration: float,
                          out_dir: Path, system: str = "ours") -> StackSummary:
    """Sample our first replica during one targeted step; writes ``profile.raw`` and ``profile.txt``.
    ``system``: ours at another commit (``ours-<commit>``, see ``bench.systems.ours_at``)."""
    # The virtualenv's bin/ holds it, and is not always on PATH.
    py_spy = shutil.which("py-spy", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if py_spy is None:
        raise RuntimeError("py-spy is not installed (pip install -r bench/requirements.txt)")
    raw = out_dir / "profile.raw"
    async with Rig(system, replicas=replicas, users=users, log_dir=out_dir / "logs") as rig:
        await rig.connect(compress=False)
        await rig.step("warmup", rate=min(rate, 200), duration=2)
        spy = await asyncio.create_subprocess_exec(
            py_spy, "record", "--pid", str(rig.cluster.replicas[0].pid), "--duration", str(int(duration)),
            "--rate", str(SAMPLE_RATE), "--format", "raw", "--output", str(raw),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            step = await rig.step("profile", rate=rate, duration=duration)
            if await asyncio.wait_for(spy.wait(), 30) != 0:
                raise RuntimeError("py-spy failed (it needs ptrace rights over the replica)")
        finally:
            if spy.returncode is None:
                spy.kill()
                await spy.wait()
    summary = summarize_stacks(raw.read_text().splitlines())
    (out_dir / "profile.txt").write_text(f"{step.line()}\n\n{summary.text()}")
    return summary
