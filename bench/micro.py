"""``python -m bench.micro``: small, repeatable measurements of one replica's per-message costs.

``json``: CPU per encode and decode of a navigation message, json against orjson:
python-socketio's packet (``Packet`` against ``CodecPacket``) and the queue
envelope's JSON (``json`` against ``kindmap_realtime.messages.json_codec``).

``send``: CPU per recipient of the outgoing-buffer checks ``GuardedSocket.send`` and
its queue make for one packet sent to a room of 100 sockets (Korean text travels as
``\\u`` escapes, so its packet is ASCII too).

``emit``: CPU of python-socketio's ``AsyncManager.emit`` to a one-socket room (the
targeted message), stock (a task per recipient, then ``asyncio.wait``) against the
same packet awaited in place, on uvloop, with a send that does nothing: the cost of
the task alone. The managers live in server/manager/.

``redis``: CPU per message redis-py spends reading 300-byte messages, with hiredis and with
its pure-Python parser: pub/sub ``listen`` and ``XREAD`` batches of 1,000, from a private
``redis-server`` filled beforehand (so only the reading is timed).

``route``: what storing a message for connection state recovery adds to its routing
script, in Redis and in the emitter, durable against volatile sends (``bench.micro_route``).

``delivery``: one replica (``bench.micro_replica``, no Redis) emitting navigation
messages to the rooms of N WebSocket clients (``bench.loadgen.Client``) at a fixed
rate; reports the replica's CPU time per delivered message, read from ``/proc`` (and the
resident memory its clients' connections added, per connection), for
each combination of event loop (asyncio, uvloop) and packet JSON (json, orjson), and
on request with python-socketio's own emit, a task per recipient (``+tasks``; ours,
``server/manager/local_delivery.py``, awaits each send in turn).
Configurations take turns run after run, so the noise of a shared machine spreads
over all of them; the median of the runs is reported. ``--profile`` samples the last
configuration's replica with py-spy during its last run.

Process CPU time, not wall time: the clients and everything else on the machine
share its cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from engineio import json as engineio_json
from engineio import packet as eio_packet
from redis import asyncio as aioredis
from redis._parsers import _AsyncHiredisParser, _AsyncRESP3Parser
from socketio import packet as sio_packet
from socketio.async_manager import AsyncManager

from cluster.processes import RedisServer, Replica, wait_until_async
from kindmap_realtime.event_loop import new_event_loop
from kindmap_realtime.messages import json_codec
from server.eio.outgoing import OutgoingBuffer, packet_size
from server.eio.socket import GuardedSocket
from server.manager.local_delivery import LocalDelivery
from server.sio.server import CodecPacket

from .cpu import cpu_seconds, rss_bytes
from .loadgen import Client, Recorder
from .message import EVENT, payload
from .micro_route import RouteCosts, route_costs
from .profile import SAMPLE_RATE, summarize_stacks

__all__ = ["main"]

CONFIGS = ("asyncio+json", "uvloop+json", "asyncio+orjson", "uvloop+orjson", "uvloop+orjson+tasks")
DEFAULT_CONFIGS = CONFIGS[:4]


def per_call_us(function: Callable[[], object], *, calls: int, runs: int) -> float:
    """Median over ``runs`` of the process CPU microseconds one call takes."""
    samples = []
    for _ in range(runs):
        began = time.process_time()
        for _ in range(calls):
            function()
        samples.append((time.process_time() - began) / calls * 1e6)
    return statistics.median(samples)


def json_costs(*, calls: int, runs: int) -> list[tuple[str, float, float]]:
    """(what, json µs, orjson µs) per call, for each JSON step of a message's path."""
    data = [EVENT, payload(step=1, seq=42)]
    encoded = sio_packet.Packet(sio_packet.EVENT, data=data).encode()
    stock = sio_packet.Packet
    stock.json = engineio_json  # as python-socketio ships it

    envelope = {"method": "emit", "event": EVENT, "data": data[1:], "binary": False, "namespace": "/",
                "room": "user:u1234", "skip_sid": None, "callback": None, "host_id": "0123456789abcdef"}
    body = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()

    def measure(what: str, with_json: Callable[[], object], with_orjson: Callable[[], object]) -> tuple[
            str, float, float]:
        return what, per_call_us(with_json, calls=calls, runs=runs), per_call_us(with_orjson, calls=calls, runs=runs)

    return [
        measure(f"Socket.IO packet encode ({len(encoded)} B)",
                lambda: stock(sio_packet.EVENT, data=data).encode(),
                lambda: CodecPacket(sio_packet.EVENT, data=data).encode()),
        measure("Socket.IO packet decode", lambda: stock(encoded_packet=encoded),
                lambda: CodecPacket(encoded_packet=encoded)),
        measure(f"queue envelope JSON encode ({len(body)} B)",
                lambda: json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode(),
                lambda: json_codec.dumps_utf8(envelope)),
        measure("queue envelope JSON decode", lambda: json.loads(body), lambda: json_codec.loads(body)),
    ]


class _Transport(asyncio.Transport):
    """The two questions ``GuardedSocket.buffered`` asks of a connection."""

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0


def send_check_costs(*, calls: int, runs: int) -> list[tuple[str, float]]:
    """(what, µs per recipient): ``buffered()`` and ``packet_size()`` as a send and its queue call them."""
    sockets = []
    for _ in range(100):
        sock = GuardedSocket.__new__(GuardedSocket)  # no server: only the size checks run
        sock.queue, sock.transport = OutgoingBuffer(), _Transport()
        sockets.append(sock)
    results = []
    for text, guidance in (("ASCII", "Take the elevator at exit 4 to platform 2"),
                           ("Korean", "4번 출구 엘리베이터를 타고 2번 승강장으로 가세요")):
        data = [EVENT, {**payload(step=1, seq=42), "instruction": guidance}]
        encoded = CodecPacket(sio_packet.EVENT, data=data).encode()

        def room(encoded: str = encoded) -> None:
            pkt = eio_packet.Packet(eio_packet.MESSAGE, encoded)  # one packet for the whole room, as python-socketio
            for sock in sockets:
                sock.buffered() + packet_size(pkt) + packet_size(pkt)

        results.append((f"{text} packet", per_call_us(room, calls=calls // 100, runs=runs) / len(sockets)))
    return results


class _Engine:
    """No sockets of ours: every packet is sent as a packet (``send_packet``), the path measured."""

    def __init__(self) -> None:
        self.sockets: dict[str, GuardedSocket] = {}

    async def send_packet(self, eio_sid: str, pkt: eio_packet.Packet) -> None:
        return None


class _Server:
    """What ``AsyncManager.emit`` and ``LocalDelivery.emit`` use of their server, sending nowhere."""

    packet_class = CodecPacket
    eio = _Engine()

    async def _send_eio_packet(self, eio_sid: str, pkt: eio_packet.Packet) -> None:
        return None


async def _emit_costs(calls: int, runs: int) -> list[tuple[str, float]]:
    stock, ours = AsyncManager(), LocalDelivery()
    for manager in (stock, ours):
        manager.set_server(_Server())
        manager.basic_enter_room("sid1", "/", None, eio_sid="eio1")
        manager.basic_enter_room("sid1", "/", "user:u1")
    data = payload(step=1, seq=42)

    async def per_call(emit: Callable[[], Awaitable[None]]) -> float:
        samples = []
        for _ in range(runs):
            began = time.process_time()
            for _ in range(calls):
                await emit()
            samples.append((time.process_time() - began) / calls * 1e6)
        return statistics.median(samples)

    return [("stock AsyncManager.emit", await per_call(lambda: stock.emit(EVENT, data, "/", room="user:u1"))),
            ("ours, each send awaited in turn (LocalDelivery)",
             await per_call(lambda: ours.emit(EVENT, data, "/", room="user:u1")))]


def emit_costs(*, calls: int, runs: int) -> list[tuple[str, float]]:
    loop = new_event_loop()
    try:
        return loop.run_until_complete(_emit_costs(calls, runs))
    finally:
        loop.close()


async def _redis_costs(url: str, messages: int, runs: int) -> list[tuple[str, float, float]]:
    body = b"x" * 300
    results: dict[str, dict[str, list[float]]] = {"pub/sub listen": {}, "XREAD, batches of 1,000": {}}
    for _ in range(runs):
        for parser, parser_class in (("hiredis", _AsyncHiredisParser), ("python", _AsyncRESP3Parser)):
            pool = aioredis.ConnectionPool.from_url(url, parser_class=parser_class)
            client = aioredis.Redis.from_pool(pool)
            try:
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe("micro")
                await pubsub.get_message(timeout=1)  # the subscribe confirmation
                async with client.pipeline(transaction=False) as pipe:
                    for _ in range(messages):
                        pipe.publish("micro", body)
                    await pipe.execute()
                began, read = time.process_time(), 0
                async for message in pubsub.listen():
                    read += message["type"] == "message"
                    if read == messages:
                        break
                results["pub/sub listen"].setdefault(parser, []).append((time.process_time() - began) / messages)
                await pubsub.aclose()  # type: ignore[no-untyped-call]

                await client.delete("micro-stream")
                async with client.pipeline(transaction=False) as pipe:
                    for _ in range(messages):
                        pipe.xadd("micro-stream", {"m": body})
                    await pipe.execute()
                began, last, read = time.process_time(), "0", 0
                while read < messages:
                    reply: Any = await client.xread({"micro-stream": last}, count=1000)
                    entries = reply[0][1]  # [(stream, [(id, fields), ...])]
                    read, last = read + len(entries), entries[-1][0]
                results["XREAD, batches of 1,000"].setdefault(parser, []).append(
                    (time.process_time() - began) / messages)
            finally:
                await client.aclose(close_connection_pool=True)
    return [(what, statistics.median(by["hiredis"]) * 1e6, statistics.median(by["python"]) * 1e6)
            for what, by in results.items()]


def redis_costs(*, messages: int, runs: int) -> list[tuple[str, float, float]]:
    with tempfile.TemporaryDirectory(prefix="bench-micro-redis-") as tmp:
        redis = RedisServer(work_dir=Path(tmp))
        redis.start()
        try:
            return asyncio.run(_redis_costs(redis.url, messages, runs))
        finally:
            redis.stop()


class Run:
    """One replica of one configuration, its clients, and one measured step."""

    def __init__(self, config: str, *, users: list[str], log_dir: Path) -> None:
        loop, codec, *emit = config.split("+")
        # As bench/cluster.py sets them: nothing from the caller's environment or a .env file counts,
        # and the per-address handshake limits are lifted for clients that all come from one address.
        env = {"AUTH_MODE": "dev", "JWT_SECRET": "", "LOG_LEVEL": "WARNING", "REDIS_URL": "",
               "DUPLICATE_CONNECTION_POLICY": "allow", "MAX_PAYLOAD_BYTES": "", "HANDSHAKE_RATE_PER_SECOND": "10000",
               "HANDSHAKE_BURST": "100000", "MAX_CONNECTIONS": "1000000", "MICRO_LOOP": loop, "MICRO_CODEC": codec,
               "MICRO_EMIT": "".join(emit)}
        self.replica = Replica(instance_id=f"micro-{loop}-{codec}", env=env, log_dir=log_dir,
                               module="bench.micro_replica")
        self.users = users
        self.recorder = Recorder()
        self.clients: list[Client] = []
        self.bytes_per_connection = 0.0

    async def __aenter__(self) -> Run:
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        gate = asyncio.Semaphore(50)

        async def one(user: str) -> Client:
            async with gate:
                client = await Client.connect(self.session, self.replica.url, user, compress=False,
                                              recorder=self.recorder)
                self.clients.append(client)
                return client

        try:
            await asyncio.to_thread(self.replica.start)
            idle = rss_bytes(self.replica.pid)
            await asyncio.gather(*(one(user) for user in self.users))
            self.bytes_per_connection = (rss_bytes(self.replica.pid) - idle) / len(self.users)
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await asyncio.gather(*(client.close() for client in self.clients), return_exceptions=True)
        await self.session.close()
        await asyncio.to_thread(self.replica.stop)

    async def step(self, step: int, *, rate: float, seconds: float) -> tuple[int, int, float]:
        """Emit for ``seconds``; returns (messages sent, delivered, replica CPU seconds until the last arrived)."""
        self.recorder.begin(step)
        before = cpu_seconds(self.replica.pid)
        async with self.session.post(f"{self.replica.url}/bench/emit", json={
                "users": self.users, "rate": rate, "seconds": seconds, "step": step}) as response:
            sent = (await response.json())["sent"]
        with contextlib.suppress(TimeoutError):  # what was lost shows as delivered < sent
            await wait_until_async(lambda: self.recorder.total() >= sent, timeout=10, what="the last deliveries",
                                   interval=0.01)
        return sent, self.recorder.total(), cpu_seconds(self.replica.pid) - before


async def delivery(args: argparse.Namespace) -> dict[str, list[float]]:
    users = [f"micro{i}" for i in range(args.clients)]
    results: dict[str, list[float]] = {config: [] for config in args.configs}
    with tempfile.TemporaryDirectory(prefix="bench-micro-") as tmp:
        for run in range(args.runs):
            for config in args.configs:
                async with Run(config, users=users, log_dir=Path(tmp)) as one:
                    await one.step(0, rate=args.rate, seconds=1.0)  # warm-up
                    spy = _start_py_spy(one.replica.pid, args) if (
                        args.profile and run == args.runs - 1 and config == args.configs[-1]) else None
                    sent, delivered, cpu = await one.step(1, rate=args.rate, seconds=args.seconds)
                    if spy is not None:
                        await asyncio.to_thread(_write_profile, spy, Path(args.profile), config)
                us = cpu / max(delivered, 1) * 1e6
                results[config].append(us)
                print(f"run {run + 1} {config:15} delivered {delivered}/{sent}  {us:6.1f} µs CPU per delivery, "
                      f"{one.bytes_per_connection / 1024:.1f} KiB resident per connection", file=sys.stderr)
    return results


def _write_profile(spy: subprocess.Popen[bytes], path: Path, config: str) -> None:
    spy.wait(timeout=30)
    summary = summarize_stacks(path.with_suffix(".raw").read_text().splitlines())
    path.write_text(f"{config}\n\n{summary.text(top=40)}")


def _start_py_spy(pid: int, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    py_spy = shutil.which("py-spy", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if py_spy is None:
        raise RuntimeError("py-spy is not installed (pip install -r bench/requirements.txt)")
    return subprocess.Popen([py_spy, "record", "--pid", str(pid), "--duration", str(int(args.seconds)),
                             "--rate", str(SAMPLE_RATE), "--format", "raw",
                             "--output", str(Path(args.profile).with_suffix(".raw"))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.micro", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    # The one-cost commands: name, help, what is repeated and how often, runs.
    for name, help_text, count, repeats, runs in [
        ("json", "encode and decode CPU of a navigation message", "--calls", 20_000, 7),
        ("send", "outgoing-buffer checks per recipient", "--calls", 200_000, 7),
        ("emit", "python-socketio's emit to one socket, with and without a task", "--calls", 20_000, 7),
        ("redis", "redis-py's read CPU per message, hiredis or not", "--messages", 40_000, 5),
    ]:
        command = commands.add_parser(name, help=help_text)
        command.add_argument(count, type=int, default=repeats)
        command.add_argument("--runs", type=int, default=runs)
    route = commands.add_parser("route", help="a targeted send's cost in Redis and the emitter, durable vs volatile")
    route.add_argument("--users", type=int, default=1500)
    route.add_argument("--prefill", type=int, default=0, help="messages in each user's history before timing")
    route.add_argument("--messages", type=int, default=20_000, help="per run")
    route.add_argument("--batch", type=int, default=500, help="messages per send_many")
    route.add_argument("--runs", type=int, default=7)
    deliver = commands.add_parser("delivery", help="replica CPU per delivered message")
    deliver.add_argument("--clients", type=int, default=200)
    deliver.add_argument("--rate", type=float, default=2000, help="messages emitted per second")
    deliver.add_argument("--seconds", type=float, default=5)
    deliver.add_argument("--runs", type=int, default=3)
    deliver.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS), choices=CONFIGS,
                         help="loop+packet JSON; +tasks: python-socketio's emit, a task per recipient")
    deliver.add_argument("--profile", metavar="PATH", help="py-spy summary of the last configuration's last run")
    args = parser.parse_args(argv)
    if args.command == "json":
        print("| step | json µs | orjson µs |\n|---|---|---|")
        for what, with_json, with_orjson in json_costs(calls=args.calls, runs=args.runs):
            print(f"| {what} | {with_json:.2f} | {with_orjson:.2f} |")
        return 0
    if args.command == "send":
        print("| packet | µs per recipient |\n|---|---|")
        for what, cost in send_check_costs(calls=args.calls, runs=args.runs):
            print(f"| {what} | {cost:.2f} |")
        return 0
    if args.command == "emit":
        print("| emit to a one-socket room | µs |\n|---|---|")
        for what, cost in emit_costs(calls=args.calls, runs=args.runs):
            print(f"| {what} | {cost:.2f} |")
        return 0
    if args.command == "redis":
        print("| read | hiredis µs per message | pure-Python parser µs |\n|---|---|---|")
        for what, with_hiredis, with_python in redis_costs(messages=args.messages, runs=args.runs):
            print(f"| {what} | {with_hiredis:.1f} | {with_python:.1f} |")
        return 0
    if args.command == "route":
        _print_route(args, route_costs(users=args.users, prefill=args.prefill, messages=args.messages,
                                       runs=args.runs, batch=args.batch))
        return 0
    results = asyncio.run(delivery(args))
    print(f"{args.clients} clients, {args.rate:g} msg/s for {args.seconds:g} s, median of {args.runs} runs")
    print("| loop + packet JSON | µs CPU per delivered message | runs |\n|---|---|---|")
    for config, samples in results.items():
        print(f"| {config} | {statistics.median(samples):.1f} | {', '.join(f'{s:.1f}' for s in samples)} |")
    return 0


def _print_route(args: argparse.Namespace, costs: dict[bool, RouteCosts]) -> None:
    durable, volatile = costs[False], costs[True]
    print(f"{args.users} users, {args.prefill} messages in each history first, {args.messages:,} messages per run "
          f"in batches of {args.batch}, medians of {args.runs} runs each")
    print("| send | Redis CPU µs/msg (/proc) | in the script µs/msg (commandstats) | emitter CPU µs/msg |\n"
          "|---|---|---|---|")
    figures = [(cost.redis_us, cost.script_us, cost.emitter_us) for cost in (durable, volatile)]
    for name, samples in zip(("durable", "volatile"), figures, strict=True):
        print(f"| {name} | " + " | ".join(f"{statistics.median(s):.1f}" for s in samples) + " |")
    print("| durable / volatile | " + " | ".join(
        f"{statistics.median(d) / statistics.median(v):.2f}×" for d, v in zip(*figures, strict=True)) + " |")
    for name, cost in (("durable", durable), ("volatile", volatile)):
        print(f"\nRedis CPU µs/msg of each {name} run: {', '.join(f'{us:.1f}' for us in cost.redis_us)}", end="")
    print()
    print("\n| command the script ran | durable: calls/msg | µs/msg | volatile: calls/msg | µs/msg |\n"
          "|---|---|---|---|---|")
    by_durable, by_volatile = durable.per_message(), volatile.per_message()
    for name in sorted(by_durable.keys() | by_volatile.keys(), key=lambda n: -by_durable.get(n, (0, 0))[1]):
        cells = [f"{calls:.2f} | {usec:.2f}" for calls, usec in (by_durable.get(name, (0, 0)),
                                                                 by_volatile.get(name, (0, 0)))]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
