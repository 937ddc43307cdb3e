"""The Redis access control of docker-compose.prod.yml, on a real redis-server.

redis-server runs with the production Compose file's own arguments (its ``--user``
rules, passwords filled in as Compose would from .env); a replica and an emitter
connect as the users the file creates, and must work -- and be refused the rest.
Every command a user is granted is run once as that user; the emitter's attacks
(running other Lua, deleting, trimming, expiring, wedging a user with a key of the
wrong type, calling the replicas' functions) are shown failing, and the admin user
shown able to stop a script or function that holds Redis.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from redis import asyncio as aioredis
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError

from cluster.processes import HOST, REPO_ROOT, ChildProcess, Replica, free_port, port_open
from kindmap_realtime.backends.redis.functions import function_name
from kindmap_realtime.backends.redis.keys import history_key, inbox_key, presence_key, registry_key, sessions_key
from kindmap_realtime.emitter import Emitter
from tests.deploy.test_compose import acl_users
from tests.helpers.clients import MakeClient, connected
from tests.helpers.cluster import API_KEY, replica_env, unique_user
from tests.helpers.http import post_emit

CHANNEL = "kindmap_events"  # the channel the Compose file's ACL names
PASSWORDS = {"REDIS_REPLICA_PASSWORD": "replica-pw-0123456789", "REDIS_EMITTER_PASSWORD": "emitter-pw-0123456789",
             "REDIS_ADMIN_PASSWORD": "admin-pw-0123456789"}
SIGNING_KEY = "integration-queue-signing-key-0123456789"
K = f"{CHANNEL}:acl-test"  # a key of the channel's, of no one's


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


def granted(user: str) -> list[str]:
    """The commands (``name`` or ``name|subcommand``) the Compose file grants ``user``, selectors' included."""
    rules = acl_users(["redis-server", *compose_redis_args()])[user]
    return [word[1:] for rule in rules for word in rule.strip("()").split() if word.startswith("+")]


# One harmless call of each command a user may be granted, on keys of the channel's own.
SAMPLES: dict[str, tuple[Any, ...]] = {
    "ping": ("PING",), "hello": ("HELLO",), "time": ("TIME",), "get": ("GET", K), "set": ("SET", K, "x"),
    "del": ("DEL", K), "exists": ("EXISTS", K), "hset": ("HSET", f"{K}:h", "f", "v"), "hget": ("HGET", f"{K}:h", "f"),
    "hdel": ("HDEL", f"{K}:h", "f"), "hgetall": ("HGETALL", f"{K}:h"), "hlen": ("HLEN", f"{K}:h"),
    "expire": ("EXPIRE", K, 10), "pexpire": ("PEXPIRE", K, 10_000), "pttl": ("PTTL", K),
    "zadd": ("ZADD", f"{K}:z", 1, "m"), "zrem": ("ZREM", f"{K}:z", "m"), "zscore": ("ZSCORE", f"{K}:z", "m"),
    "zcard": ("ZCARD", f"{K}:z"), "zrangebyscore": ("ZRANGEBYSCORE", f"{K}:z", "-inf", "+inf"),
    "zremrangebyscore": ("ZREMRANGEBYSCORE", f"{K}:z", "-inf", 0),
    "rpush": ("RPUSH", inbox_key(CHANNEL, "acl-test"), "x"), "rpushx": ("RPUSHX", history_key(CHANNEL, "acl"), "x"),
    "lpush": ("LPUSH", f"{K}:l", "x"), "lpop": ("LPOP", f"{K}:l"), "lrange": ("LRANGE", f"{K}:l", 0, -1),
    "lindex": ("LINDEX", f"{K}:l", 0), "llen": ("LLEN", f"{K}:l"), "ltrim": ("LTRIM", f"{K}:l", 0, -1),
    "lset": ("LSET", f"{K}:l", 0, "x"), "lpos": ("LPOS", f"{K}:l", "x"),
    "blmove": ("BLMOVE", f"{K}:l", f"{K}:l", "LEFT", "LEFT", 0.01), "client|setname": ("CLIENT", "SETNAME", "acl"),
    "pubsub|numsub": ("PUBSUB", "NUMSUB", CHANNEL), "fcall": ("FCALL", "kindmap_none", 1, K),
    "fcall_ro": ("FCALL_RO", "kindmap_none", 1, K), "function|load": ("FUNCTION", "LOAD", "not lua"),
    "wait": ("WAIT", 0, 0),
}


@pytest.fixture
async def as_user(acl_redis: str) -> AsyncIterator[Any]:
    """Factory: a client connected as one of the Compose file's users; all are closed after the test."""
    clients: list[aioredis.Redis] = []

    def connect(user: str) -> aioredis.Redis:
        clients.append(aioredis.Redis.from_url(url(user, acl_redis)))
        return clients[-1]

    yield connect
    for client in clients:
        await client.aclose()


@pytest.mark.parametrize("user", ["replica", "emitter"])
async def test_every_command_a_user_is_granted_runs_as_that_user(as_user: Any, user: str) -> None:
    client = as_user(user)
    missing = [command for command in granted(user) if command not in SAMPLES]
    assert not missing, f"no sample call for {missing}"
    for command in granted(user):
        try:
            await client.execute_command(*SAMPLES[command])
        except NoPermissionError as exc:
            raise AssertionError(f"{user} may not run {command}: {exc}") from exc
        except ResponseError:
            pass  # refused for what it was asked (no such function, not Lua), not for who asked


@pytest.mark.parametrize(("user", "command"), [
    ("emitter", ("HSET", presence_key(CHANNEL, "someone"), "sid", "forged")),
    ("emitter", ("HDEL", sessions_key(CHANNEL, "someone"), "pid")),
    ("emitter", ("DEL", history_key(CHANNEL, "someone"))),
    ("emitter", ("PEXPIRE", history_key(CHANNEL, "someone"), 1)),
    ("emitter", ("EXPIRE", presence_key(CHANNEL, "someone"), 1)),
    ("emitter", ("XADD", inbox_key(CHANNEL, "some-replica"), "MAXLEN", "0", "*", "m", "x")),
    ("emitter", ("LTRIM", inbox_key(CHANNEL, "some-replica"), 0, 0)),
    ("emitter", ("LPOP", inbox_key(CHANNEL, "some-replica"))),
    ("emitter", ("RPUSH", history_key(CHANNEL, "someone"), "x")),  # would create a history without a header
    ("emitter", ("RPUSH", presence_key(CHANNEL, "someone"), "x")),  # a list at a hash's key
    ("emitter", ("RPUSHX", presence_key(CHANNEL, "someone"), "x")),
    ("emitter", ("SET", f"{CHANNEL}:signing", "forged")),
    ("emitter", ("ZADD", registry_key(CHANNEL), "99999999999999", "fake-replica")),
    ("emitter", ("EVAL", "return 1", 0)),
    ("emitter", ("EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", 0)),
    ("emitter", ("SCRIPT", "LOAD", "return 1")),
    ("emitter", ("FUNCTION", "LOAD", "#!lua name=evil\nredis.register_function('f', function() return 1 end)")),
    ("emitter", ("FUNCTION", "DELETE", "anything")),
    ("emitter", ("FUNCTION", "KILL")),
    ("emitter", ("SCRIPT", "KILL")),
    ("emitter", ("PUBLISH", CHANNEL, "x")),
    ("emitter", ("FLUSHALL",)),
    ("replica", ("KEYS", "*")),
    ("replica", ("GET", "another_app:secret")),
    ("replica", ("CONFIG", "SET", "requirepass", "x")),
    ("replica", ("FLUSHALL",)),
    ("replica", ("EVAL", "return 1", 0)),
    ("replica", ("SCRIPT", "LOAD", "return 1")),
    ("replica", ("FUNCTION", "DELETE", "anything")),
    ("replica", ("FUNCTION", "KILL")),
    ("replica", ("SHUTDOWN",)),
])
async def test_acl_users_are_refused_what_they_do_not_need(as_user: Any, user: str, command: tuple[Any, ...]) -> None:
    with pytest.raises(NoPermissionError):
        await as_user(user).execute_command(*command)


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


async def user_state(redis: aioredis.Redis, user: str) -> dict[str, Any]:
    """What a user's keys hold, but what a heartbeat rewrites (presence values, deadlines, TTLs)."""
    presence, sessions, history = (presence_key(CHANNEL, user), sessions_key(CHANNEL, user), history_key(CHANNEL, user))
    return {"presence": sorted(await redis.hkeys(presence)),
            "sessions": sorted(await redis.hkeys(sessions)),
            "history": await redis.lrange(history, 0, -1),
            "types": [await redis.type(key) for key in (presence, sessions, history)],
            "kept": all([await redis.pttl(key) > 30_000 for key in (presence, sessions, history)])}


async def test_an_emitter_cannot_change_a_users_state_through_the_replicas_functions(
        acl_replica: Replica, as_user: Any, make_client: MakeClient) -> None:
    """A function runs each command with its caller's rights: the emitter calling the functions
    that remove, end, trim or expire gets as far as their first such command, and no further."""
    user = unique_user()
    await connected(make_client, acl_replica, user)
    admin, emitter = as_user("admin"), as_user("emitter")
    before = await user_state(admin, user)
    keys = [presence_key(CHANNEL, user), sessions_key(CHANNEL, user), history_key(CHANNEL, user)]
    [sid] = before["presence"]
    [pid] = before["sessions"]
    registry = registry_key(CHANNEL)
    [process] = await admin.zrange(registry, 0, -1)
    calls: list[tuple[str, list[Any], list[Any]]] = [
        ("leave", keys, [sid, process, pid, "x", "end", "", 1, registry, 0]),
        ("record", keys, [1, "me", 1, 0, sid, "forged", pid, "x", "forged", "1"]),
        ("add_socket", keys, [sid, "forged", "me", registry, 0, 1, pid, "x", "forged", "1", 1, 1, 0, sid]),
        ("open_history", keys[2:], [1, 10**9]),
        ("claim_take", keys[1:], [pid, "not it", "forged", 1]),
        ("advance", [inbox_key(CHANNEL, process.decode()), f"{CHANNEL}:consumed:{process.decode()}"], [10**6, 1, 1, 1]),
        ("register", [registry], ["fake-replica", 10**9, inbox_key(CHANNEL, ""), f"{CHANNEL}:consumed:"]),
    ]
    for name, call_keys, args in calls:
        try:
            await emitter.fcall(function_name(name), len(call_keys), *call_keys, *args)
        except ResponseError:
            pass  # refused at its first write: what is asserted is that nothing changed

    assert await user_state(admin, user) == before
    assert await admin.zrange(registry, 0, -1) == [process]


async def test_an_emitter_can_append_to_a_users_history_but_never_shorten_it(
        acl_replica: Replica, as_user: Any, make_client: MakeClient) -> None:
    user = unique_user()
    await connected(make_client, acl_replica, user)
    admin, emitter = as_user("admin"), as_user("emitter")
    history = history_key(CHANNEL, user)
    before = await admin.lrange(history, 0, -1)

    await emitter.rpushx(history, "junk")
    for command in (("LTRIM", history, 0, 0), ("LPOP", history), ("LSET", history, 0, "x"), ("DEL", history),
                    ("XADD", history, "MAXLEN", 0, "*", "m", "x"), ("LREM", history, 0, "junk")):
        with pytest.raises(NoPermissionError):
            await emitter.execute_command(*command)

    assert await admin.lrange(history, 0, -1) == [*before, b"junk"]


_BUSY = """#!lua name=acl_busy
redis.register_function{function_name='acl_busy', flags={'no-writes'}, callback=function()
  local start = redis.call('TIME')[1]
  while redis.call('TIME')[1] - start < 10 do end
end}
"""
_BUSY_SCRIPT = "local start = redis.call('TIME')[1] while redis.call('TIME')[1] - start < 10 do end"


@pytest.mark.parametrize(("busy", "kill"), [(("FCALL_RO", "acl_busy", 0), ("FUNCTION", "KILL")),
                                            (("EVAL", _BUSY_SCRIPT, 0), ("SCRIPT", "KILL"))],
                         ids=["function", "script"])
async def test_the_admin_user_can_stop_a_function_or_script_that_holds_redis(
        as_user: Any, busy: tuple[Any, ...], kill: tuple[str, ...]) -> None:
    admin, watcher = as_user("admin"), as_user("admin")
    await admin.config_set("busy-reply-threshold", 100)
    await admin.function_load(_BUSY, replace=True)
    holding = asyncio.ensure_future(as_user("admin").execute_command(*busy))
    async with asyncio.timeout(5):
        while True:  # until Redis says it is busy (commands are answered BUSY past the threshold)
            try:
                await watcher.ping()
            except ResponseError as exc:
                assert "BUSY" in str(exc)
                break

    assert await watcher.execute_command(*kill) in (True, b"OK", "OK")
    with pytest.raises(ResponseError, match="killed"):
        await holding
    assert await watcher.ping() is True
