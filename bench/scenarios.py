"""The scenarios, each measured on every system of the plan side by side.

The systems alternate inside each scenario (baseline, ours, then the Node
references, with the same users, rates and seeds), so slow drift in the
machine's other load touches them all.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .results import VOLATILE_STEP, IdleResult, StepResult
from .rig import Rig
from .systems import SYSTEMS

__all__ = ["FULL", "QUICK", "SCENARIOS", "SYSTEM_ORDER", "Plan", "run_scenarios"]

SYSTEM_ORDER = tuple(SYSTEMS)  # baseline, ours, node-classic, node-sharded
Result = StepResult | IdleResult
Report = Callable[[Result], None]


@dataclass(frozen=True)
class Plan:
    """Sizes of a run. ``FULL`` is the issue's; ``QUICK`` only proves the suite works."""

    users: int
    replicas: int
    targeted_rates: tuple[float, ...]
    step_s: float
    broadcast_rate: float
    idle_connections: int
    scaling_replicas: tuple[int, ...]
    scaling_rate: float
    emitter_s: float
    warmup_rate: float
    warmup_s: float
    repeats: int  # of the load and scaling scenarios: the report gives medians over them
    systems: tuple[str, ...] = SYSTEM_ORDER  # measured in this order
    compression: tuple[bool, ...] = (False, True)  # the load and idle scenarios' modes: deflate off, on


FULL = Plan(users=1500, replicas=3, targeted_rates=(500, 1000, 2000, 4000, 8000), step_s=8.0, broadcast_rate=20.0,
            idle_connections=3000, scaling_replicas=(1, 2, 3, 6), scaling_rate=500.0, emitter_s=5.0,
            warmup_rate=200.0, warmup_s=2.0, repeats=2)
# Without the Node references: one of them took the quick run from 74 s to 104 s on the 2-core
# machine (`--quick --systems ...` adds them; tests/bench/test_node.py runs a step on each).
QUICK = Plan(users=40, replicas=2, targeted_rates=(50, 100), step_s=1.0, broadcast_rate=5.0, idle_connections=50,
             scaling_replicas=(1, 2), scaling_rate=50.0, emitter_s=1.0, warmup_rate=50.0, warmup_s=0.5,
             repeats=1, systems=("baseline", "ours"))


# Overdue messages an emitter sends in one call where its system has one (ours: ``send_many``).
BATCH = 500


def users(count: int) -> list[str]:
    return [f"bench-{i:05d}" for i in range(count)]


async def load(plan: Plan, log_dir: Path, report: Report) -> None:
    """targeted, broadcast and emitter: one cluster per system and compression mode.

    Where the system can send volatile (ours), each targeted rate without compression
    is also offered as volatile sends ("targeted-volatile": the same users, nothing
    stored for recovery), right beside the durable step; which of the two goes first
    alternates by repeat, so neither always meets a fresher cluster.

    The emitter's top rate is measured without compression only: compression is
    the replicas' cost, not the emitter's. It is measured twice: with batches where
    the system's emitter has a batch call ("emitter"), and one message per call
    ("emitter-single", what a single ``send_to_user`` costs).
    """
    for repeat, compress, system in itertools.product(range(plan.repeats), plan.compression, plan.systems):
        sends = (False, True) if SYSTEMS[system].volatile and not compress else (False,)
        if repeat % 2:
            sends = sends[::-1]
        async with Rig(system, replicas=plan.replicas, users=users(plan.users), log_dir=log_dir,
                       compression=compress) as rig:
            await rig.connect(compress=compress)
            await rig.step("warmup", rate=plan.warmup_rate, duration=plan.warmup_s)
            for rate in plan.targeted_rates:
                for volatile in sends:
                    report(await rig.step(VOLATILE_STEP if volatile else "targeted", rate=rate, duration=plan.step_s,
                                          seed=int(rate), batch=BATCH, volatile=volatile))
            report(await rig.step("broadcast", rate=plan.broadcast_rate, duration=plan.step_s, broadcast=True))
            if not compress:
                report(await rig.step("emitter", rate=None, duration=plan.emitter_s, batch=BATCH))
                report(await rig.step("emitter-single", rate=None, duration=plan.emitter_s))


async def idle(plan: Plan, log_dir: Path, report: Report) -> None:
    """Memory per idle connection: a fresh single replica per measurement."""
    for compress, system in itertools.product(plan.compression, plan.systems):
        async with Rig(system, replicas=1, users=[], log_dir=log_dir, compression=compress) as rig:
            report(await rig.idle_memory(connections=users(plan.idle_connections), compress=compress))


async def scaling(plan: Plan, log_dir: Path, report: Report) -> None:
    """The same targeted load on more and more replicas (no compression)."""
    for _repeat, count, system in itertools.product(range(plan.repeats), plan.scaling_replicas, plan.systems):
        async with Rig(system, replicas=count, users=users(plan.users), log_dir=log_dir) as rig:
            await rig.connect(compress=False)
            await rig.step("warmup", rate=plan.warmup_rate, duration=plan.warmup_s)
            report(await rig.step("scaling", rate=plan.scaling_rate, duration=plan.step_s, seed=count, batch=BATCH))


SCENARIOS = {"load": load, "idle": idle, "scaling": scaling}


async def run_scenarios(plan: Plan, names: list[str], log_dir: Path, report: Report) -> None:
    for name in names:
        await SCENARIOS[name](plan, log_dir, report)
