"""``python -m bench.soak``: hours of a rider's day in minutes, with attackers in the crowd.

    python -m bench.soak                       10 minutes, 3 replicas, 3,000 users, 200 msg/s
    python -m bench.soak --minutes 30 --users 5000 --rate 300
    python -m bench.soak --minutes 1 --users 200 --rate 50      a short look

Our cluster (Redis and N replicas, as ``python -m bench`` starts it) holds the users
while the emitter sends them steady targeted traffic, window after window, and the
hostile clients of ``bench.hostile`` attack the first replica the whole time. After
each window it records every replica's memory, what was lost and how late, and what
the attackers got. A replica whose memory keeps climbing, or healthy users who lose
messages or wait longer as the run goes on, is what this looks for.

Not part of CI: it takes as long as it is told to. Writes ``soak.json``, ``soak.md``
and ``soak.png`` into ``--out`` (default ``bench/results/soak``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display; chosen before pyplot is imported
import matplotlib.pyplot as plt

from .cluster import CHANNEL
from .control import Worker, python_module, run_and_write
from .cpu import rss_bytes
from .hostile import ATTACKS
from .rig import Rig
from .scenarios import users

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "soak"
WINDOW_S = 30.0
MB = 1024 * 1024


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="how long (default 10)")
    parser.add_argument("--users", type=int, default=3000, help="healthy users connected (default 3000)")
    parser.add_argument("--replicas", type=int, default=3, help="replicas (default 3)")
    parser.add_argument("--rate", type=float, default=200.0, help="targeted messages per second (default 200)")
    parser.add_argument("--window", type=float, default=WINDOW_S, help="seconds between samples (default 30)")
    parser.add_argument("--attacks", nargs="*", choices=list(ATTACKS), default=list(ATTACKS),
                        help="hostile clients to run (default: all; none with an empty list)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where results go")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.users < 1 or args.replicas < 1 or args.rate <= 0 or args.window <= 0:
        parser.error("--minutes, --users, --replicas, --rate and --window must be positive")
    return args


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    """Run the soak; returns the document that ``write`` turns into files."""
    log_dir = args.out / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    windows = max(1, math.ceil(args.minutes * 60 / args.window))
    healthy = users(args.users)
    doc: dict[str, Any] = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                           "samples": []}
    async with Rig("ours", replicas=args.replicas, users=healthy, log_dir=log_dir) as rig:
        await rig.connect(compress=False)
        pids = [replica.pid for replica in rig.cluster.replicas]
        doc["rss_start_mb"] = [rss_bytes(pid) / MB for pid in pids]
        hostile = Worker("hostile", python_module("bench.hostile"), log_dir / "hostile.log")
        await hostile.start()
        try:
            await hostile.call("start", url=rig.cluster.urls[0], victim=healthy[0], redis_url=rig.cluster.redis.url,
                               channel=CHANNEL, seconds=windows * args.window * 3 + 60, attacks=args.attacks,
                               timeout=30)
            began = time.monotonic()
            for window in range(windows):
                step = await rig.step("soak", rate=args.rate, duration=args.window, seed=window)
                sample = {"window": window + 1, "elapsed_s": round(time.monotonic() - began, 1),
                          "rss_mb": [round(rss_bytes(pid) / MB, 1) for pid in pids],
                          "sent": step.sent, "lost": step.lost, "p50_ms": step.p50_ms, "p99_ms": step.p99_ms,
                          "connections_open": step.connections_open,
                          "attacks": await hostile.call("report", timeout=10)}
                doc["samples"].append(sample)
                print(_line(sample), flush=True)
            doc["attacks"] = await hostile.call("stop", timeout=60)
        finally:
            await hostile.stop()
    return doc


def _line(sample: dict[str, Any]) -> str:
    rss = " ".join(f"{mb:.0f}" for mb in sample["rss_mb"])
    p99 = "-" if sample["p99_ms"] is None else f"{sample['p99_ms']:.1f}"
    return (f"window {sample['window']:3d} at {sample['elapsed_s']:7.1f} s: replicas {rss} MB; "
            f"sent {sample['sent']}, lost {sample['lost']}, p99 {p99} ms, open {sample['connections_open']}")


def write(doc: dict[str, Any], out: Path) -> list[Path]:
    """``soak.json``, a Markdown table and a plot of memory per replica over time."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "soak.json", out / "soak.md", out / "soak.png"]
    paths[0].write_text(json.dumps(doc, indent=1))
    replicas = len(doc["rss_start_mb"])
    header = ["window", "elapsed s", *[f"replica-{i + 1} MB" for i in range(replicas)], "sent", "lost",
              "p50 ms", "p99 ms", "open"]
    rows = [[str(s["window"]), f"{s['elapsed_s']:.0f}", *[f"{mb:.0f}" for mb in s["rss_mb"]], str(s["sent"]),
             str(s["lost"]), _ms(s["p50_ms"]), _ms(s["p99_ms"]), str(s["connections_open"])]
            for s in doc["samples"]]
    lines = ["# Soak run", "", f"Arguments: `{json.dumps(doc['args'])}`", "",
             "Memory at the start (after the users connected): "
             + ", ".join(f"{mb:.0f} MB" for mb in doc["rss_start_mb"]), "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header),
             *["| " + " | ".join(row) + " |" for row in rows], "", "## What the attackers got", ""]
    for name, counts in doc.get("attacks", {}).items():
        lines.append(f"- **{name}**: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    paths[1].write_text("\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(8, 4))
    minutes = [s["elapsed_s"] / 60 for s in doc["samples"]]
    for i in range(replicas):
        label = f"replica-{i + 1}" + (" (attacked)" if i == 0 else "")
        ax.plot([0, *minutes], [doc["rss_start_mb"][i], *[s["rss_mb"][i] for s in doc["samples"]]], marker=".",
                label=label)
    ax.set_xlabel("minutes")
    ax.set_ylabel("resident memory, MB")
    ax.set_ylim(bottom=0)
    ax.set_title("Memory per replica during the soak run")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(paths[2], dpi=120)
    plt.close(fig)
    return paths


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    return run_and_write(lambda: soak(args), lambda doc: write(doc, args.out))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
