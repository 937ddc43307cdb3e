"""``python -m bench``: ours and stock python-socketio side by side, on this machine.

    python -m bench                    the full run (about 15 minutes), into bench/results/
    python -m bench --quick            a small run that proves the suite works (CI)
    python -m bench --only idle load   some scenarios only: load (targeted, broadcast,
                                       emitter), idle, scaling
    python -m bench --report FILE      render a saved results.json again
    python -m bench --profile          py-spy profile of one of our replicas under targeted load

Every process it starts (redis-server, replicas, load generator, emitter) is
stopped on success, failure and Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import signal
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import report
from .machine import describe, load_average
from .profile import profile_replica
from .results import IdleResult, StepResult
from .scenarios import FULL, QUICK, SCENARIOS, run_scenarios, users

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PROFILE_RATE = 1000.0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small run for CI; asserts nothing about speed")
    parser.add_argument("--only", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS), metavar="SCENARIO",
                        help=f"scenarios to run, of {', '.join(SCENARIOS)}")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="where results go (default: bench/results)")
    parser.add_argument("--report", type=Path, metavar="FILE", help="render a saved results.json again and stop")
    parser.add_argument("--profile", action="store_true", help="profile one of our replicas and stop")
    return parser.parse_args(argv)


async def _run(args: argparse.Namespace) -> int:
    main_task = asyncio.current_task()
    if main_task is not None:  # SIGTERM unwinds like Ctrl-C: the run is cancelled and every process stopped
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    plan = QUICK if args.quick else FULL
    log_dir = args.out / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    if args.profile:
        summary = await profile_replica(users=users(plan.users), replicas=plan.replicas, rate=PROFILE_RATE,
                                        duration=plan.step_s, out_dir=args.out)
        print(summary.text(top=15))
        print(f"written: {args.out / 'profile.txt'}, {args.out / 'profile.raw'}")
        return 0
    doc: dict[str, Any] = {"mode": "quick" if args.quick else "full",
                           "started": datetime.now(UTC).isoformat(timespec="seconds"), "machine": describe(),
                           "plan": asdict(plan), "scenarios": args.only, "load_before": load_average(),
                           "results": []}

    def keep(result: StepResult | IdleResult) -> None:
        doc["results"].append(result.to_json())
        print(result.line(), flush=True)

    await run_scenarios(plan, args.only, log_dir, keep)
    doc.update(finished=datetime.now(UTC).isoformat(timespec="seconds"), load_after=load_average(),
               others_share=report.others_share(doc["results"], doc["machine"]["cores"]))
    for path in report.write(doc, args.out):
        print(f"written: {path}")
    return 0


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.report is not None:
        doc = json.loads(args.report.read_text())
        for path in report.write(doc, args.report.parent):
            print(f"written: {path}")
        return 0
    if shutil.which("redis-server") is None:
        print("redis-server is not installed (apt-get install redis-server)", file=sys.stderr)
        return 2
    # Thousands of sockets in the replicas: children inherit the whole file descriptor allowance.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        return asyncio.run(_run(args))
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C, or SIGTERM
        print("interrupted; every process it started was stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
