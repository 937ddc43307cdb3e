"""The library as a backend service installs it: one ``pip install`` of this repository into a fresh
virtualenv gives the package ``kindmap_realtime`` and the ``kindmap-emit`` command, with redis-py,
hiredis, orjson and python-dotenv and nothing of the replica's web stack, and it sends to a rider
connected to a real replica.

The install is from a copy of the files the package is built from (``pyproject.toml`` and
``kindmap_realtime/``), so that building it leaves nothing behind in this checkout.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from cluster.processes import REPO_ROOT
from tests.helpers.clients import MakeClient, connected
from tests.helpers.cluster import Cluster, unique_user

pytestmark = pytest.mark.timeout(600)  # the first test builds and installs the package

SIGNING_KEY = secrets.token_urlsafe(48)
# What the replica runs on (requirements.txt) and a backend service must not get with the library.
WEB_STACK = {"aiohttp", "python-socketio", "python-engineio", "prometheus-client", "pyjwt", "uvloop"}


def _environment() -> dict[str, str]:
    """This machine's environment without what would let a process import this checkout or measure it."""
    return {name: value for name, value in os.environ.items()
            if name != "PYTHONPATH" and not name.startswith("COV")}


def run(argv: list[str | Path], *, cwd: Path, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(arg) for arg in argv], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**_environment(), **env})


async def run_async(argv: list[str | Path], *, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``run``, without holding up the event loop the test's Socket.IO client runs on."""
    process = await asyncio.create_subprocess_exec(*map(str, argv), cwd=cwd, env={**_environment(), **env},
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return subprocess.CompletedProcess(argv, process.returncode, stdout.decode(), stderr.decode())


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the library installed by one ``pip install``."""
    root = tmp_path_factory.mktemp("library")
    source = root / "source"
    source.mkdir()
    shutil.copy(REPO_ROOT / "pyproject.toml", source)
    shutil.copytree(REPO_ROOT / "kindmap_realtime", source / "kindmap_realtime",
                    ignore=shutil.ignore_patterns("__pycache__"))
    created = run([sys.executable, "-m", "venv", root / "venv"], cwd=root, timeout=120)
    assert created.returncode == 0, created.stderr
    installed = run([root / "venv/bin/python", "-m", "pip", "install", "--quiet", source], cwd=root, timeout=540)
    assert installed.returncode == 0, installed.stderr
    return root / "venv"


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A working directory outside this checkout, as a backend service's would be."""
    return tmp_path


@pytest.fixture
def signed_replica(start_cluster: Callable[..., Cluster]) -> Cluster:
    return start_cluster(1, QUEUE_SIGNING_KEY=SIGNING_KEY, ALLOW_UNSIGNED_QUEUE="")


def test_pip_check_finds_every_requirement_of_the_installed_library_met(venv: Path, elsewhere: Path) -> None:
    checked = run([venv / "bin/python", "-m", "pip", "check"], cwd=elsewhere)

    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_library_brings_redis_hiredis_orjson_and_dotenv_and_nothing_of_the_web_stack(
        venv: Path, elsewhere: Path) -> None:
    listed = run([venv / "bin/python", "-m", "pip", "list", "--format=json"], cwd=elsewhere)
    names = {package["name"].lower() for package in json.loads(listed.stdout)}

    assert {"kindmap-realtime", "redis", "hiredis", "orjson", "python-dotenv"} <= names
    assert names & WEB_STACK == set()


def test_the_import_name_is_kindmap_realtime_typed_and_no_server_package_is_installed(
        venv: Path, elsewhere: Path) -> None:
    imported = run([venv / "bin/python", "-c", "import kindmap_realtime; print(kindmap_realtime.__version__)\n"
                    "import importlib.util; print(importlib.util.find_spec('server'))\n"
                    "from importlib.resources import files; print(files('kindmap_realtime').joinpath('py.typed')"
                    ".is_file())"], cwd=elsewhere)

    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.split() == ["0.1.0", "None", "True"]


async def test_the_console_script_sends_to_a_rider_on_a_replica(
        venv: Path, elsewhere: Path, signed_replica: Cluster, make_client: MakeClient) -> None:
    user = unique_user()
    rider = await connected(make_client, signed_replica.replicas[0], user)

    sent = await run_async([venv / "bin/kindmap-emit", "--user", user, "--event", "arrival",
                            "--data", '{"station": "시청"}', "--redis-url", signed_replica.redis_url,
                            "--channel", signed_replica.channel], cwd=elsewhere, QUEUE_SIGNING_KEY=SIGNING_KEY)

    assert (sent.returncode, sent.stdout.strip()) == (0, "sent"), sent.stderr
    assert await rider.wait_for("arrival") == {"station": "시청"}


SEND = """
import asyncio, sys
from kindmap_realtime import Emitter

async def main():
    async with Emitter(sys.argv[1], channel=sys.argv[2], signing_key=sys.argv[3]) as emitter:
        print(await emitter.send_to_user(sys.argv[4], "transfer", {"line": 2}))
    print(sorted(name for name in ("aiohttp", "socketio", "engineio") if name in sys.modules))

asyncio.run(main())
"""


async def test_the_emitter_imported_from_the_package_sends_to_a_rider_on_a_replica(
        venv: Path, elsewhere: Path, signed_replica: Cluster, make_client: MakeClient) -> None:
    user = unique_user()
    rider = await connected(make_client, signed_replica.replicas[0], user)

    sent = await run_async([venv / "bin/python", "-c", SEND, signed_replica.redis_url, signed_replica.channel,
                            SIGNING_KEY, user], cwd=elsewhere)

    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.splitlines() == ["sent", "[]"]
    assert await rider.wait_for("transfer") == {"line": 2}
