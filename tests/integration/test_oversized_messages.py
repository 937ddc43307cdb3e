"""Queue messages over MAX_QUEUE_MESSAGE_BYTES, against replicas on a Redis with the production
pub/sub buffer limit (32 MB hard, 8 MB for 60 s): refused before Redis, which would otherwise
cut every replica's subscription rather than deliver them."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

import pytest

from cluster.processes import REPO_ROOT
from kindmap_realtime.emitter import Emitter
from kindmap_realtime.errors import ErrorCode, PayloadTooLargeError
from tests.helpers.clients import MakeClient, connected
from tests.helpers.cluster import API_KEY, Cluster, unique_user
from tests.helpers.http import metric, post_emit

FORTY_MB = 40 * 1024 * 1024


async def assert_every_replica_still_subscribed(cluster: Cluster) -> None:
    for replica in cluster.replicas:
        assert await metric(replica.url, "kindmap_queue_subscribed") == 1
        assert await metric(replica.url, "kindmap_queue_reconnects_total") == 0


async def test_a_40_mb_send_is_refused_and_every_replica_stays_subscribed_and_delivering(
        start_cluster: Callable[..., Cluster], make_client: MakeClient) -> None:
    cluster = start_cluster(2)
    user = unique_user()
    client = await connected(make_client, cluster.replicas[1], user)

    async with Emitter(cluster.redis_url, channel=cluster.channel) as emitter:
        with pytest.raises(PayloadTooLargeError) as refused:
            await emitter.send_to_user(user, "route", "x" * FORTY_MB)
        await emitter.send_to_user(user, "after", {"ok": True})

    assert refused.value.code is ErrorCode.PAYLOAD_TOO_LARGE
    assert await client.wait_for("after") == {"ok": True}
    assert client.received("route") == []
    await assert_every_replica_still_subscribed(cluster)


@pytest.mark.parametrize("limit", [
    pytest.param({"env": {"MAX_QUEUE_MESSAGE_BYTES": "1024"}, "args": []}, id="environment"),
    pytest.param({"env": {}, "args": ["--max-message-bytes", "1024"]}, id="flag"),
])
async def test_emit_cli_refuses_a_message_over_the_limit_with_exit_2(start_cluster: Callable[..., Cluster],
                                                                     make_client: MakeClient,
                                                                     limit: dict[str, Any]) -> None:
    cluster = start_cluster(2)
    user = unique_user()
    client = await connected(make_client, cluster.replicas[1], user)

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kindmap_realtime.cli", "--user", user, "--event", "route",
        "--data", '"' + "x" * 2048 + '"', "--redis-url", cluster.redis_url, "--channel", cluster.channel,
        *limit["args"],
        cwd=REPO_ROOT, env={"PATH": "", "ALLOW_UNSIGNED_QUEUE": "true", **limit["env"]}, stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(process.communicate(), 30)

    assert process.returncode == 2
    assert len(stderr.splitlines()) == 1 and b"MAX_QUEUE_MESSAGE_BYTES" in stderr
    async with Emitter(cluster.redis_url, channel=cluster.channel) as emitter:
        await emitter.send_to_user(user, "after", 1)
    assert await client.wait_for("after") == 1
    assert client.received("route") == []


async def test_http_emit_over_the_replicas_queue_limit_gets_413_and_later_ones_are_delivered(
        start_cluster: Callable[..., Cluster], make_client: MakeClient) -> None:
    cluster = start_cluster(2, MAX_QUEUE_MESSAGE_BYTES="2048")
    user = unique_user()
    client = await connected(make_client, cluster.replicas[1], user)

    status, body = await post_emit(cluster.replicas[0].url, API_KEY, {"user_id": user, "event": "route",
                                                                      "data": "x" * 4096})
    after, _ = await post_emit(cluster.replicas[0].url, API_KEY, {"user_id": user, "event": "after", "data": 1})

    assert (status, body["code"]) == (413, "PAYLOAD_TOO_LARGE")
    assert after == 202
    assert await client.wait_for("after") == 1
    assert client.received("route") == []
    assert await metric(cluster.replicas[0].url, "kindmap_messages_dropped_total", {"reason": "too_large"}) == 1
    await assert_every_replica_still_subscribed(cluster)
