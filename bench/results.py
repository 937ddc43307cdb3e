"""What each measurement produces, and the arithmetic that turns raw counts into it.

A step's numbers come from three independent witnesses: the emitter (what it
sent), the load generator (what each client received, and when) and ``/proc``
(what each process spent). Nothing here does I/O, so it is unit-tested alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from .cpu import CpuWindow
from .stats import count_losses, summarize_latency

__all__ = ["SHORT_OF_OFFERED", "VOLATILE_STEP", "IdleResult", "StepResult", "step_result"]

# The targeted step with volatile sends: nothing stored for connection state recovery (ours only).
VOLATILE_STEP = "targeted-volatile"

# An emitter that achieved less than this share of the offered rate limited the step itself.
SHORT_OF_OFFERED = 0.95
# A process using this share of one core or more was saturated.
SATURATED = 0.9


@dataclass(frozen=True)
class StepResult:
    """One load step: a fixed offered rate for a fixed time, on one system."""

    scenario: str
    system: str
    compression: bool
    replicas: int
    users: int
    offered_rate: float | None  # msg/s; None: as fast as the emitter can
    duration_s: float
    sent: int
    failed: int
    achieved_rate: float
    emitter_short: bool  # the emitter could not offer the rate: not a server result
    expected: int
    delivered: int
    lost: int
    extra: int
    late: int  # messages of an earlier step, arrived after it was collected
    connections_open: int  # at the end of the step: fewer than users means connections dropped
    delivered_fraction: float
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    deliveries_per_s: float
    wall_s: float
    cpu_s: dict[str, float]
    others_cpu_s: float  # CPU the rest of the machine used during the step (a shared box)
    server_cpu_s: float
    server_cpu_ms_per_msg: float | None  # server CPU ms per delivered message = CPU s per 1,000
    emitter_cpu_us_per_msg: float | None
    saturated: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"kind": "step", **asdict(self)}

    def line(self) -> str:
        """One line for the console while the suite runs."""
        rate = "max" if self.offered_rate is None else f"{self.offered_rate:g}"
        p99 = "-" if self.p99_ms is None else f"{self.p99_ms:.1f}"
        cpu = "-" if self.server_cpu_ms_per_msg is None else f"{self.server_cpu_ms_per_msg:.3f}"
        return (f"{self.scenario:9} {self.system:12} deflate={'on ' if self.compression else 'off'} "
                f"r={self.replicas} offered={rate:>5} achieved={self.achieved_rate:7.0f}/s "
                f"delivered={self.delivered_fraction:7.2%} p99={p99:>8} ms server={cpu} ms/msg"
                + (" EMITTER-SHORT" if self.emitter_short else "")
                + (f" DROPPED={self.users - self.connections_open}" if self.connections_open < self.users else "")
                + (f" saturated={','.join(self.saturated)}" if self.saturated else ""))


@dataclass(frozen=True)
class IdleResult:
    """Resident memory of one replica holding idle connections."""

    system: str
    compression: bool
    connections: int
    rss_before_bytes: int
    rss_after_bytes: int
    connect_s: float

    @property
    def bytes_per_connection(self) -> float:
        return (self.rss_after_bytes - self.rss_before_bytes) / self.connections

    def to_json(self) -> dict[str, Any]:
        return {"kind": "idle", **asdict(self), "bytes_per_connection": self.bytes_per_connection}

    def line(self) -> str:
        return (f"idle      {self.system:12} deflate={'on ' if self.compression else 'off'} "
                f"{self.connections} connections: {self.bytes_per_connection / 1024:.1f} KiB each")


def step_result(*, scenario: str, system: str, compression: bool, replicas: int, users: list[str],
                offered_rate: float | None, duration: float, broadcast: bool, sent: Mapping[str, Any],
                received: Mapping[str, Any], cpu: CpuWindow) -> StepResult:
    """Combine the emitter's ``run`` reply (``sent``), the load generator's
    ``collect`` reply (``received``) and the CPU window of one step.

    A broadcast is expected once by every connected user; a targeted message
    once by the user it was sent to.
    """
    per_user: Mapping[str, int] = sent["per_user"]
    count = sum(per_user.values())
    expected = {user: count for user in users} if broadcast else per_user
    losses = count_losses(expected, received["received"])
    latency = summarize_latency(received["latencies"])
    delivered = losses.received - losses.extra
    achieved = count / duration
    first, last = received["first"], received["last"]
    span = max(duration, last - first) if first is not None and last is not None else duration
    server_cpu = cpu.total("replica-")
    emitter_cpu = cpu.cpu.get("emitter", 0.0)
    return StepResult(
        scenario=scenario, system=system, compression=compression, replicas=replicas, users=len(users),
        offered_rate=offered_rate, duration_s=duration, sent=count, failed=sum(sent["failed"].values()),
        achieved_rate=achieved,
        emitter_short=offered_rate is not None and achieved < SHORT_OF_OFFERED * offered_rate,
        expected=losses.expected, delivered=delivered, lost=losses.lost, extra=losses.extra,
        late=received["late"], connections_open=received["open"], delivered_fraction=losses.delivered_fraction,
        p50_ms=latency.p50_ms, p99_ms=latency.p99_ms, max_ms=latency.max_ms,
        deliveries_per_s=delivered / span, wall_s=cpu.wall_seconds, cpu_s=dict(cpu.cpu), others_cpu_s=cpu.others,
        server_cpu_s=server_cpu,
        server_cpu_ms_per_msg=server_cpu / delivered * 1000 if delivered else None,
        emitter_cpu_us_per_msg=emitter_cpu / count * 1e6 if count else None,
        saturated=sorted(name for name in cpu.cpu if cpu.utilisation(name) >= SATURATED),
    )
