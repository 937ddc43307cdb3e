"""``python -m bench``: ours, stock python-socketio and Node Socket.IO side by side, on this machine.

    python -m bench                    the full run (about 30 minutes), into bench/results/
    python -m bench --quick            a small run that proves the suite works (CI)
    python -m bench --only idle load   some scenarios only: load (targeted, for ours also
                                       volatile, broadcast, emitter), idle, scaling
    python -m bench --systems ours node-classic
                                       some systems only (default: the plan's)
    python -m bench --only load --users 300 --replicas 3 --rates 1000 --repeats 1
                                       a smaller plan: users, replicas, targeted rates, repeats
    python -m bench --only load --compression off --ours-at 869c95d
                                       deflate off only; ours at commit 869c95d measured too,
                                       as system ours-869c95d, right before ours now
    python -m bench --report FILE      render a saved results.json again
    python -m bench --profile          py-spy profile of one of our replicas under targeted load
                                       (with --ours-at REF: of ours at that commit)

Every process it starts (redis-server, replicas, load generator, emitter) is
stopped on success, failure and Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
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
from .scenarios import FULL, QUICK, SCENARIOS, Plan, run_scenarios, users
from .systems import SYSTEMS, commit_of, missing_tools, ours_at

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PROFILE_RATE = 1000.0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small run for CI; asserts nothing about speed")
    parser.add_argument("--only", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS), metavar="SCENARIO",
                        help=f"scenarios to run, of {', '.join(SCENARIOS)}")
    parser.add_argument("--systems", nargs="+", choices=list(SYSTEMS), metavar="SYSTEM",
                        help=f"systems to measure, of {', '.join(SYSTEMS)} (default: all; --quick: no Node system)")
    parser.add_argument("--users", type=_positive, help="users connected in the load and scaling scenarios")
    parser.add_argument("--replicas", type=_positive, help="replicas of each system in the load scenario")
    parser.add_argument("--rates", type=_positive, nargs="+", metavar="MSG_S", help="targeted rates offered")
    parser.add_argument("--repeats", type=_positive, help="runs of the load and scaling scenarios (medians over them)")
    parser.add_argument("--compression", nargs="+", choices=("off", "on"), metavar="MODE",
                        help="permessage-deflate modes of the load and idle scenarios, of off, on (default: both)")
    parser.add_argument("--ours-at", metavar="REF",
                        help="also measure ours as it was at this git commit (system ours-<commit>), its replicas and "
                             "emitter run from a temporary worktree of it with this interpreter")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="where results go (default: bench/results)")
    parser.add_argument("--report", type=Path, metavar="FILE", help="render a saved results.json again and stop")
    parser.add_argument("--profile", action="store_true", help="profile one of our replicas and stop")
    return parser.parse_args(argv)


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text}")
    return value


def plan_of(args: argparse.Namespace) -> Plan:
    """The quick or full plan, with what the arguments change."""
    changes = {name: value for name, value in (("systems", args.systems), ("users", args.users),
                                                ("replicas", args.replicas), ("targeted_rates", args.rates),
                                                ("repeats", args.repeats))
               if value is not None}
    if args.compression is not None:
        changes["compression"] = tuple(mode == "on" for mode in ("off", "on") if mode in args.compression)
    # Order as the plan runs them (baseline first), however they were named.
    if "systems" in changes:
        changes["systems"] = tuple(name for name in SYSTEMS if name in changes["systems"])
    if "targeted_rates" in changes:
        changes["targeted_rates"] = tuple(sorted(float(rate) for rate in changes["targeted_rates"]))
    return dataclasses.replace(QUICK if args.quick else FULL, **changes)


def with_system(systems: tuple[str, ...], name: str) -> tuple[str, ...]:
    """``systems`` with ``name`` (ours at another commit) right before ours, so the two run one
    after the other in each repeat; first if ours is not measured."""
    at = systems.index("ours") if "ours" in systems else 0
    return (*systems[:at], name, *systems[at:])


async def _run(args: argparse.Namespace) -> int:
    main_task = asyncio.current_task()
    if main_task is not None:  # SIGTERM unwinds like Ctrl-C: the run is cancelled and every process stopped
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    log_dir = args.out / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        plan = plan_of(args)
        older = None if args.ours_at is None else stack.enter_context(ours_at(args.ours_at))
        if older is not None:
            plan = dataclasses.replace(plan, systems=with_system(plan.systems, older))
        if args.profile:
            summary = await profile_replica(users=users(plan.users), replicas=plan.replicas, rate=PROFILE_RATE,
                                            duration=plan.step_s, out_dir=args.out, system=older or "ours")
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
    if not args.profile and (missing := missing_tools(plan_of(args).systems)) is not None:
        print(missing, file=sys.stderr)
        return 2
    if args.ours_at is not None:
        try:
            commit_of(args.ours_at)
        except ValueError as exc:
            print(exc, file=sys.stderr)
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
