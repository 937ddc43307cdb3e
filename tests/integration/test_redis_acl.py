"""The Redis access control of docker-compose.prod.yml, on a real redis-server.

redis-server runs with the production Compose file's own arguments (its ``--user``
rules, passwords filled in as Compose would from .env); a replica and an emitter
connect as the users the file creates, and must work -- and be refused the rest.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from redis import asyncio as aioredis
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError

from cluster.processes import HOST, REPO_ROOT, ChildProcess, Replica, free_port, port_open
from server.emitter import Emitter
from tests.helpers.clients import MakeClient, connected
from tests.helpers.cluster import API_KEY, replica_env, unique_user
from tests.helpers.http import post_emit

CHANNEL = "kindmap_events"  # the channel the Compose file's ACL names
PASSWORDS = {"REDIS_REPLICA_PASSWORD": "replica-pw-0123456789", "REDIS_EMITTER_PASSWORD": "emitter-pw-0123456789"}
SIGNING_KEY = "integration-queue-signing-key-0123456789"


def compose_redis_args() -> list[str]:
    """The Compose file's redis-server arguments, ``${NAME:?…}`` replaced as Compose would."""
    command = yaml.safe_load((REPO_ROOT / "docker-compose.prod.yml").read_text())["services"]["redis"]["command"]
    assert command[0] == "redis-server"
    return [re.sub(r"\$\{(\w+)(:\?[^}]*)?\}", lambda m: PASSWORDS[m.group(1)], arg) for arg in command[1:]]


@pytest.fixture
def acl_redis(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    server = ChildProcess("redis-server", ["redis-server", *compose_redis_args(), "--port", str(port), "--bind", HOST,
                                           "--dir", str(tmp_path)], port=port, log_path=tmp_path / "redis.log")
    server.launch()
    server.wait_for(lambda: port_open(port), timeout=10, what="listening")
    yield f"{HOST}:{port}"
    server.stop()


def url(user: str, address: str) -> str:
    return f"redis://{user}:{PASSWORDS[f'REDIS_{user.upper()}_PASSWORD']}@{address}/0"


@pytest.fixture
def acl_replica(acl_redis: str, tmp_path: Path) -> Iterator[Replica]:
    env = replica_env(url("replica", acl_redis), CHANNEL, QUEUE_SIGNING_KEY=SIGNING_KEY, ALLOW_UNSIGNED_QUEUE="")
    replica = Replica(instance_id="acl-replica", env=env, log_dir=tmp_path)
    replica.start()
    yield replica
    replica.stop()


async def test_replica_and_emitter_work_with_only_their_acl_permissions(
        acl_redis: str, acl_replica: Replica, make_client: MakeClient) -> None:
    user = unique_user()
    client = await connected(make_client, acl_replica, user)
    replica_redis = aioredis.Redis.from_url(url("replica", acl_redis))
    try:
        # A rewritten fingerprint makes the emitter probe the replica: that path is exercised too.
        await replica_redis.set(f"{CHANNEL}:signing", b"0" * 32)
        async with Emitter(url("emitter", acl_redis), channel=CHANNEL, signing_key=SIGNING_KEY) as emitter:
            await emitter.send_to_user(user, "via_emitter", {"n": 1})
            await emitter.disconnect_user(unique_user())
        status, _ = await post_emit(acl_replica.url, API_KEY, {"user_id": user, "event": "via_api", "data": {}})
    finally:
        await replica_redis.aclose()

    assert await client.wait_for("via_emitter") == {"n": 1}
    assert status == 202 and await client.wait_for("via_api") == {}
    assert "NOPERM" not in acl_replica.log() and "NoPermission" not in acl_replica.log()


@pytest.mark.parametrize(("user", "command"), [
    ("emitter", ("HSET", f"{CHANNEL}:presence:someone", "sid", "forged")),
    ("emitter", ("SET", f"{CHANNEL}:signing", "forged")),
    ("emitter", ("XREAD", "STREAMS", f"{CHANNEL}:inbox:some-replica", "0")),
    ("emitter", ("ZADD", f"{CHANNEL}:replicas", "99999999999999", "fake-replica")),
    ("emitter", ("PUBLISH", CHANNEL, "x")),
    ("emitter", ("FLUSHALL",)),
    ("replica", ("KEYS", "*")),
    ("replica", ("GET", "another_app:secret")),
    ("replica", ("CONFIG", "SET", "requirepass", "x")),
    ("replica", ("FLUSHALL",)),
])
async def test_acl_users_are_refused_what_they_do_not_need(acl_redis: str, user: str, command: tuple[str, ...]) -> None:
    client = aioredis.Redis.from_url(url(user, acl_redis))
    try:
        with pytest.raises(NoPermissionError):
            await client.execute_command(*command)  # type: ignore[no-untyped-call]
    finally:
        await client.aclose()


async def test_the_default_user_is_off(acl_redis: str) -> None:
    client = aioredis.Redis.from_url(f"redis://{acl_redis}/0")
    try:
        with pytest.raises((AuthenticationError, ResponseError)):
            await client.ping()
    finally:
        await client.aclose()


def test_the_compose_health_check_passes_with_the_replica_password_and_fails_without(acl_redis: str) -> None:
    check = yaml.safe_load((REPO_ROOT / "docker-compose.prod.yml").read_text())["services"]["redis"]["healthcheck"]
    assert check["test"][0] == "CMD-SHELL"
    host, port = acl_redis.split(":")
    # As Compose hands it to the container's shell: $$ is a literal $; the container's Redis is local.
    script = check["test"][1].replace("$$", "$").replace("redis-cli", f"redis-cli -h {host} -p {port}")

    def run(password: str) -> int:
        return subprocess.run(["sh", "-c", script], env={**os.environ, "REDIS_REPLICA_PASSWORD": password},
                              capture_output=True, timeout=10).returncode

    assert run(PASSWORDS["REDIS_REPLICA_PASSWORD"]) == 0
    assert run("wrong-password") != 0
