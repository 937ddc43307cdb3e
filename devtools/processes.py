"""Real processes on free loopback ports: redis-server and replicas.

The integration tests and the benchmarks both start them. Every helper waits on
a probe with a deadline (never a fixed sleep) and stops what it started, also
when the caller fails.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def http_status(url: str, timeout: float = 1.0) -> int | None:
    """The status code of a GET, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((HOST, port)) == 0


class RedisServer:
    """A private ``redis-server`` the test owns: it can stop and restart it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self._dir = tempfile.TemporaryDirectory(prefix="kindmap-redis-")
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no",
             "--dir", self._dir.name, "--client-output-buffer-limit", "pubsub", "32mb", "8mb", "60"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: _port_open(self.port), timeout=10, what=f"redis-server on port {self.port}")

    @property
    def pid(self) -> int:
        return _pid(self._process, "redis-server")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None
        wait_until(lambda: not _port_open(self.port), timeout=5, what="redis-server to stop")

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()


class Replica:
    """``python -m server`` in its own process, configured by environment only.

    ``module`` runs another entry point with the same settings (the benchmarks'
    baseline replica is ``bench.stock_replica``).
    """

    def __init__(self, *, instance_id: str, env: dict[str, str], log_dir: Path, module: str = "server") -> None:
        self.instance_id = instance_id
        self.module = module
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log_path = log_dir / f"{instance_id}.log"
        self._env = {**os.environ, **env, "HOST": HOST, "PORT": str(self.port), "INSTANCE_ID": instance_id}
        self._process: subprocess.Popen[bytes] | None = None

    def launch(self) -> None:
        """Start the process without waiting (launch several, then wait for each)."""
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen([sys.executable, "-m", self.module], cwd=REPO_ROOT, env=self._env,
                                             stdout=log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return _pid(self._process, f"replica {self.instance_id}")

    def is_ready(self, probe: str = "/readyz") -> bool:
        """Whether ``probe`` answers 200 now; raises if the process has exited."""
        return self._alive() and http_status(self.url + probe) == 200

    def wait_ready(self, probe: str = "/readyz", timeout: float = 20) -> None:
        wait_until(lambda: self.is_ready(probe), timeout=timeout, what=f"replica {self.instance_id} {probe}")

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def _alive(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            raise RuntimeError(f"replica {self.instance_id} exited; log:\n{self.log()}")
        return True

    def terminate(self, timeout: float = 10) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self._process is None:
            raise RuntimeError(f"replica {self.instance_id} is not running")
        self._process.send_signal(signal.SIGTERM)
        code = self._process.wait(timeout=timeout)
        self._process = None
        return code

    def kill(self) -> None:
        if self._process is not None:
            self._process.kill()
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


def _pid(process: subprocess.Popen[bytes] | None, what: str) -> int:
    if process is None:
        raise RuntimeError(f"{what} is not running")
    return process.pid
