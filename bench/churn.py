"""``python -m bench.churn``: one user's token losing its connection in a loop, and what Redis keeps of it.

    python -m bench.churn                          10 minutes of churn, then the recovery window and 60 s more
    python -m bench.churn --minutes 1 --window 20  a short look

Before issue 19, one token churning (connect, then the TCP connection dropped, from 8
addresses) left every one of its recoverable sessions in Redis for the whole window and
beyond, and a send to that user walked all of them. This starts Redis and two of our
replicas configured as in production (JWT mode, ``QUEUE_SIGNING_KEY``, the shipped handshake
limit, ``RECOVERY_WINDOW_SECONDS`` 120 unless ``--window``), connects a healthy user (another
token, one socket) that receives ``--rate`` targeted messages per second through the emitter
for the whole run, and then lets ``bench.churner`` churn one other token from ``--sources``
source addresses (127.0.0.2 …) against both replicas at the highest rate the per-address
handshake limit allows, for ``--minutes``. Then it stops churning and keeps watching through
the window and ``--after`` seconds more.

Every ``--sample`` seconds it records Redis's keys (``DBSIZE``) and ``used_memory``, the
churning user's sessions and presence hashes (``HLEN``), the sessions the churn opened and
what was refused (by code), the healthy user's latency (p50/p99 of what arrived in the
interval), the CPU of the replicas, of Redis and of the rest of the machine, and, once the
run is over, the healthy messages sent in the interval that never arrived. One sample is
taken before the churn starts: after the window, Redis should hold what it held then, give
or take the live sockets.

Not part of CI (``tests/bench/test_churn.py`` runs a tiny one). Writes ``churn.json``,
``churn.md`` and ``churn.png`` into ``--out`` (default ``bench/results/churn``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import matplotlib
from redis import asyncio as aioredis

matplotlib.use("Agg")  # files only, no display; chosen before pyplot is imported
import matplotlib.pyplot as plt

from kindmap_realtime.backends.redis.keys import presence_key, sessions_key
from kindmap_realtime.emitter import Emitter
from kindmap_realtime.errors import RealtimeError
from server.config import Settings

from .cluster import CHANNEL, SystemUnderTest
from .control import Worker, python_module, run_and_write
from .cpu import cpu_seconds, machine_busy_seconds, rss_bytes
from .loadgen import Client, Recorder
from .machine import describe
from .message import EVENT, payload
from .pacing import Schedule
from .stats import summarize_latency

__all__ = ["Arrivals", "handshake_rate", "parse_args", "write"]

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "churn"
JWT_SECRET = "churn-bench-jwt-secret-0123456789abcdef0123"
SIGNING_KEY = "churn-bench-queue-signing-key-0123456789abcdef"
CHURNING, HEALTHY = "churner", "healthy"
TOKEN_SPARE_S = 3600  # a token outlives the run by this much: expiry disconnects a socket
_MACHINE = "\0machine"  # cannot clash with a process name
DRAIN_S = 3.0  # after the last healthy message, for it to arrive
MB = 1024 * 1024


def handshake_rate() -> float:
    """``HANDSHAKE_RATE_PER_SECOND`` as shipped: the churn's pace per source address and replica."""
    default = next(f.default for f in dataclasses.fields(Settings) if f.name == "handshake_rate_per_second")
    if not isinstance(default, int | float):
        raise TypeError(f"HANDSHAKE_RATE_PER_SECOND has no numeric default: {default!r}")
    return float(default)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.churn", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the token churns (default 10)")
    parser.add_argument("--window", type=float, default=120.0,
                        help="RECOVERY_WINDOW_SECONDS of the replicas (default 120, as shipped)")
    parser.add_argument("--after", type=float, default=60.0,
                        help="seconds watched after the window (default 60: more than the clock skew a session's "
                             "deadline is allowed, QUEUE_REPLAY_WINDOW_SECONDS 30 s, and a heartbeat)")
    parser.add_argument("--sources", type=int, default=8, help="source addresses churning (default 8)")
    parser.add_argument("--replicas", type=int, default=2, help="replicas (default 2)")
    parser.add_argument("--rate", type=float, default=20.0, help="messages per second to the healthy user (default 20)")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples (default 10)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where results go")
    args = parser.parse_args(argv)
    if min(args.minutes, args.rate, args.sample) <= 0 or min(args.window, args.after) < 0:
        parser.error("--minutes, --rate and --sample must be positive, --window and --after not negative")
    if not 1 <= args.sources <= 250 or args.replicas < 1:
        parser.error("--sources must be 1-250 and --replicas positive")
    return args


def token(user: str, lifetime: float) -> str:
    return jwt.encode({"sub": user, "exp": int(time.time() + lifetime)}, JWT_SECRET, algorithm="HS256")


class Arrivals(Recorder):
    """What the healthy user received: each message of the stream is its own step (its number),
    so a message is counted once whenever it arrives; ``take()`` hands over the latencies of
    what arrived since the last call."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived: dict[int, float] = {}
        self.duplicates = 0
        self._recent: list[float] = []

    def record(self, user: str, step: int, sent_at: float, now: float) -> None:
        if step in self.arrived:
            self.duplicates += 1
            return
        self.arrived[step] = now - sent_at
        self._recent.append(now - sent_at)

    def take(self) -> list[float]:
        recent, self._recent = self._recent, []
        return recent


class Stream:
    """The healthy user's messages, open loop at ``rate`` for ``seconds``: when each was sent,
    and what the emitter answered for it (``sent``, ``stored`` or an error code)."""

    def __init__(self, emitter: Emitter, *, rate: float, seconds: float) -> None:
        self.emitter = emitter
        self.schedule = Schedule(rate, seconds, time.monotonic())
        self.sent_at: dict[int, float] = {}
        self.answers: dict[str, int] = {}

    async def run(self) -> None:
        while (due := self.schedule.take(time.monotonic())) is not None:
            seq = self.schedule.issued - 1
            if (delay := due - time.monotonic()) > 0:
                await asyncio.sleep(delay)
            data = payload(seq, seq)
            self.sent_at[seq] = data["t"]
            try:
                answer = await self.emitter.send_to_user(HEALTHY, EVENT, data)
            except RealtimeError as exc:
                answer = exc.code.value
            self.answers[answer] = self.answers.get(answer, 0) + 1


class Sampler:
    """Reads Redis and ``/proc`` once per sample; CPU shares are over the time since the last one."""

    def __init__(self, redis: aioredis.Redis, cluster: SystemUnderTest, churner_pid: int) -> None:
        self.redis = redis
        self.cluster = cluster
        self.pids = {**cluster.pids(), "churner": churner_pid, "orchestrator": os.getpid()}
        self._last = (time.monotonic(), self._cpu())

    def _cpu(self) -> dict[str, float]:
        return {**{name: cpu_seconds(pid) for name, pid in self.pids.items()}, _MACHINE: machine_busy_seconds()}

    async def sample(self) -> dict[str, Any]:
        memory = await self.redis.info("memory")
        pipe = self.redis.pipeline(transaction=False)
        pipe.dbsize()
        pipe.hlen(sessions_key(CHANNEL, CHURNING))
        pipe.hlen(presence_key(CHANNEL, CHURNING))
        dbsize, sessions, presence = await pipe.execute()
        now, cpu = time.monotonic(), self._cpu()
        (then, before), self._last = self._last, (now, cpu)
        used = {name: (cpu[name] - before[name]) / (now - then) * 100 for name in cpu}
        # the rest of the machine: other people's work on a shared box, in % of one core
        others = max(0.0, used.pop(_MACHINE) - sum(used.values()))
        return {"at": now, "keys": int(dbsize), "used_memory_mb": round(int(memory["used_memory"]) / MB, 2),
                # what the keys hold, and Redis's own overhead (clients' buffers, scripts, dictionaries)
                "dataset_mb": round(int(memory["used_memory_dataset"]) / MB, 3),
                "overhead_mb": round(int(memory["used_memory_overhead"]) / MB, 3),
                "sessions": int(sessions), "presence": int(presence),
                "replicas_cpu_pct": round(sum(v for k, v in used.items() if k.startswith("replica-")), 1),
                "redis_cpu_pct": round(used["redis"], 1), "churner_cpu_pct": round(used["churner"], 1),
                "others_cpu_pct": round(others, 1),
                "replicas_rss_mb": [round(rss_bytes(pid) / MB, 1) for pid in self.cluster.replica_set.pids]}


def _replica_env(window: float) -> dict[str, str]:
    """Production's settings where the churn touches them (an empty value: the server's default)."""
    return {"AUTH_MODE": "jwt", "JWT_SECRET": JWT_SECRET, "QUEUE_SIGNING_KEY": SIGNING_KEY,
            "ALLOW_UNSIGNED_QUEUE": "", "RECOVERY_WINDOW_SECONDS": f"{window:g}",
            "HANDSHAKE_RATE_PER_SECOND": "", "HANDSHAKE_BURST": "", "MAX_CONNECTIONS": ""}


async def churn(args: argparse.Namespace) -> dict[str, Any]:
    """Run it; returns the document that ``write`` turns into files."""
    log_dir = args.out / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    churn_s, tail_s = args.minutes * 60, args.window + args.after
    total_s = args.sample + churn_s + tail_s  # a sample's time before the churn, for the "before" figures
    rate = handshake_rate()
    ticks = sorted({*(k * args.sample for k in range(1, math.ceil((churn_s + tail_s) / args.sample) + 1)
                      if k * args.sample < churn_s + tail_s), churn_s, churn_s + tail_s})
    sources = [f"127.0.0.{n + 2}" for n in range(args.sources)]
    doc: dict[str, Any] = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "started": datetime.now(UTC).isoformat(timespec="seconds"), "machine": describe(),
        "handshake_rate_per_source_and_replica": rate, "sources": sources, "samples": []}
    async with SystemUnderTest("ours", args.replicas, log_dir, env=_replica_env(args.window)) as cluster:
        redis = aioredis.Redis.from_url(cluster.redis.url)
        churner = Worker("churner", python_module("bench.churner"), log_dir / "churner.log")
        http = aiohttp.ClientSession()
        arrivals = Arrivals()
        healthy: Client | None = None
        try:
            await churner.start()
            healthy = await Client.connect(http, cluster.urls[0], HEALTHY, compress=False, recorder=arrivals,
                                           auth={"token": token(HEALTHY, total_s + TOKEN_SPARE_S)})
            async with Emitter(cluster.redis.url, channel=CHANNEL, signing_key=SIGNING_KEY) as emitter:
                stream = Stream(emitter, rate=args.rate, seconds=total_s)
                sending = asyncio.create_task(stream.run(), name="healthy-stream")
                sampler = Sampler(redis, cluster, churner.pid)
                await asyncio.sleep(args.sample)  # pacing: the "before" sample comes one interval in
                doc["samples"].append({"t": 0.0, "phase": "before", **await sampler.sample(),
                                       **_healthy(arrivals.take()), "churn": {}})
                print(_line(doc["samples"][-1]), flush=True)
                await churner.call("start", urls=cluster.urls, sources=sources, token=token(CHURNING, total_s
                                                                                             + TOKEN_SPARE_S),
                                   rate=rate, seconds=churn_s, timeout=30)
                began = time.monotonic()
                for tick in ticks:
                    await asyncio.sleep(max(0.0, began + tick - time.monotonic()))  # pacing, as above
                    if tick == churn_s:
                        doc["churn"] = await churner.call("stop", timeout=30)
                    churned = doc.get("churn") or await churner.call("report", timeout=10)
                    doc["samples"].append({"t": round(time.monotonic() - began, 1),
                                           "phase": "churn" if tick <= churn_s else "after",
                                           **await sampler.sample(), **_healthy(arrivals.take()),
                                           "churn": churned["counts"]})
                    print(_line(doc["samples"][-1]), flush=True)
                await sending
                await asyncio.sleep(DRAIN_S)  # pacing: the last healthy messages' way through
            _count_losses(doc, stream, arrivals)
        finally:
            if healthy is not None:
                await healthy.close()
            await http.close()
            await redis.aclose()
            await churner.stop()
    doc["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    return doc


def _healthy(latencies: list[float]) -> dict[str, Any]:
    latency = summarize_latency(latencies)
    return {"received": latency.count, "p50_ms": latency.p50_ms, "p99_ms": latency.p99_ms, "max_ms": latency.max_ms}


def _count_losses(doc: dict[str, Any], stream: Stream, arrivals: Arrivals) -> None:
    """Each sample's ``sent`` and ``lost``: the healthy messages sent since the sample before, and
    those of them that never arrived (by the end of the run)."""
    bounds = [s["at"] for s in doc["samples"]]
    for sample, start, end in zip(doc["samples"], [-math.inf, *bounds], bounds, strict=False):
        sent = [seq for seq, at in stream.sent_at.items() if start < at <= end]
        sample["sent"], sample["lost"] = len(sent), sum(1 for seq in sent if seq not in arrivals.arrived)
    doc["healthy"] = {"sent": len(stream.sent_at), "received": len(arrivals.arrived),
                      "lost": sum(1 for seq in stream.sent_at if seq not in arrivals.arrived),
                      "duplicates": arrivals.duplicates, "answers": stream.answers,
                      **_healthy(list(arrivals.arrived.values()))}


def _refused(counts: dict[str, int], code: str) -> int:
    return sum(n for what, n in counts.items() if what.endswith(f" {code}"))


def _other(counts: dict[str, int]) -> int:
    """Cycles that neither connected nor were refused with a rate limit or the socket cap."""
    known = ("connected", " RATE_LIMITED", " TOO_MANY_CONNECTIONS")
    return sum(n for what, n in counts.items() if not any(what == k or what.endswith(k) for k in known))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _line(s: dict[str, Any]) -> str:
    c = s["churn"]
    return (f"{s['phase']:6s} t={s['t']:6.1f}s keys {s['keys']:5d} used_memory {s['used_memory_mb']:7.2f} MB "
            f"sessions {s['sessions']:3d} presence {s['presence']:2d} opened {c.get('connected', 0):6d} "
            f"429 {_refused(c, 'RATE_LIMITED')} cap {_refused(c, 'TOO_MANY_CONNECTIONS')} "
            f"healthy p50 {_ms(s['p50_ms'])} p99 {_ms(s['p99_ms'])} ms; "
            f"CPU replicas {s['replicas_cpu_pct']:.0f}% redis {s['redis_cpu_pct']:.0f}%")


HEADER = ["t s", "phase", "Redis keys", "used_memory MB", "dataset MB", "sessions (HLEN)", "presence (HLEN)",
          "churn sessions opened", "429 RATE_LIMITED", "TOO_MANY_CONNECTIONS", "other failures", "healthy sent", "lost",
          "p50 ms", "p99 ms", "replicas CPU %", "Redis CPU %", "others CPU %"]


def rows(doc: dict[str, Any]) -> list[list[str]]:
    """The table's cells, one row per sample."""
    out = []
    for s in doc["samples"]:
        c = s["churn"]
        out.append([f"{s['t']:.0f}", s["phase"], str(s["keys"]), f"{s['used_memory_mb']:.2f}",
                    f"{s['dataset_mb']:.3f}", str(s["sessions"]),
                    str(s["presence"]), str(c.get("connected", 0)), str(_refused(c, "RATE_LIMITED")),
                    str(_refused(c, "TOO_MANY_CONNECTIONS")), str(_other(c)), str(s.get("sent", "-")),
                    str(s.get("lost", "-")), _ms(s["p50_ms"]), _ms(s["p99_ms"]), f"{s['replicas_cpu_pct']:.0f}",
                    f"{s['redis_cpu_pct']:.0f}", _pct(s.get("others_cpu_pct"))])
    return out


def summary(doc: dict[str, Any]) -> dict[str, Any]:
    """Before vs the end, the peaks, and the churn's totals."""
    samples = doc["samples"]
    before, last = samples[0], samples[-1]
    churning = [s for s in samples if s["phase"] == "churn"]
    counts = doc.get("churn", {}).get("counts", {})
    seconds = doc.get("churn", {}).get("seconds") or 0.0
    return {"keys_before": before["keys"], "keys_after": last["keys"],
            "used_memory_mb_before": before["used_memory_mb"], "used_memory_mb_after": last["used_memory_mb"],
            "dataset_mb_before": before["dataset_mb"], "dataset_mb_after": last["dataset_mb"],
            "sessions_after": last["sessions"], "presence_after": last["presence"],
            "peak_keys": max(s["keys"] for s in samples),
            "peak_used_memory_mb": max(s["used_memory_mb"] for s in samples),
            "peak_sessions": max((s["sessions"] for s in churning), default=0),
            "opened": counts.get("connected", 0), "churn_seconds": round(seconds, 1),
            "sessions_per_s": round(counts.get("connected", 0) / seconds, 1) if seconds else 0.0,
            "refused": {code: _refused(counts, code) for code in ("RATE_LIMITED", "TOO_MANY_CONNECTIONS")},
            "other": {what: n for what, n in counts.items() if _other({what: n})}}


def markdown(doc: dict[str, Any]) -> str:
    top = summary(doc)
    healthy = doc.get("healthy", {})
    machine = doc["machine"]
    lines = [
        "# Churn run", "",
        f"Started {doc['started']}, finished {doc.get('finished', '-')}. Machine: {machine['cpu']}, "
        f"{machine['cores']} cores, Linux {machine['kernel']}, Python {machine['python']}, Redis {machine['redis']}.",
        f"Arguments: `{json.dumps(doc['args'])}`; churn from {len(doc['sources'])} source addresses at "
        f"{doc['handshake_rate_per_source_and_replica']:g} handshakes/s per address and replica.", "",
        f"- churn: {top['opened']:,} sessions opened in {top['churn_seconds']} s ({top['sessions_per_s']}/s); "
        f"refused: {top['refused']['RATE_LIMITED']:,} RATE_LIMITED (HTTP 429), "
        f"{top['refused']['TOO_MANY_CONNECTIONS']:,} TOO_MANY_CONNECTIONS; other: "
        + (", ".join(f"{k} {v}" for k, v in sorted(top["other"].items())) or "none"),
        f"- the churning user's sessions: at most {top['peak_sessions']} during the churn, {top['sessions_after']} at "
        f"the end (presence {top['presence_after']})",
        f"- Redis keys: {top['keys_before']} before, {top['peak_keys']} at most, {top['keys_after']} at the end; "
        f"used_memory: {top['used_memory_mb_before']:.2f} MB before, {top['peak_used_memory_mb']:.2f} MB at most, "
        f"{top['used_memory_mb_after']:.2f} MB at the end (of which the keys' data, used_memory_dataset: "
        f"{top['dataset_mb_before']:.3f} MB before, {top['dataset_mb_after']:.3f} MB at the end)",
        f"- healthy user: {healthy.get('sent', 0):,} messages sent, {healthy.get('received', 0):,} received, "
        f"{healthy.get('lost', 0)} lost, {healthy.get('duplicates', 0)} duplicates; "
        f"p50 {_ms(healthy.get('p50_ms'))} ms, "
        f"p99 {_ms(healthy.get('p99_ms'))} ms, max {_ms(healthy.get('max_ms'))} ms over the run; "
        f"emitter answers {json.dumps(healthy.get('answers', {}))}", "",
        "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER),
        *["| " + " | ".join(row) + " |" for row in rows(doc)], ""]
    return "\n".join(lines)


def plot(doc: dict[str, Any], path: Path) -> None:
    samples = doc["samples"]
    minutes = [s["t"] / 60 for s in samples]
    churn_end = float(doc["args"]["minutes"])
    window_end = churn_end + float(doc["args"]["window"]) / 60
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    keys, memory, latency = axes
    keys.plot(minutes, [s["keys"] for s in samples], marker=".", label="Redis keys (DBSIZE)")
    keys.plot(minutes, [s["sessions"] for s in samples], marker=".", label="churning user's sessions (HLEN)")
    keys.axhline(samples[0]["keys"], color="#999999", linestyle="--", label="keys before the churn")
    keys.set(title="Keys", xlabel="minutes since the churn began", ylabel="count")
    memory.plot(minutes, [s["used_memory_mb"] for s in samples], marker=".", color="#7b3294", label="used_memory")
    memory.plot(minutes, [s["dataset_mb"] for s in samples], marker=".", color="#2a7ab0",
                label="used_memory_dataset (the keys)")
    memory.axhline(samples[0]["used_memory_mb"], color="#999999", linestyle="--", label="before the churn")
    memory.set(title="Redis used_memory", xlabel="minutes since the churn began", ylabel="MB")
    memory.set_ylim(bottom=0)
    latency.plot(minutes, [s["p50_ms"] for s in samples], marker=".", label="p50")
    latency.plot(minutes, [s["p99_ms"] for s in samples], marker=".", label="p99")
    latency.set(title=f"Healthy user's latency ({float(doc['args']['rate']):g} msg/s)",
                xlabel="minutes since the churn began", ylabel="ms")
    latency.set_ylim(bottom=0)
    for ax in axes:
        ax.axvline(churn_end, color="#d08a1f", linestyle=":", label="churn stops")
        ax.axvline(window_end, color="#3c9a48", linestyle=":", label="+ recovery window")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(doc: dict[str, Any], out: Path) -> list[Path]:
    """``churn.json``, ``churn.md`` (summary and a row per sample) and ``churn.png``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "churn.json", out / "churn.md", out / "churn.png"]
    paths[0].write_text(json.dumps(doc, indent=1))
    paths[1].write_text(markdown(doc))
    plot(doc, paths[2])
    return paths


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    return run_and_write(lambda: churn(args), lambda doc: write(doc, args.out))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
