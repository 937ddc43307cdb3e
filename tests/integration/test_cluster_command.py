"""``python -m cluster``, run as a person runs it: a child process, stopped by a signal."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
import tempfile
from pathlib import Path

import pytest

from cluster.processes import REPO_ROOT, port_open
from tests.helpers.clients import TEST_SECRET, MakeClient, make_token

CLUSTER_ENV = {"JWT_SECRET": TEST_SECRET, "AUTH_MODE": "jwt", "REDIS_URL": "", "LOG_LEVEL": "WARNING"}


async def start_cluster_command(*args: str, **env: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cluster", *args, cwd=REPO_ROOT, env={**os.environ, **CLUSTER_ENV, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def read_until(process: asyncio.subprocess.Process, last_line: str, timeout: float = 30) -> str:
    """What the command prints up to ``last_line``."""
    text = ""
    assert process.stdout is not None and process.stderr is not None
    async with asyncio.timeout(timeout):
        while last_line not in text:
            line = await process.stdout.readline()
            assert line, f"the cluster exited early:\n{text}{(await process.stderr.read()).decode()}"
            text += line.decode()
    return text


def find(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not found in:\n{text}"
    return match.group(1)


def cluster_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("kindmap-cluster-*"))


def stray_processes(known_dirs: set[Path]) -> list[str]:
    """Processes holding a file of a cluster directory other than ``known_dirs`` (their logs)."""
    prefix = str(Path(tempfile.gettempdir()) / "kindmap-cluster-")
    known = tuple(f"{d}/" for d in known_dirs)
    strays = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            paths = [os.readlink(fd) for fd in (proc / "fd").iterdir()]
        except OSError:  # gone meanwhile, or not ours to read
            continue
        strays += [f"{proc.name}: {path}" for path in paths if path.startswith(prefix) and not path.startswith(known)]
    return strays


def leftovers(ports: list[int], work_dir: Path) -> list[object]:
    """Ports still listening and the working directory, if it still exists."""
    return [port for port in ports if port_open(port)] + ([work_dir] if work_dir.exists() else [])


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
async def test_cluster_command_serves_through_nginx_until_a_signal_stops_everything(
        make_client: MakeClient, stop_signal: signal.Signals) -> None:
    process = await start_cluster_command("--replicas", "2", "--port", "0")
    banner = await read_until(process, "Ctrl-C stops everything.")

    nginx_url = find(r"(http://\S+)\s+Nginx", banner)
    replica_ports = [int(p) for p in re.findall(r"http://127\.0\.0\.1:(\d+)\s+replica-\d", banner)]
    redis_port = int(find(r"redis://127\.0\.0\.1:(\d+)/0\s+Redis \(started by the cluster\)", banner))
    work_dir = Path(find(r"logs in (\S+)", banner))
    assert len(replica_ports) == 2 and leftovers([], work_dir) == [work_dir]

    client = make_client()
    await client.connect(nginx_url, auth={"token": make_token("rider")})
    assert client.received("connected")[0]["instance_id"] in {"replica-1", "replica-2"}
    await client.disconnect()

    process.send_signal(stop_signal)
    assert await asyncio.wait_for(process.wait(), 30) == 0
    assert process.stdout is not None
    assert "KindMap cluster stopped." in (await process.stdout.read()).decode()
    nginx_port = int(nginx_url.rsplit(":", 1)[1])
    assert leftovers([nginx_port, *replica_ports, redis_port], work_dir) == []


async def test_cluster_command_that_cannot_start_a_replica_exits_1_and_leaves_nothing() -> None:
    before = cluster_dirs()
    process = await start_cluster_command("--replicas", "2", "--port", "0", JWT_SECRET="")

    _, stderr = await asyncio.wait_for(process.communicate(), 30)

    assert process.returncode == 1
    # Both replicas start at once and both fail; whichever is seen first is named.
    assert re.search(r"the cluster could not start: replica-[12] exited", stderr.decode())
    assert "JWT_SECRET" in stderr.decode()
    assert cluster_dirs() - before == set()
    assert stray_processes(before) == []


async def test_cluster_command_refuses_a_port_in_use_before_saying_it_is_up() -> None:
    before = cluster_dirs()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = await start_cluster_command("--replicas", "1", "--port", str(port))

        stdout, stderr = await asyncio.wait_for(process.communicate(), 30)

    assert process.returncode == 1
    assert f"nginx cannot listen on port {port}: it is already in use" in stderr.decode()
    assert "is up" not in stdout.decode()
    assert cluster_dirs() - before == set()
    assert stray_processes(before) == []


async def test_cluster_command_refuses_a_bad_replica_count() -> None:
    process = await start_cluster_command("--replicas", "0")

    _, stderr = await asyncio.wait_for(process.communicate(), 30)

    assert process.returncode == 2
    assert "--replicas must be between 1 and 16" in stderr.decode()
