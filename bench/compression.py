"""``python -m bench.compression``: permessage-deflate accepted and declined, for navigation messages.

    python -m bench.compression                         1,000 users, 500 msg/s for 10 s
    python -m bench.compression --users 300 --rate 200 --duration 5

For each setting of ``WEBSOCKET_COMPRESSION`` it starts one of our replicas (and
its Redis), connects the users to it with clients that offer permessage-deflate
as browsers do, and measures:

- memory per idle connection: the replica's RSS before and after they connected;
- server CPU per delivered message: the replica's CPU time over a step of
  targeted messages (``bench/message.py``, ~200 bytes of JSON) at a fixed rate;
- bytes on the wire per message: what the replica's TCP connections to the
  clients sent during the step (``ss``), divided by the messages delivered.

It prints a Markdown table. Every process it starts is stopped on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .message import EVENT, payload
from .rig import Rig
from .scenarios import users
from .wire import bytes_sent

__all__ = ["Measurement", "main", "table"]

WARMUP_S = 2.0


@dataclass(frozen=True)
class Measurement:
    compression: bool
    connections: int
    idle_bytes_per_connection: float
    delivered: int
    delivered_fraction: float
    server_cpu_us_per_msg: float | None
    wire_bytes_per_msg: float | None
    p99_ms: float | None


async def measure(*, compression: bool, users_: list[str], rate: float, duration: float,
                  log_dir: Path) -> Measurement:
    async with Rig("ours", replicas=1, users=users_, log_dir=log_dir, compression=compression) as rig:
        idle = await rig.idle_memory(connections=users_, compress=True)
        await rig.step("warmup", rate=min(rate, 200.0), duration=WARMUP_S)
        port = rig.cluster.replicas[0].port
        sent_before = bytes_sent(port)
        step = await rig.step("compression", rate=rate, duration=duration)
        wire = bytes_sent(port) - sent_before
    cpu = step.server_cpu_ms_per_msg
    return Measurement(
        compression=compression, connections=len(users_), idle_bytes_per_connection=idle.bytes_per_connection,
        delivered=step.delivered, delivered_fraction=step.delivered_fraction,
        server_cpu_us_per_msg=None if cpu is None else cpu * 1000,
        wire_bytes_per_msg=wire / step.delivered if step.delivered else None, p99_ms=step.p99_ms)


def message_bytes() -> int:
    """The Socket.IO packet of one benchmark message, as text on the wire without compression."""
    return len(("42" + json.dumps([EVENT, payload(step=1, seq=1)], separators=(",", ":"))).encode())


def table(rows: list[Measurement], *, rate: float, duration: float) -> str:
    def number(value: float | None, unit: str, digits: int = 0) -> str:
        return "-" if value is None else f"{value:,.{digits}f} {unit}"

    lines = [
        f"{rows[0].connections} connections offering permessage-deflate; targeted messages at {rate:g}/s for "
        f"{duration:g} s; one message is a {message_bytes()}-byte Socket.IO packet.",
        "",
        "| WEBSOCKET_COMPRESSION | idle memory per connection | server CPU per message | bytes on the wire per "
        "message | delivered | p99 |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {'true' if r.compression else 'false'} | {number(r.idle_bytes_per_connection / 1024, 'KiB', 1)} | "
              f"{number(r.server_cpu_us_per_msg, 'µs')} | {number(r.wire_bytes_per_msg, 'B')} | "
              f"{r.delivered:,} ({r.delivered_fraction:.2%}) | {number(r.p99_ms, 'ms', 1)} |" for r in rows]
    return "\n".join(lines)


async def _run(args: argparse.Namespace) -> None:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-compression-") as log_dir:
        for compression in (False, True):
            rows.append(await measure(compression=compression, users_=users(args.users), rate=args.rate,
                                      duration=args.duration, log_dir=Path(log_dir)))
    print(table(rows, rate=args.rate, duration=args.duration))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compression", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=500.0, help="targeted messages per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of the measured step")
    asyncio.run(_run(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
