"""Child processes of a local cluster: redis-server, replicas and Nginx on loopback ports.

The integration tests use the same classes. Every start waits on a probe with a
deadline (never a fixed sleep), and every class can stop what it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

__all__ = ["HOST", "REPO_ROOT", "ChildProcess", "Lifecycle", "NginxServer", "RedisClusterServers", "RedisServer",
           "Replica", "free_port", "http_status", "nginx_binary", "port_open", "wait_until", "wait_until_async"]

REPO_ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


# Ports free_port has handed out in this process: a port is free again as soon as it is
# handed out, so the kernel may offer it twice before the first taker listens (a cluster
# node's port and another node's bus port, chosen before any node starts).
_handed_out: set[int] = set()


def free_port(host: str = HOST) -> int:
    """A port nothing listens on now, never one this process has been given before."""
    for _ in range(1000):
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise OSError(f"no free port on {host} that this process has not been given already")


def _polls(predicate: Callable[[], bool], *, timeout: float, what: str) -> Iterator[None]:
    """Yield while ``predicate`` does not hold, for the caller to pause its own way; raise past ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        yield


def wait_until(predicate: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.02) -> None:
    for _ in _polls(predicate, timeout=timeout, what=what):
        time.sleep(interval)


async def wait_until_async(predicate: Callable[[], bool], *, timeout: float, what: str,
                           interval: float = 0.02) -> None:
    """``wait_until`` that yields to the event loop between polls, so that a cancellation ends it at once."""
    for _ in _polls(predicate, timeout=timeout, what=what):
        await asyncio.sleep(interval)


def http_status(url: str, timeout: float = 1.0) -> int | None:
    """The status code of a GET, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


def port_open(port: int, host: str = HOST) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def nginx_binary() -> str | None:
    """Where ``nginx`` is installed; Debian puts it in /usr/sbin, outside a user's PATH."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


class Lifecycle(ABC):
    """Something started and stopped as a whole: ``with`` starts it, and stops it on the way out."""

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class ChildProcess:
    """One command run in its own session, its output appended to a log file.

    Its own session keeps a Ctrl-C in the terminal away from it, so whoever started it
    decides the order in which things stop.
    """

    def __init__(self, name: str, argv: list[str], *, port: int, log_path: Path,
                 env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.port = port
        self.log_path = log_path
        self._env = dict(os.environ if env is None else env)
        self._process: subprocess.Popen[bytes] | None = None
        self._stop_requested = False

    def launch(self) -> None:
        """Start the process without waiting (launch several, then wait for each).

        Refuses a port that something already listens on: a probe of that port would
        be answered by the other program.
        """
        if port_open(self.port):
            raise OSError(f"{self.name} cannot listen on port {self.port}: it is already in use")
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(self.argv, cwd=REPO_ROOT, env=self._env, stdout=log,
                                             stderr=subprocess.STDOUT, start_new_session=True)
        self._stop_requested = False

    def wait_for(self, probe: Callable[[], bool], *, timeout: float, what: str) -> None:
        """Wait until ``probe`` holds; fail at once, with the log, if the process exits."""
        wait_until(lambda: self._alive() and probe(), timeout=timeout, what=f"{self.name} {what}")

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError(f"{self.name} is not running")
        return self._process.pid

    @property
    def running(self) -> bool:
        """Started, and not ended since."""
        return self._process is not None and self._process.poll() is None

    def exit_code(self) -> int | None:
        """The exit code once the process has ended on its own, else None."""
        return None if self._process is None else self._process.poll()

    def _alive(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with code {self._process.returncode}; log:\n{self.log()}")
        return True

    def request_stop(self) -> None:
        """SIGTERM without waiting, so that several processes can stop at once."""
        if self._process is not None and not self._stop_requested:
            self._process.send_signal(signal.SIGTERM)
            self._stop_requested = True

    def terminate(self, timeout: float = 10) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self._process is None:
            raise RuntimeError(f"{self.name} is not running")
        self.request_stop()
        code = self._process.wait(timeout=timeout)
        self._process = None
        return code

    def kill(self) -> None:
        """SIGKILL the process and everything in its process group (Nginx's workers too)."""
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=10)
            self._process = None

    def stop(self) -> None:
        if self._process is not None:
            try:
                self.terminate()
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class RedisServer(ChildProcess):
    """A private ``redis-server`` that keeps nothing on disk; it can be stopped and restarted.

    With ``cluster_node``, it is a Redis Cluster node (see ``RedisClusterServers``) that
    keeps only its cluster configuration (``nodes.conf``), so it restarts as the same node.
    """

    def __init__(self, *, work_dir: Path, cluster_node: bool = False) -> None:
        port = free_port()
        self.url = f"redis://{HOST}:{port}/0"
        # The pub/sub output buffer limit of docker-compose.prod.yml.
        argv = ["redis-server", "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
                "--dir", str(work_dir), "--client-output-buffer-limit", "pubsub", "32mb", "8mb", "60"]
        if cluster_node:
            # A master that is down takes only its own slots out of service (the others keep
            # serving), and is judged down after 2 s.
            # The cluster bus gets a free port of its own (its default, port + 10000, may not exist).
            argv += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                     "--cluster-port", str(free_port()),
                     "--cluster-node-timeout", "2000", "--cluster-require-full-coverage", "no"]
        super().__init__("redis-server", argv, port=port, log_path=work_dir / "redis.log")

    def start(self) -> None:
        self.launch()
        self.wait_listening()

    def wait_listening(self) -> None:
        self.wait_for(lambda: port_open(self.port), timeout=10, what=f"listening on port {self.port}")

    def stop(self) -> None:
        super().stop()
        wait_until(lambda: not port_open(self.port), timeout=5, what="redis-server to stop")


class RedisClusterServers:
    """A Redis Cluster of ``masters`` nodes, each with ``replicas`` replica nodes, on loopback,
    created with ``redis-cli --cluster create``; ``url`` names its first node, as an application
    would. It can move slots (``reshard``) and fail over (``failover``, ``kill_master``)."""

    def __init__(self, *, work_dir: Path, masters: int = 3, replicas: int = 0) -> None:
        self.replicas = replicas
        self.nodes = []
        for index in range(masters * (1 + replicas)):
            node_dir = work_dir / f"node-{index}"
            node_dir.mkdir(parents=True, exist_ok=True)
            self.nodes.append(RedisServer(work_dir=node_dir, cluster_node=True))
        self.url = self.nodes[0].url

    def start(self) -> None:
        for node in self.nodes:
            node.launch()
        for node in self.nodes:
            node.wait_listening()
        addresses = [f"{HOST}:{node.port}" for node in self.nodes]
        self._cli("--cluster", "create", *addresses, "--cluster-replicas", str(self.replicas), "--cluster-yes",
                  timeout=60)
        self.wait_healthy()

    def wait_healthy(self, timeout: float = 20) -> None:
        """Until every running node says the cluster is ok (all slots served, the nodes agree) and
        every replica has caught up with its master (a failover needs one in sync)."""
        wait_until(lambda: all(self._state_ok(node) and self._in_sync(node) for node in self.running_nodes()),
                   timeout=timeout, what="cluster_state:ok")

    def running_nodes(self) -> list[RedisServer]:
        return [node for node in self.nodes if node.running]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    # --- the topology --------------------------------------------------------

    def topology(self) -> list[dict[str, Any]]:
        """Every running node as the cluster sees it: ``node`` (ours), ``id``, ``master`` (bool),
        ``master_id`` (a replica's master) and ``slots`` (how many a master serves)."""
        by_port = {node.port: node for node in self.nodes}
        seen = []
        for line in self._cli("-p", str(self.running_nodes()[0].port), "cluster", "nodes").splitlines():
            node_id, address, flags, master_id, *_, state = line.split()[:8]
            ranges = line.split()[8:]
            port = int(address.split("@")[0].rsplit(":", 1)[1])
            if "fail" in flags or port not in by_port:
                continue
            slots = sum(int(r.split("-")[1]) - int(r.split("-")[0]) + 1 if "-" in r else 1
                        for r in ranges if not r.startswith("["))
            seen.append({"node": by_port[port], "id": node_id, "master": "master" in flags,
                         "master_id": master_id, "slots": slots, "state": state})
        return seen

    def masters(self) -> list[RedisServer]:
        return [entry["node"] for entry in self.topology() if entry["master"] and entry["slots"]]

    def replica_of(self, master: RedisServer) -> RedisServer:
        """A replica of ``master``."""
        nodes = self.topology()
        master_id = next(entry["id"] for entry in nodes if entry["node"] is master)
        replica: RedisServer = next(entry["node"] for entry in nodes if entry["master_id"] == master_id)
        return replica

    def node_id(self, node: RedisServer) -> str:
        return self._cli("-p", str(node.port), "cluster", "myid").strip()

    def reshard(self, source: RedisServer, target: RedisServer, slots: int, timeout: float = 120) -> None:
        """Move ``slots`` slots (with their keys) from master ``source`` to master ``target``, while
        the cluster serves: ``redis-cli --cluster reshard``."""
        self._cli("--cluster", "reshard", f"{HOST}:{source.port}", "--cluster-from", self.node_id(source),
                  "--cluster-to", self.node_id(target), "--cluster-slots", str(slots), "--cluster-yes",
                  timeout=timeout)
        self.wait_healthy()

    def failover(self, replica: RedisServer, timeout: float = 20) -> None:
        """``CLUSTER FAILOVER`` on ``replica``: it and its master swap roles, nothing lost."""
        nodes = self.topology()
        master_id = next(entry["master_id"] for entry in nodes if entry["node"] is replica)
        master = next(entry["node"] for entry in nodes if entry["id"] == master_id)
        self._cli("-p", str(replica.port), "cluster", "failover")
        wait_until(lambda: self._role(replica) == "master" and self._role(master) == "slave", timeout=timeout,
                   what="the replica to take over")
        self.wait_healthy(timeout)

    def kill_master(self, master: RedisServer, timeout: float = 30) -> RedisServer:
        """SIGKILL ``master``; returns its replica once the cluster promoted it and serves again."""
        replica = self.replica_of(master)
        master.kill()
        wait_until(lambda: self._role(replica) == "master", timeout=timeout, what="the replica to be promoted")
        self.wait_healthy(timeout)
        return replica

    # --- asking the nodes --------------------------------------------------------

    @staticmethod
    def _cli(*args: str, timeout: float = 5) -> str:
        return subprocess.run(["redis-cli", "-h", HOST, *args], check=True, capture_output=True, text=True,
                              timeout=timeout).stdout

    @classmethod
    def _role(cls, node: RedisServer) -> str:
        return cls._cli("-p", str(node.port), "role").split("\n", 1)[0].strip()

    @classmethod
    def _state_ok(cls, node: RedisServer) -> bool:
        return "cluster_state:ok" in cls._cli("-p", str(node.port), "cluster", "info")

    @classmethod
    def _in_sync(cls, node: RedisServer) -> bool:
        info = cls._cli("-p", str(node.port), "info", "replication")
        return "role:master" in info or "master_link_status:up" in info


class Replica(ChildProcess):
    """``python -m server`` configured by environment only, on its own loopback port.

    ``module`` runs another entry point with the same settings (the benchmarks'
    baseline replica is ``bench.stock_replica``); ``argv``, a command that is not
    Python at all (the benchmark's Node replica), configured the same way.
    """

    def __init__(self, *, instance_id: str, env: Mapping[str, str], log_dir: Path, module: str = "server",
                 argv: Sequence[str] | None = None) -> None:
        self.instance_id = instance_id
        port = free_port()
        self.url = f"http://{HOST}:{port}"
        env = {**os.environ, **env, "HOST": HOST, "PORT": str(port), "INSTANCE_ID": instance_id}
        command = [sys.executable, "-m", module] if argv is None else list(argv)
        super().__init__(instance_id, command, port=port, log_path=log_dir / f"{instance_id}.log", env=env)

    def is_ready(self, probe: str = "/readyz") -> bool:
        """Whether ``probe`` answers 200 now; raises, with the log, if the process has exited."""
        return self._alive() and http_status(self.url + probe) == 200

    def wait_ready(self, probe: str = "/readyz", timeout: float = 20) -> None:
        wait_until(lambda: self.is_ready(probe), timeout=timeout, what=f"{self.name} {probe}")

    def start(self) -> None:
        self.launch()
        self.wait_ready()


class NginxServer(ChildProcess):
    """Nginx in the foreground with a configuration of its own directory (see ``nginx.write_config``)."""

    def __init__(self, *, conf_dir: Path, port: int) -> None:
        self.url = f"http://{HOST}:{port}"
        nginx = nginx_binary()
        if nginx is None:
            raise FileNotFoundError("nginx is not installed (Debian: apt-get install nginx)")
        argv = [nginx, "-p", str(conf_dir), "-c", str(conf_dir / "nginx.conf"), "-e", str(conf_dir / "error.log")]
        # Nginx writes $time_iso8601 in its zone, and its error bodies promise UTC (the error schema).
        super().__init__("nginx", argv, port=port, log_path=conf_dir / "nginx.out", env={**os.environ, "TZ": "UTC"})

    def start(self) -> None:
        """Start and wait until Nginx passes a request on to a replica."""
        self.launch()
        self.wait_for(lambda: http_status(self.url + "/healthz") == 200, timeout=10, what="proxying /healthz")
