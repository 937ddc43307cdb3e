"""A description of the machine and software a run measured, for the report."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from .systems import NODE_DIR

__all__ = ["describe", "load_average", "node_versions"]

PACKAGES = ("python-socketio", "python-engineio", "aiohttp", "redis")
NODE_PACKAGES = ("socket.io", "@socket.io/redis-adapter", "@socket.io/redis-emitter", "redis")


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages: above the core count, others were competing for CPU."""
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def describe() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
                 platform.processor() or "unknown")
    meminfo = Path("/proc/meminfo").read_text().split()
    redis = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, check=False).stdout
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(int(meminfo[meminfo.index("MemTotal:") + 1]) / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "redis": next((part.split("=", 1)[1] for part in redis.split() if part.startswith("v=")), "unknown"),
        "packages": {**{name: metadata.version(name) for name in PACKAGES}, **node_versions()},
    }


def node_versions(node_dir: Path = NODE_DIR) -> dict[str, str]:
    """Node and the Node systems' packages as installed in ``node_dir``, as far as they are."""
    node = shutil.which("node")
    if node is None:
        return {}
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout
    versions = {"node": version.strip().removeprefix("v")}
    for name in NODE_PACKAGES:
        manifest = node_dir / "node_modules" / name / "package.json"
        if manifest.exists():
            versions[f"{name} (npm)"] = json.loads(manifest.read_text())["version"]
    return versions
