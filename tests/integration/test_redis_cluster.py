"""Replicas and emitters on a real three-master Redis Cluster: detected from any node's URL,
messages spread over the shards, and a restarted master listened to again.

(The cross-replica tests of ``test_cross_replica.py`` also run on a cluster: its ``cluster``
fixture has a Redis Cluster parameter.)
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from redis import asyncio as aioredis
from redis.crc import key_slot

from cluster.processes import HOST, RedisClusterServers, RedisServer
from kindmap_realtime.backends.redis.keys import user_channel
from kindmap_realtime.emitter import Emitter
from kindmap_realtime.errors import RealtimeError
from tests.helpers.clients import MakeClient, RecordingClient, connected
from tests.helpers.cluster import Cluster, unique_user

RESUME_DEADLINE = 2.0  # the contract: delivery resumes within 2 s of the master serving again
SIGNING_KEY = "cluster-queue-signing-key-0123456789abcdef"


def slot_owners(servers: RedisClusterServers) -> dict[int, RedisServer]:
    """Slot -> the master serving it, from the cluster's own map."""
    reply = subprocess.run(["redis-cli", "-h", HOST, "-p", str(servers.nodes[0].port), "--json", "cluster", "slots"],
                           capture_output=True, text=True, timeout=5, check=True).stdout
    by_port = {node.port: node for node in servers.nodes}
    owners = {}
    for start, end, master, *_ in json.loads(reply):
        for slot in range(start, end + 1):
            owners[slot] = by_port[master[1]]
    return owners


def users_on_every_master(servers: RedisClusterServers, channel: str, per_master: int = 2) -> dict[int, list[str]]:
    """User ids whose shard channel lies on each master (keyed by its port)."""
    owners = slot_owners(servers)
    chosen: dict[int, list[str]] = {node.port: [] for node in servers.nodes}
    while any(len(users) < per_master for users in chosen.values()):
        user = unique_user()
        port = owners[key_slot(user_channel(channel, user).encode())].port
        if len(chosen[port]) < per_master:
            chosen[port].append(user)
    return chosen


async def published_on(node: RedisServer) -> int:
    """SPUBLISH calls this master served (commands a script runs are counted too)."""
    client = aioredis.Redis(host=HOST, port=node.port)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    return int(stats.get("cmdstat_spublish", {}).get("calls", 0))


async def test_a_replica_given_any_node_of_a_cluster_uses_sharded_pub_sub(
        redis_cluster: RedisClusterServers, start_cluster: Callable[..., Cluster], make_client: MakeClient) -> None:
    cluster = start_cluster(2, redis=redis_cluster.nodes[2])  # the URL of the third node, no other setting
    user = unique_user()
    client = await connected(make_client, cluster.replicas[1], user)

    async with Emitter(redis_cluster.nodes[1].url, channel=cluster.channel) as emitter:
        await emitter.send_to_user(user, "route", {"step": 1})

    assert await client.wait_for("route") == {"step": 1}
    assert all('"mode": "redis-cluster"' in replica.log() for replica in cluster.replicas)


async def test_messages_for_users_spread_over_every_master(
        own_redis_cluster: RedisClusterServers, start_cluster: Callable[..., Cluster], make_client: MakeClient) -> None:
    cluster = start_cluster(3, redis=own_redis_cluster.nodes[0])
    by_master = users_on_every_master(own_redis_cluster, cluster.channel)
    users = [user for users in by_master.values() for user in users]
    clients = {user: await connected(make_client, cluster.replicas[i % 3], user) for i, user in enumerate(users)}
    before = {node.port: await published_on(node) for node in own_redis_cluster.nodes}

    async with Emitter(own_redis_cluster.url, channel=cluster.channel) as emitter:
        for user in users:
            await emitter.send_to_user(user, "route", {"for": user})

    for user, client in clients.items():
        assert await client.wait_for("route") == {"for": user}
    for node in own_redis_cluster.nodes:
        assert await published_on(node) - before[node.port] == len(by_master[node.port])


async def send_until_delivered(emitter: Emitter, user: str, client: RecordingClient, deadline: float) -> int:
    """Try one send after another until one arrives; the number of the attempt that did."""
    attempt = 0
    while time.monotonic() < deadline:
        attempt += 1
        try:
            await emitter.send_to_user(user, "resumed", {"attempt": attempt})
            await client.wait_for("resumed", timeout=max(0.05, min(0.25, deadline - time.monotonic())))
            return attempt
        except (RealtimeError, AssertionError):
            continue  # refused while nobody listens, or not arrived yet: the next attempt
    raise AssertionError(f"no delivery within {RESUME_DEADLINE}s of the master coming back")


async def test_a_restarted_master_is_listened_to_again_and_delivery_resumes_within_two_seconds(
        own_redis_cluster: RedisClusterServers, start_cluster: Callable[..., Cluster], make_client: MakeClient,
        tmp_path: Path) -> None:
    cluster = start_cluster(2, redis=own_redis_cluster.nodes[0])
    by_master = users_on_every_master(own_redis_cluster, cluster.channel, per_master=1)
    restarted = next(node for node in own_redis_cluster.nodes if node is not own_redis_cluster.nodes[0])
    (on_restarted,) = by_master[restarted.port]
    (elsewhere,) = next(users for port, users in by_master.items() if port != restarted.port)
    near = await connected(make_client, cluster.replicas[0], on_restarted)
    far = await connected(make_client, cluster.replicas[1], elsewhere)

    async with Emitter(own_redis_cluster.url, channel=cluster.channel) as emitter:
        await emitter.send_to_user(on_restarted, "before", 1)
        await near.wait_for("before")

        restarted.stop()
        await emitter.send_to_user(elsewhere, "during", 2)  # the other shards serve on
        assert await far.wait_for("during") == 2
        restarted.start()
        await asyncio.to_thread(own_redis_cluster.wait_healthy)  # back: the master serves its slots again
        attempts = await send_until_delivered(emitter, on_restarted, near, time.monotonic() + RESUME_DEADLINE)

    assert attempts >= 1
    assert near.disconnects == [] and far.disconnects == []  # clients never noticed


async def test_a_signed_queue_on_a_cluster_checks_the_key_and_delivers(
        redis_cluster: RedisClusterServers, start_cluster: Callable[..., Cluster], make_client: MakeClient) -> None:
    cluster = start_cluster(2, redis=redis_cluster.nodes[0], QUEUE_SIGNING_KEY=SIGNING_KEY, ALLOW_UNSIGNED_QUEUE="")
    user = unique_user()
    client = await connected(make_client, cluster.replicas[0], user)

    async with Emitter(redis_cluster.url, channel=cluster.channel, signing_key=SIGNING_KEY) as emitter:
        await emitter.send_to_user(user, "signed", {"ok": True})
        await emitter.broadcast("notice", {"all": True})

    assert await client.wait_for("signed") == {"ok": True}
    assert await client.wait_for("notice") == {"all": True}


async def test_send_many_on_a_cluster_reports_each_message(
        redis_cluster: RedisClusterServers, start_cluster: Callable[..., Cluster], make_client: MakeClient) -> None:
    cluster = start_cluster(2, redis=redis_cluster.nodes[0])
    users = [unique_user() for _ in range(6)]
    clients = [await connected(make_client, cluster.replicas[i % 2], user) for i, user in enumerate(users)]

    async with Emitter(redis_cluster.url, channel=cluster.channel) as emitter:
        outcomes = await emitter.send_many([(user, "step", {"for": user}) for user in [*users, unique_user()]])

    assert [o.sent for o in outcomes] == [True] * 6 + [False]
    for user, client in zip(users, clients, strict=True):
        assert await client.wait_for("step") == {"for": user}
