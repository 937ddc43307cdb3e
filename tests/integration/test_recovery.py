"""Connection state recovery with real socket.io-client 4.8 peers, real replicas and a real Redis.

A client whose connection is lost -- its replica killed, its transport cut, its signal
gone for a while -- reconnects (through Nginx, to whichever replica) with the private
session id and last offset it holds, and gets its socket id back and every message it
missed, in order and once, before anything newer: ``recovered`` is true. Past the
window, or with the history gone, it gets a new session and ``recovered`` is false.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis, RedisCluster

from cluster import LocalCluster
from cluster.processes import REPO_ROOT, RedisServer
from kindmap_realtime.backends.redis.keys import presence_key
from kindmap_realtime.emitter import Emitter
from kindmap_realtime.errors import UserNotConnectedError
from tests.helpers.clients import MakeClient, connected, make_token
from tests.helpers.cluster import Cluster, new_channel, replica_env, unique_user
from tests.helpers.http import metric
from tests.helpers.node_client import NodeClient, StartNodeClient
from tests.helpers.waiting import eventually

UNSIGNED_CLI_ENV = {**os.environ, "ALLOW_UNSIGNED_QUEUE": "true"}


def connects(client: NodeClient) -> list[dict[str, Any]]:
    return [r for r in client.records if r["kind"] == "connect"]


def received(client: NodeClient, event: str) -> list[tuple[Any, str | None]]:
    """``(data, offset)`` of each ``event`` the client got, in order."""
    return [(r["data"], r["offset"]) for r in client.records if r["kind"] == "event" and r["event"] == event]


def numbers(client: NodeClient, event: str = "step") -> list[int]:
    return [data["n"] for data, _ in received(client, event)]


async def rider(node_client: StartNodeClient, url: str, prefix: str = "rider", **start: str) -> tuple[str, NodeClient]:
    """A new user's socket.io-client connected to ``url`` and welcomed."""
    user = unique_user(prefix)
    client = await node_client(url, {"token": make_token(user)}, **start)
    await client.wait_for_event("connected")
    return user, client


async def reconnected(client: NodeClient, count: int = 2) -> dict[str, Any]:
    """The ``count``-th connect record, once the client has reconnected and been welcomed again."""
    await client.wait_for(lambda _: len(connects(client)) >= count, what=f"connect #{count}")
    await client.wait_for_event("connected", count=count)
    return connects(client)[count - 1]


async def lost_connection(client: NodeClient) -> None:
    await client.wait_for(lambda rs: any(r["kind"] == "disconnect" for r in rs), what="disconnect")


async def left(cluster: Cluster, user: str) -> None:
    """Until the user's replica has seen their socket go and withdrawn it (the client saw it first)."""
    redis = RedisCluster.from_url(cluster.redis_url) if cluster.redis_mode == "redis-cluster" \
        else Redis.from_url(cluster.redis_url)

    async def withdrawn() -> bool:
        return await redis.hlen(presence_key(cluster.channel, user)) == 0

    try:
        await eventually(withdrawn, what="the replica saw the socket go")
    finally:
        await redis.aclose()


async def into_tunnel(client: NodeClient, cluster: Cluster, user: str) -> None:
    """Cuts the client's connection, keeps it offline, and waits until its replica withdrew it."""
    await client.send({"cut": True, "stay_offline": True})
    await lost_connection(client)
    await left(cluster, user)


@pytest.fixture(params=["redis", "redis-cluster"])
def nginx_cluster(request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    """A test's own three replicas behind Nginx (it kills one), on one Redis or a Redis Cluster."""
    redis = request.getfixturevalue("redis_server" if request.param == "redis" else "redis_cluster")
    env = replica_env(redis.url, new_channel())
    with LocalCluster(replicas=3, env=env, redis_url=redis.url) as cluster:
        yield cluster


async def test_a_client_whose_replica_is_killed_recovers_every_missed_message_on_another_replica(
        nginx_cluster: LocalCluster, node_client: StartNodeClient) -> None:
    user = unique_user("rider")
    client = await node_client(nginx_cluster.url, {"token": make_token(user)})
    welcome = await client.wait_for_event("connected")
    first = connects(client)[0]
    assert welcome["recovered"] is False and first["pid"]
    channel = nginx_cluster.env["SOCKETIO_CHANNEL"]
    async with Emitter(nginx_cluster.redis_url, channel=channel) as emitter:
        assert await emitter.send_to_user(user, "step", {"n": 0}) == "sent"
        await client.wait_for_event("step")
        holder = next(r for r in nginx_cluster.replicas if r.instance_id == welcome["instance_id"])
        await client.send({"offline_ms": 1500})  # its reconnection waits until the 20 are sent

        holder.kill()
        await lost_connection(client)
        statuses = [await emitter.send_to_user(user, "step", {"n": n}) for n in range(1, 21)]
        again = await reconnected(client)
        newer = await emitter.send_to_user(user, "step", {"n": 21})
        await client.wait_for_event("step", count=22)

    assert set(statuses) <= {"sent", "stored"} and newer == "sent"
    assert again["id"] == first["id"] and again["recovered"] is True
    assert client.events("connected")[1]["instance_id"] != welcome["instance_id"]
    assert numbers(client) == list(range(22))  # in order, once each, the newer one last
    offsets = [offset for _, offset in received(client, "step")]
    assert all(offsets) and len(set(offsets)) == 22
    assert client.events("connected")[1]["replayed"] == 20


async def test_a_transport_cut_on_a_live_replica_recovers_the_missed_messages_in_order_once(
        cluster: Cluster, node_client: StartNodeClient) -> None:
    user = unique_user("rider")
    recoveries = await metric(cluster.replicas[0].url, "kindmap_recoveries_total")
    replayed = await metric(cluster.replicas[0].url, "kindmap_messages_replayed_total")
    client = await node_client(cluster.replicas[0].url, {"token": make_token(user)})
    await client.wait_for_event("connected")
    async with Emitter(cluster.redis_url, channel=cluster.channel) as emitter:
        await emitter.send_to_user(user, "step", {"n": 0})
        await client.wait_for_event("step")
        await client.send({"cut": True, "offline_ms": 1000})
        await lost_connection(client)
        await left(cluster, user)
        statuses = [await emitter.send_to_user(user, "step", {"n": n}) for n in range(1, 11)]
        again = await reconnected(client)
        await emitter.send_to_user(user, "step", {"n": 11})
        await client.wait_for_event("step", count=12)

    assert statuses == ["stored"] * 10  # nobody is connected, a session is within its window
    assert again["id"] == connects(client)[0]["id"] and again["recovered"] is True
    assert numbers(client) == list(range(12))
    assert await metric(cluster.replicas[0].url, "kindmap_recoveries_total") == recoveries + 1
    assert await metric(cluster.replicas[0].url, "kindmap_messages_replayed_total") == replayed + 10


async def test_messages_sent_while_a_session_is_replayed_arrive_once_and_in_order(
        cluster: Cluster, node_client: StartNodeClient) -> None:
    user, client = await rider(node_client, cluster.replicas[1].url, "rider")
    async with Emitter(cluster.redis_url, channel=cluster.channel) as emitter:
        async def steady(count: int) -> list[str]:
            statuses = []
            for n in range(count):
                statuses.append(await emitter.send_to_user(user, "step", {"n": n}))
                await asyncio.sleep(0.005)  # a steady stream that spans the reconnect, not a sync point
            return statuses

        sending = asyncio.create_task(steady(150))
        await client.wait_for_event("step", count=10)
        await client.send({"cut": True, "offline_ms": 100})
        await reconnected(client)
        statuses = await sending
        await client.wait_for_event("step", count=150)

    assert numbers(client) == list(range(150))
    assert "stored" in statuses and connects(client)[1]["recovered"] is True


async def test_a_client_back_after_the_window_gets_a_new_session_and_sends_meanwhile_are_refused(
        start_cluster: Callable[..., Cluster], node_client: StartNodeClient) -> None:
    cluster = start_cluster(1, RECOVERY_WINDOW_SECONDS="1")
    [replica] = cluster.replicas
    user, client = await rider(node_client, replica.url, "rider")
    async with Emitter(cluster.redis_url, channel=cluster.channel) as emitter:
        await into_tunnel(client, cluster, user)
        assert await emitter.send_to_user(user, "step", {"n": 1}) == "stored"
        await asyncio.sleep(1.2)  # the window itself is what is tested: 1 s of it passes
        with pytest.raises(UserNotConnectedError):
            await emitter.send_to_user(user, "step", {"n": 2})
        await client.send({"reconnect": True})
        again = await reconnected(client)
        assert await emitter.send_to_user(user, "step", {"n": 3}) == "sent"
        await client.wait_for_event("step")

    assert again["recovered"] is False and again["id"] != connects(client)[0]["id"]
    assert client.events("connected")[1]["recovered"] is False
    assert numbers(client) == [3]  # what was stored for the expired session is gone with it
    # The refused send found the session expired and removed it: the reconnect finds none.
    failed = [await metric(replica.url, "kindmap_recoveries_failed_total", {"reason": reason})
              for reason in ("expired", "unknown")]
    assert sum(failed) == 1


async def test_redis_restarted_while_a_client_is_offline_gives_a_new_session_and_delivery_goes_on(
        start_cluster: Callable[..., Cluster], own_redis: RedisServer, node_client: StartNodeClient) -> None:
    cluster = start_cluster(1, redis=own_redis)
    [replica] = cluster.replicas
    user, client = await rider(node_client, replica.url, "rider")
    async with Emitter(cluster.redis_url, channel=cluster.channel) as emitter:
        await emitter.send_to_user(user, "step", {"n": 0})
        await client.wait_for_event("step")
    await client.send({"cut": True, "stay_offline": True})
    await lost_connection(client)

    own_redis.stop()
    own_redis.start()
    await client.send({"reconnect": True})

    again = await reconnected(client)
    async with Emitter(cluster.redis_url, channel=cluster.channel) as emitter:
        assert await emitter.send_to_user(user, "step", {"n": 1}) == "sent"
        await client.wait_for_event("step", count=2)
    assert again["recovered"] is False and client.events("connected")[1]["recovered"] is False
    assert numbers(client) == [0, 1]
    assert await metric(replica.url, "kindmap_recoveries_failed_total", {"reason": "unknown"}) == 1
    assert replica.exit_code() is None


async def test_a_session_claimed_while_its_old_socket_is_still_open_moves_to_the_new_connection(
        cluster: Cluster, node_client: StartNodeClient) -> None:
    """The old replica has not noticed yet (socket.io/socket.io#4880): the new connection takes
    the session over all the same, the old socket is disconnected, messages go to the new one."""
    user = unique_user("rider")
    old = await node_client(cluster.replicas[0].url, {"token": make_token(user)})
    await old.wait_for_event("connected")
    async with Emitter(cluster.redis_url, channel=cluster.channel) as emitter:
        await emitter.send_to_user(user, "step", {"n": 0})
        await old.wait_for_event("step")
        [(_, offset)] = received(old, "step")
        pid = connects(old)[0]["pid"]

        new = await node_client(cluster.replicas[2].url, {"token": make_token(user), "pid": pid, "offset": offset})
        await new.wait_for_event("connected")
        await lost_connection(old)
        assert await emitter.send_to_user(user, "step", {"n": 1}) == "sent"
        await new.wait_for_event("step")

    # The server recovered it; the client says so only when it held the pid itself (a reconnect).
    assert connects(new)[0]["id"] == connects(old)[0]["id"] and new.events("connected")[0]["recovered"] is True
    assert numbers(new) == [1] and numbers(old) == [0]
    assert [r["reason"] for r in old.records if r["kind"] == "disconnect"] == ["io server disconnect"]


async def test_a_forged_or_foreign_session_id_gets_a_new_session(
        cluster: Cluster, node_client: StartNodeClient) -> None:
    owner, intruder = unique_user("owner"), unique_user("intruder")
    victim = await node_client(cluster.replicas[0].url, {"token": make_token(owner)})
    await victim.wait_for_event("connected")
    pid = connects(victim)[0]["pid"]

    attempts = [{"pid": pid}, {"pid": "x" * 10_000}, {"pid": pid, "offset": "0001-0"}, {"pid": 7, "offset": []}]
    for attempt in attempts:
        other = await node_client(cluster.replicas[1].url, {"token": make_token(intruder), **attempt})
        await other.wait_for_event("connected")
        assert other.events("connected")[0]["recovered"] is False
        assert connects(other)[0]["id"] != connects(victim)[0]["id"]

    assert [r["kind"] for r in victim.records].count("disconnect") == 0


async def test_python_clients_that_opt_out_get_no_session_and_no_offsets(
        cluster: Cluster, make_client: MakeClient) -> None:
    """python-socketio calls a handler with every argument: an offset would break ``on_step(data)``."""
    user = unique_user("py")
    client = await connected(make_client, cluster.replicas[0], user,
                             auth={"token": make_token(user), "recovery": False})
    steps: list[Any] = []
    client.sio.on("step", lambda data: steps.append(data))
    async with Emitter(cluster.redis_url, channel=cluster.channel) as emitter:
        assert await emitter.send_to_user(user, "step", {"n": 1}) == "sent"
        await eventually(lambda: steps, what="the step event")
        await client.disconnect()
        await left(cluster, user)
        with pytest.raises(UserNotConnectedError):  # no session: nothing kept for it
            await emitter.send_to_user(user, "step", {"n": 2})

    assert steps == [{"n": 1}]


async def test_volatile_messages_are_not_stored_nor_replayed(
        cluster: Cluster, node_client: StartNodeClient) -> None:
    user, client = await rider(node_client, cluster.replicas[0].url, "rider")
    async with Emitter(cluster.redis_url, channel=cluster.channel) as emitter:
        assert await emitter.send_to_user(user, "position", "Seoul Station", volatile=True) == "sent"
        await client.wait_for_event("position")
        await client.send({"cut": True, "offline_ms": 1000})
        await lost_connection(client)
        await left(cluster, user)
        with pytest.raises(UserNotConnectedError):
            await emitter.send_to_user(user, "position", "City Hall", volatile=True)
        assert await emitter.send_to_user(user, "step", {"n": 1}) == "stored"
        await reconnected(client)
        await client.wait_for_event("step")

    assert connects(client)[1]["recovered"] is True
    # A volatile event's trailing string is followed by the socket's last offset: the client
    # must not take "Seoul Station" for one.
    [(data, offset)] = received(client, "position")
    assert data == "Seoul Station" and offset is not None
    assert numbers(client) == [1]


async def test_a_client_that_disconnects_on_purpose_ends_its_session(
        cluster: Cluster, node_client: StartNodeClient) -> None:
    """socket.disconnect() sends a DISCONNECT and closes the WebSocket at once: the replica may
    see the close first, and must still not keep the session (sends are refused, not stored)."""
    user, client = await rider(node_client, cluster.replicas[0].url, "rider")
    await client.send({"close": True})
    await lost_connection(client)
    await left(cluster, user)

    async with Emitter(cluster.redis_url, channel=cluster.channel) as emitter:
        with pytest.raises(UserNotConnectedError):
            await emitter.send_to_user(user, "step", {"n": 1})
    assert [r["reason"] for r in client.records if r["kind"] == "disconnect"] == ["io client disconnect"]


async def test_the_cli_says_stored_with_exit_code_4_and_volatile_is_refused_for_a_rider_offline(
        cluster: Cluster, node_client: StartNodeClient) -> None:
    user, client = await rider(node_client, cluster.replicas[0].url, "rider")
    await into_tunnel(client, cluster, user)

    async def cli(*extra: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kindmap_realtime.cli", "--user", user, "--event", "step", "--data", '{"n": 1}',
            "--redis-url", cluster.redis_url, "--channel", cluster.channel, *extra, cwd=REPO_ROOT,
            env=UNSIGNED_CLI_ENV, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        out, _ = await process.communicate()
        return await process.wait(), out.decode().strip()

    assert await cli("--volatile") == (3, "")
    assert await cli() == (4, "stored")
    await client.send({"reconnect": True})
    await reconnected(client)
    await client.wait_for_event("step")
    assert numbers(client) == [1]


async def test_an_older_socket_io_client_keeps_working_and_simply_does_not_recover(
        cluster: Cluster, node_client: StartNodeClient) -> None:
    """socket.io-client 4.5 (before recovery) ignores the pid; a stored event's offset reaches its
    handlers as one more argument, which a ``(data) => …`` handler never sees."""
    user, client = await rider(node_client, cluster.replicas[1].url, "old", package="socket.io-client-4-5")
    async with Emitter(cluster.redis_url, channel=cluster.channel) as emitter:
        assert await emitter.send_to_user(user, "step", {"n": 0}) == "sent"
        await client.wait_for_event("step")
        await into_tunnel(client, cluster, user)
        assert await emitter.send_to_user(user, "step", {"n": 1}) == "stored"
        await client.send({"reconnect": True})
        await reconnected(client)
        assert await emitter.send_to_user(user, "step", {"n": 2}) == "sent"
        await client.wait_for_event("step", count=2)

    first, again = connects(client)
    assert first["pid"] is None and again["id"] != first["id"]  # it never asked to recover
    assert client.events("connected")[1]["recovered"] is False
    assert numbers(client) == [0, 2]


async def test_a_client_that_missed_more_than_the_history_keeps_gets_a_new_session(
        start_cluster: Callable[..., Cluster], node_client: StartNodeClient) -> None:
    cluster = start_cluster(1, RECOVERY_MAX_MESSAGES="3")
    [replica] = cluster.replicas
    user, client = await rider(node_client, replica.url)
    async with Emitter(cluster.redis_url, channel=cluster.channel) as emitter:
        assert await emitter.send_to_user(user, "step", {"n": 0}) == "sent"
        await client.wait_for_event("step")
        await into_tunnel(client, cluster, user)
        statuses = [await emitter.send_to_user(user, "step", {"n": n}) for n in range(1, 6)]
        await client.send({"reconnect": True})
        again = await reconnected(client)

    assert statuses == ["stored"] * 5  # stored, but the history keeps the last 3 only
    assert again["recovered"] is False and client.events("connected")[1]["recovered"] is False
    assert numbers(client) == [0]  # nothing replayed: the application resyncs instead
    assert await metric(replica.url, "kindmap_recoveries_failed_total", {"reason": "gone"}) == 1
