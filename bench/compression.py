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
  clients sent during the step (``ss``), divided by the messages delivered;
- and, in this process, what deflating the same messages costs by itself: the
  replica's figure is the whole path of a message, of which deflate is a part.

It prints a Markdown table. Every process it starts is stopped on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from .message import EVENT, payload
from .rig import Rig
from .scenarios import users
from .wire import bytes_sent

__all__ = ["Measurement", "main", "table"]

WARMUP_S = 2.0
DEFLATE_SAMPLE = 20_000  # messages deflated to time deflate alone


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


def packet(seq: int) -> bytes:
    """One benchmark message as the replica sends it: the text of an Engine.IO/Socket.IO packet."""
    return ("42" + json.dumps([EVENT, payload(step=1, seq=seq)], separators=(",", ":"))).encode()


def message_bytes() -> int:
    return len(packet(1))


def deflate_alone(per_connection: int, messages: int = DEFLATE_SAMPLE) -> tuple[float, float]:
    """CPU µs and bytes per message of permessage-deflate by itself, timed in this process, as
    aiohttp applies it: zlib level 1, one compressor per connection whose 15-bit window runs
    from message to message, a sync flush after each (its 4-byte tail is not sent). The
    messages go ``per_connection`` to a connection, as in the measured step."""
    frames = [packet(seq) for seq in range(messages)]
    size = 0
    began = time.process_time()
    for first in range(0, messages, per_connection):
        compressor = zlib.compressobj(1, zlib.DEFLATED, -15)
        for frame in frames[first:first + per_connection]:
            size += len(compressor.compress(frame) + compressor.flush(zlib.Z_SYNC_FLUSH)) - 4
    return (time.process_time() - began) / messages * 1e6, size / messages


def table(rows: list[Measurement], *, rate: float, duration: float) -> str:
    def number(value: float | None, unit: str, digits: int = 0) -> str:
        return "-" if value is None else f"{value:,.{digits}f} {unit}"

    per_connection = max(1, round(rate * duration / rows[0].connections))
    cpu, size = deflate_alone(per_connection)
    lines = [
        f"{rows[0].connections} connections offering permessage-deflate; targeted messages at {rate:g}/s for "
        f"{duration:g} s ({per_connection} per connection); one message is a {message_bytes()}-byte Socket.IO "
        f"packet. Deflate alone (zlib as aiohttp calls it, in this process): {cpu:.1f} µs and {size:.0f} bytes "
        "per message.",
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
