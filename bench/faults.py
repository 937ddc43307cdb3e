"""``python -m bench.faults``: message loss when replicas die, restart, or riders lose signal.

    python -m bench.faults kill        300 riders over 3 replicas, 400 msg/s for 40 s, a replica SIGKILLed mid-run
    python -m bench.faults rolling     the same load; every replica in turn SIGTERMed, restarted, back in Nginx, next
    python -m bench.faults tunnel      half the riders offline 5-60 s at random, a replica SIGKILLed mid-run
    python -m bench.faults reshard     on a Redis Cluster (3 masters, each with a replica): a third of the slots
                                       moved by ``redis-cli --cluster reshard`` a third into the run
    python -m bench.faults failover    on the same cluster: CLUSTER FAILOVER on a replica a third into the run,
                                       a master SIGKILLed (its replica promoted) two thirds into it
    python -m bench.faults kill --users 12 --replicas 2 --duration 5 --rate 40      a short look

A local cluster (Redis, the replicas, Nginx: ``cluster.LocalCluster``; for ``reshard`` and
``failover`` a Redis Cluster, ``cluster.processes.RedisClusterServers``) serves riders that
are real socket.io-client 4.8 sockets (``bench/node/riders.mjs``), which reconnect and
recover their sessions on their own. Rider i connects from 127.0.(1 + i % networks).1, so
that Nginx's ip_hash spreads the riders over the replicas. The emitter (``kindmap_realtime.emitter``)
sends ``{"id": n}`` round-robin over the users at an open-loop rate, each user's messages one
after the other, and records what each send was told: ``sent``, ``stored`` or refused. After
the run it waits until every accepted message arrived, or a deadline, and counts what was
lost, duplicated or out of order, and what came without an offset (``bench.loss``).

Writes ``<scenario>.json`` and ``<scenario>.md`` into ``--out`` (default
``bench/results/faults``), and the cluster's logs into ``<out>/logs/<scenario>/``.
Exits 1 if an accepted message was lost, duplicated or out of order, or one arrived unexpected.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import random
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

from cluster import LocalCluster
from cluster.processes import RedisClusterServers
from kindmap_realtime.emitter import Emitter
from kindmap_realtime.errors import RealtimeError, UserNotConnectedError

from .control import Worker, run_orchestrator
from .loss import ACCEPTED, Counts, account
from .pacing import Schedule
from .systems import NODE_DIR

__all__ = ["SCENARIOS", "main", "parse_args", "run", "write"]

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "faults"
CHANNEL = "kindmap_faults"
EVENT = "fault"
SENDERS = 32  # sends in flight at once, at most
CONNECT_TIMEOUT_S = 60.0
DRAIN_S = 30.0  # after the run (and the last rider's return from a tunnel): longest wait for stragglers
SETTLE_S = 1.0  # once everything arrived: a late duplicate still gets counted
POLL_S = 0.5
ROLLING_PAUSE_S = 2.0  # between one replica back and the next one's SIGTERM
NGINX_GATE_S = 60.0  # longest wait for Nginx to route to a restarted replica again

# Set here, so neither the caller's environment nor a .env file changes what is measured.
# Dev mode (auth: {user_id}) refuses a JWT_SECRET, so one in the caller's environment is unset;
# the riders open hundreds of sessions at once: the per-address handshake limit is lifted.
REPLICA_ENV = {"SOCKETIO_CHANNEL": CHANNEL, "AUTH_MODE": "dev", "JWT_SECRET": "", "QUEUE_SIGNING_KEY": "",
               "LOG_LEVEL": "INFO", "HANDSHAKE_RATE_PER_SECOND": "10000", "HANDSHAKE_BURST": "100000"}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=list(SCENARIOS), help="the fault to inject")
    parser.add_argument("--users", type=int, default=300, help="riders, one socket each (default 300)")
    parser.add_argument("--replicas", type=int, default=3, help="replicas behind Nginx (default 3)")
    parser.add_argument("--rate", type=float, default=400.0, help="targeted messages per second (default 400)")
    parser.add_argument("--duration", type=float, default=40.0, help="seconds of sending (default 40)")
    parser.add_argument("--networks", type=int, default=32,
                        help="source networks 127.0.N.1 the riders connect from (default 32)")
    parser.add_argument("--offline-share", type=float, default=0.5,
                        help="tunnel: share of riders that lose signal once (default 0.5)")
    parser.add_argument("--offline", type=float, nargs=2, default=[5.0, 60.0], metavar=("MIN", "MAX"),
                        help="tunnel: seconds offline, drawn uniformly (default 5 60)")
    parser.add_argument("--gate", choices=["nginx", "replica"], default="nginx",
                        help="rolling: before the next replica, wait until Nginx routes to the restarted one "
                             "again (default), or only until it answers /readyz")
    parser.add_argument("--seed", type=int, default=1, help="seeds the tunnel plan (default 1)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where results go")
    args = parser.parse_args(argv)
    if min(args.users, args.replicas, args.networks) < 1 or args.rate <= 0 or args.duration <= 0:
        parser.error("--users, --replicas, --networks, --rate and --duration must be positive")
    if not 0 <= args.offline_share <= 1 or not 0 < args.offline[0] <= args.offline[1]:
        parser.error("--offline-share must be within 0..1 and --offline MIN MAX positive, MIN <= MAX")
    if args.networks > 254:
        parser.error("--networks must be at most 254 (127.0.1.1 .. 127.0.254.1)")
    return args


class Timeline:
    """What the faults did and when, in seconds since the run began."""

    def __init__(self) -> None:
        self.began = time.monotonic()
        self.entries: list[dict[str, Any]] = []

    def note(self, what: str) -> None:
        self.entries.append({"at_s": round(time.monotonic() - self.began, 2), "what": what})
        print(f"  {self.entries[-1]['at_s']:6.1f} s  {what}", flush=True)

    async def until(self, at_s: float) -> None:
        """Pause until ``at_s`` into the run (a fault's moment, not a synchronisation)."""
        await asyncio.sleep(max(0.0, self.began + at_s - time.monotonic()))


class Sender:
    """Sends ``{"id": n}`` to user ``n % len(users)`` at ``rate`` msg/s for ``duration`` s and
    records each send's status. A user's messages go one after the other, in id order: the
    next one waits for the previous one's answer."""

    def __init__(self, emitter: Emitter, users: list[str]) -> None:
        self._emitter = emitter
        self.users = users
        self.statuses: dict[int, str] = {}
        self._tails: dict[str, asyncio.Event] = {}

    def recipient(self, n: int) -> str:
        return self.users[n % len(self.users)]

    async def run(self, *, rate: float, duration: float) -> None:
        schedule = Schedule(rate, duration, time.monotonic())
        await asyncio.gather(*(self._send(schedule) for _ in range(SENDERS)))

    async def _send(self, schedule: Schedule) -> None:
        while (due := schedule.take(time.monotonic())) is not None:
            n = schedule.issued - 1
            user = self.recipient(n)
            previous, done = self._tails.get(user), asyncio.Event()
            self._tails[user] = done
            try:
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                if previous is not None:
                    await previous.wait()
                self.statuses[n] = await self._status(user, n)
            finally:
                done.set()

    async def _status(self, user: str, n: int) -> str:
        try:
            return await self._emitter.send_to_user(user, EVENT, {"id": n})
        except UserNotConnectedError:
            return "refused"
        except RealtimeError as exc:
            return type(exc).__name__


# --- the faults ------------------------------------------------------------------

@dataclass
class Stage:
    """What a fault works on: the cluster, the riders and where each was welcomed first."""

    cluster: LocalCluster
    riders: Worker
    args: argparse.Namespace
    welcomed_by: dict[str, str]  # user -> instance id
    timeline: Timeline
    redis_cluster: RedisClusterServers | None = None  # for the scenarios that change its topology

    @property
    def servers(self) -> RedisClusterServers:
        if self.redis_cluster is None:
            raise RuntimeError(f"{self.args.scenario} runs on a Redis Cluster")
        return self.redis_cluster

    @property
    def per_replica(self) -> dict[str, int]:
        return dict(Counter(self.welcomed_by.values()))

    def source_address(self, instance_id: str) -> str | None:
        """An address whose riders Nginx sent to ``instance_id`` at the start."""
        for i, user in enumerate(rider_names(self.args.users)):
            if self.welcomed_by.get(user) == instance_id:
                return source_address(i, self.args.networks)
        return None


Fault = Callable[[Stage], Coroutine[Any, Any, float]]


async def kill_mid_run(stage: Stage) -> float:
    """SIGKILL the replica holding the most riders, half-way through; it stays down.
    Returns when, into the run, the last rider may come back on its own (here: the run's end)."""
    await stage.timeline.until(stage.args.duration / 2)
    per_replica = stage.per_replica
    victim = max(stage.cluster.replicas, key=lambda replica: per_replica.get(replica.instance_id, 0))
    await asyncio.to_thread(victim.kill)
    stage.timeline.note(f"SIGKILL {victim.instance_id} ({per_replica.get(victim.instance_id, 0)} riders)")
    return float(stage.args.duration)


async def rolling_restart(stage: Stage) -> float:
    """From a tenth into the run: each replica in turn SIGTERMed (it drains), started again on
    its port, ready on ``/readyz`` and, with ``--gate nginx``, routed to by Nginx again; a short
    pause, then the next. Returns when, into the run, the last replica was back."""
    await stage.timeline.until(stage.args.duration / 10)
    for replica in stage.cluster.replicas:
        stage.timeline.note(f"SIGTERM {replica.instance_id}")
        code = await asyncio.to_thread(replica.terminate)
        stage.timeline.note(f"{replica.instance_id} exited with code {code}; starting it again")
        await asyncio.to_thread(replica.start)
        stage.timeline.note(f"{replica.instance_id} ready")
        address = stage.source_address(replica.instance_id)
        if stage.args.gate == "nginx" and address is not None:
            await routed_again(stage.cluster.url, address, replica.instance_id)
            stage.timeline.note(f"Nginx routes {address} to {replica.instance_id} again")
        await asyncio.sleep(ROLLING_PAUSE_S)
    return time.monotonic() - stage.timeline.began


async def routed_again(nginx_url: str, address: str, instance_id: str) -> None:
    """Until Nginx passes a request from ``address`` to ``instance_id`` (``/healthz`` names the replica).

    A peer that failed ``max_fails`` times is left out for ``fail_timeout``, then let in again
    only once a request it was given *completes*: a WebSocket completes when it closes, so a
    short request must be the one that reopens it (see bench/FAULTS.md).
    """
    deadline = time.monotonic() + NGINX_GATE_S
    connector = aiohttp.TCPConnector(local_addr=(address, 0), force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{nginx_url}/healthz") as response:
                    if response.status == 200 and (await response.json()).get("instance_id") == instance_id:
                        return
            await asyncio.sleep(POLL_S)
    raise TimeoutError(f"Nginx did not route {address} to {instance_id} within {NGINX_GATE_S} s")


async def tunnel(stage: Stage) -> float:
    """A share of the riders each lose signal once, at a random moment of the run, for a random
    time (their transport cut, their reconnection held back); half-way, a replica is SIGKILLed."""
    args = stage.args
    plan = tunnel_plan(rider_names(args.users), share=args.offline_share, duration=args.duration,
                       offline=(args.offline[0], args.offline[1]), seed=args.seed)
    await stage.riders.call("tunnel", plan=plan, timeout=10)
    stage.timeline.note(f"{len(plan)} riders will go offline for {args.offline[0]:g}-{args.offline[1]:g} s")
    await kill_mid_run(stage)
    back = max((p["at_ms"] + p["offline_ms"] for p in plan), default=0) / 1000
    return max(float(args.duration), back)


SLOTS = 16_384


async def reshard_mid_run(stage: Stage) -> float:
    """A third into the run, a third of all slots moved while messages flow: a sixth of them from
    the first master to the second, a sixth from the third to the first (every master keeps some)."""
    await stage.timeline.until(stage.args.duration / 3)
    servers = stage.servers
    first, second, third = servers.masters()
    stage.timeline.note(f"resharding {SLOTS // 6 * 2} slots")
    await asyncio.to_thread(servers.reshard, first, second, SLOTS // 6)
    await asyncio.to_thread(servers.reshard, third, first, SLOTS // 6)
    stage.timeline.note("resharded")
    return float(stage.args.duration)


async def failover_mid_run(stage: Stage) -> float:
    """A third into the run, ``CLUSTER FAILOVER`` on a replica; two thirds into it, another master
    SIGKILLed until its replica is promoted, then started again (it rejoins as a replica)."""
    servers = stage.servers
    await stage.timeline.until(stage.args.duration / 3)
    replica = servers.replica_of(servers.masters()[0])
    stage.timeline.note(f"CLUSTER FAILOVER on {replica.port}")
    await asyncio.to_thread(servers.failover, replica)
    stage.timeline.note(f"{replica.port} is master")
    await stage.timeline.until(stage.args.duration * 2 / 3)
    victim = next(node for node in servers.masters() if node is not servers.nodes[0])
    stage.timeline.note(f"SIGKILL master {victim.port}")
    promoted = await asyncio.to_thread(servers.kill_master, victim)
    stage.timeline.note(f"{promoted.port} promoted; starting {victim.port} again")
    await asyncio.to_thread(victim.start)
    await asyncio.to_thread(servers.wait_healthy)
    stage.timeline.note(f"{victim.port} back as a replica")
    return float(stage.args.duration)


def rider_names(count: int) -> list[str]:
    return [f"rider-{i:04d}" for i in range(count)]


def source_address(index: int, networks: int) -> str:
    """Where rider ``index`` connects from (as ``bench/node/riders.mjs`` binds it)."""
    return f"127.0.{1 + index % networks}.1"


def tunnel_plan(users: list[str], *, share: float, duration: float, offline: tuple[float, float],
                seed: int) -> list[dict[str, Any]]:
    """Who loses signal, when (ms from now, within the run) and for how long (ms)."""
    rng = random.Random(seed)
    chosen = rng.sample(users, round(len(users) * share))
    return [{"user": user, "at_ms": round(rng.uniform(0, duration) * 1000),
             "offline_ms": round(rng.uniform(*offline) * 1000)} for user in sorted(chosen)]


SCENARIOS: dict[str, Fault] = {"kill": kill_mid_run, "rolling": rolling_restart, "tunnel": tunnel,
                               "reshard": reshard_mid_run, "failover": failover_mid_run}
ON_A_CLUSTER = frozenset({"reshard", "failover"})


# --- the run ----------------------------------------------------------------------

async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run one scenario; returns the document that ``write`` turns into files."""
    log_dir = args.out / "logs" / args.scenario
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir(parents=True)
    users = rider_names(args.users)
    riders = Worker("riders", ("node", str(NODE_DIR / "riders.mjs")), log_dir / "riders.log")
    with contextlib.ExitStack() as started:
        redis_cluster = None
        if args.scenario in ON_A_CLUSTER:
            redis_cluster = RedisClusterServers(work_dir=log_dir / "redis-cluster", replicas=1)
            started.callback(redis_cluster.stop)
            redis_cluster.start()
        cluster = started.enter_context(LocalCluster(replicas=args.replicas, env=REPLICA_ENV,
                                                     redis_url=redis_cluster.url if redis_cluster else None))
        try:
            await riders.start()
            connected = await riders.call("start", url=cluster.url, users=users, networks=args.networks,
                                          timeout_ms=CONNECT_TIMEOUT_S * 1000, timeout=CONNECT_TIMEOUT_S + 10)
            timeline = Timeline()
            stage = Stage(cluster, riders, args, connected["welcomed_by"], timeline, redis_cluster)
            print(f"{args.scenario}: {len(users)} riders connected: {stage.per_replica}", flush=True)
            async with Emitter(cluster.redis_url, channel=CHANNEL) as emitter:
                sender = Sender(emitter, users)
                fault = asyncio.create_task(SCENARIOS[args.scenario](stage))
                try:
                    await sender.run(rate=args.rate, duration=args.duration)
                    timeline.note(f"emitter done: {len(sender.statuses)} messages")
                    back_s = await fault
                finally:
                    fault.cancel()
                    await asyncio.gather(fault, return_exceptions=True)
            accepted = sum(1 for status in sender.statuses.values() if status in ACCEPTED)
            await _drain(riders, expected=accepted, users=len(users), until_s=back_s + DRAIN_S, timeline=timeline)
            collected = (await riders.call("collect", timeout=60))["users"]
            await riders.call("close", timeout=10)
            # The raw witnesses, for looking a lost or duplicated id up.
            (log_dir / "riders.json").write_text(json.dumps(collected))
            (log_dir / "statuses.json").write_text(json.dumps(sender.statuses))
        finally:
            await riders.stop()
            _keep_logs(cluster, log_dir)
    recipients = {n: sender.recipient(n) for n in sender.statuses}
    counts = account(sender.statuses, recipients, {u: r["ids"] for u, r in collected.items()},
                     {u: r["connects"] for u, r in collected.items()},
                     without_offset=sum(len(r["without_offset"]) for r in collected.values()))
    return {"scenario": args.scenario, "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "command": command(args),
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "achieved_rate": round(len(sender.statuses) / args.duration, 1), "per_replica": stage.per_replica,
            "timeline": timeline.entries, "counts": asdict(counts),
            "reconnected_to": _reconnected_to(collected)}


def command(args: argparse.Namespace) -> str:
    """The command that repeats this run, every option spelled out."""
    options = [args.scenario, "--users", args.users, "--replicas", args.replicas, "--rate", f"{args.rate:g}",
               "--duration", f"{args.duration:g}", "--networks", args.networks, "--seed", args.seed]
    if args.scenario == "rolling":
        options += ["--gate", args.gate]
    if args.scenario == "tunnel":
        options += ["--offline-share", f"{args.offline_share:g}", "--offline", *(f"{s:g}" for s in args.offline)]
    return "python -m bench.faults " + " ".join(map(str, options))


async def _drain(riders: Worker, *, expected: int, users: int, until_s: float, timeline: Timeline) -> None:
    """Until every accepted message arrived, every rider is back and no cut is pending; at most
    until ``until_s`` into the run."""
    progress = await riders.call("progress", timeout=10)
    while time.monotonic() < timeline.began + until_s:
        if progress["received"] >= expected and progress["connected"] == users and not progress["pending_cuts"]:
            await asyncio.sleep(SETTLE_S)
            timeline.note("every accepted message arrived, every rider connected")
            return
        await asyncio.sleep(POLL_S)
        progress = await riders.call("progress", timeout=10)
    timeline.note(f"drain deadline: {progress['received']} of {expected} arrived, {progress['connected']} of "
                  f"{users} riders connected")


def _reconnected_to(collected: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Per replica that welcomed a reconnect: how many were recovered and how many not."""
    tally: dict[str, dict[str, int]] = {}
    for rider in collected.values():
        for connect in rider["connects"][1:]:
            where = tally.setdefault(str(connect.get("instance_id")), {"recovered": 0, "not_recovered": 0})
            where["recovered" if connect.get("recovered") is True else "not_recovered"] += 1
    return tally


def _keep_logs(cluster: LocalCluster, log_dir: Path) -> None:
    """The replicas', Redis's and Nginx's logs, before the cluster removes its directory."""
    for path in cluster.work_dir.rglob("*"):
        if path.is_file() and path.suffix in (".log", ".out") and "temp" not in path.parts:
            target = log_dir / path.relative_to(cluster.work_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


# --- the report ----------------------------------------------------------------------

_ROWS = [("attempted", "messages the emitter tried"), ("sent", "status sent"), ("stored", "status stored"),
         ("refused", "refused: user not connected"), ("failed", "failed otherwise"),
         ("received", "received by riders, copies included"), ("delivered", "accepted and received"),
         ("lost", "**lost** (accepted, never received)"), ("duplicates", "duplicates"),
         ("out_of_order", "out of order"), ("without_offset", "received without an offset"),
         ("unexpected", "received but not accepted for that rider"),
         ("reconnects", "reconnects"), ("recovered", "reconnects with `socket.recovered` true"),
         ("not_recovered", "reconnects with `socket.recovered` false")]


def markdown(doc: dict[str, Any]) -> str:
    counts = doc["counts"]
    args = doc["args"]
    lines = [f"## `{doc['scenario']}`: {args['users']} riders, {args['replicas']} replicas, "
             f"{args['rate']:g} msg/s for {args['duration']:g} s", "",
             f"{doc['date']}; `{doc['command']}`; emitter achieved {doc['achieved_rate']:g} msg/s.", "",
             "Riders per replica at the start: " + ", ".join(f"{k} {v}" for k, v in sorted(doc["per_replica"].items())),
             "", "| | count |", "|---|---:|", *[f"| {label} | {counts[key]} |" for key, label in _ROWS], ""]
    if counts["lost_ids"]:
        lines += [f"Lost ids (first {len(counts['lost_ids'])}): {counts['lost_ids']}", ""]
    lines += ["Reconnects welcomed by: " + (", ".join(
        f"{where} {t['recovered']} recovered / {t['not_recovered']} not" for where, t in
        sorted(doc["reconnected_to"].items())) or "none"), "", "Timeline:", "",
        *[f"- {e['at_s']:.1f} s: {e['what']}" for e in doc["timeline"]], ""]
    return "\n".join(lines)


def write(doc: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{doc['scenario']}.json", out / f"{doc['scenario']}.md"]
    paths[0].write_text(json.dumps(doc, indent=1))
    paths[1].write_text(markdown(doc))
    return paths


def clean(counts: Counts) -> bool:
    return counts.lost == counts.duplicates == counts.out_of_order == counts.unexpected == 0 and counts.adds_up()


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if shutil.which("node") is None or not (NODE_DIR / "node_modules" / "socket.io-client").is_dir():
        print(f"needs node and socket.io-client: npm ci in {NODE_DIR}", file=sys.stderr)
        return 2
    doc = run_orchestrator(lambda: run(args))
    if doc is None:
        return 130
    for path in write(doc, args.out):
        print(f"written: {path}")
    print(markdown(doc))
    return 0 if clean(Counts(**doc["counts"])) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
