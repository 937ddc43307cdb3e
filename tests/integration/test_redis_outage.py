"""Redis stopped and restarted under running replicas (the test owns that redis-server)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from cluster.processes import RedisServer, Replica, http_status, wait_until
from kindmap_realtime.emitter import Emitter
from kindmap_realtime.errors import PublishError, QueueUnavailableError, RealtimeError
from tests.helpers.clients import MakeClient, RecordingClient, connected
from tests.helpers.cluster import API_KEY, Cluster, replica_env, unique_user
from tests.helpers.http import get_json, metric, post_emit
from tests.helpers.proxy import SilencingProxy

RESUME_DEADLINE = 2.0  # the contract: delivery resumes within 2 s of Redis coming back


def status_is(url: str, expected: int) -> bool:
    return http_status(url) == expected


async def send_until_delivered(cluster: Cluster, user: str, client: RecordingClient, deadline: float) -> Any:
    """Keep trying one send a little while Redis comes back; return when it arrives."""
    attempt = 0
    while time.monotonic() < deadline:
        attempt += 1
        try:
            async with Emitter(cluster.redis_url, channel=cluster.channel) as emitter:
                await emitter.send_to_user(user, "resumed", {"attempt": attempt})
            return await client.wait_for("resumed", timeout=max(0.1, deadline - time.monotonic()))
        except RealtimeError:
            await asyncio.sleep(0.05)  # retry pacing, not synchronisation: Redis is coming back
    raise AssertionError(f"no delivery within {RESUME_DEADLINE}s of Redis restarting")


async def test_redis_outage_is_survived_and_delivery_resumes_within_two_seconds(
        own_redis: RedisServer, start_cluster: Callable[..., Cluster], make_client: MakeClient) -> None:
    cluster = start_cluster(2, redis=own_redis)
    first, second = cluster.replicas
    user = unique_user()
    client = await connected(make_client, second, user)
    emitter = Emitter(cluster.redis_url, channel=cluster.channel)
    await emitter.connect()
    try:
        await emitter.send_to_user(user, "before", 1)
        await client.wait_for("before")

        own_redis.stop()
        for replica in cluster.replicas:
            wait_until(partial(status_is, replica.url + "/readyz", 503), timeout=5, what="readyz 503")
        status, body = await get_json(first.url + "/readyz")
        assert body["code"] == "QUEUE_UNAVAILABLE"
        with pytest.raises((PublishError, QueueUnavailableError)):
            await emitter.send_to_user(user, "during", 2)
        with pytest.raises(QueueUnavailableError):
            await Emitter(cluster.redis_url, channel=cluster.channel).connect()
        status, body = await post_emit(first.url, API_KEY, {"user_id": user, "event": "during", "data": 3})
        assert (status, body["code"]) == (503, "QUEUE_UNAVAILABLE")
        assert client.disconnects == []  # clients stay connected to their replica

        own_redis.start()
        deadline = time.monotonic() + RESUME_DEADLINE
        resumed = await send_until_delivered(cluster, user, client, deadline)
    finally:
        await emitter.close()

    assert resumed["attempt"] >= 1
    assert client.received("during") == []
    for replica in cluster.replicas:
        assert http_status(replica.url + "/readyz") == 200
        assert await metric(replica.url, "kindmap_queue_reconnects_total") == 1


SILENT_SENDS = 20


async def test_messages_sent_while_the_reading_connection_is_silent_all_arrive_in_order(
        redis_server: RedisServer, tmp_path: Path, make_client: MakeClient) -> None:
    """A connection that went silent (frozen, or dead without closing) is replaced, and the
    replica reads on from its last position: what was sent meanwhile arrives, late, not lost."""
    proxy = SilencingProxy(redis_server.port)
    proxy.start()
    channel = f"kindmap_it_{unique_user('silent')}"
    replica = Replica(instance_id="behind-proxy", env=replica_env(proxy.url, channel), log_dir=tmp_path)
    try:
        replica.start()
        user = unique_user()
        client = await connected(make_client, replica, user)
        async with Emitter(redis_server.url, channel=channel) as emitter:  # straight to Redis, not via the proxy
            await emitter.send_to_user(user, "before", 1)
            await client.wait_for("before")

            assert proxy.silence_open_connections() >= 1
            for n in range(SILENT_SENDS):
                await emitter.send_to_user(user, "meanwhile", n)  # accepted: the user is still connected
            await client.wait_for("meanwhile", count=SILENT_SENDS, timeout=10)

        assert client.received("meanwhile") == list(range(SILENT_SENDS))
        assert await metric(replica.url, "kindmap_queue_reconnects_total") == 1
        assert client.disconnects == []
    finally:
        replica.stop()
        proxy.close()
    assert "queue connection lost" in replica.log()


# Down this long, a backoff doubling from 50 ms without a low cap (stock: 60 s) sleeps
# from about 3.2 s to 6.4 s after the loss: deaf for seconds after Redis is back.
LONG_OUTAGE = 4.0
RESUBSCRIBE_DEADLINE = 1.5  # RETRY_MAX (0.5 s), and a margin for a loaded machine


async def test_replica_resubscribes_promptly_after_a_long_outage(own_redis: RedisServer,
                                                                 start_cluster: Callable[..., Cluster]) -> None:
    cluster = start_cluster(1, redis=own_redis)
    replica = cluster.replicas[0]
    own_redis.stop()
    lost_at = time.monotonic()
    wait_until(lambda: http_status(replica.url + "/readyz") == 503, timeout=5, what="readyz 503")
    await asyncio.sleep(max(0.0, lost_at + LONG_OUTAGE - time.monotonic()))  # the outage itself

    own_redis.start()

    wait_until(lambda: http_status(replica.url + "/readyz", timeout=0.2) == 200, timeout=RESUBSCRIBE_DEADLINE,
               what="the replica subscribed again", interval=0.01)
