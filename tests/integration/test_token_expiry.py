"""Token expiry on a real replica process, seen by the Node socket.io-client browsers use."""

from __future__ import annotations

import time
from collections.abc import Callable

from server.emitter import Emitter
from tests.helpers.clients import make_token
from tests.helpers.cluster import Cluster, unique_user
from tests.helpers.node_client import StartNodeClient
from tests.helpers.waiting import eventually

LIFETIME = 5  # seconds: long enough to start two Node clients and refresh on a loaded machine


async def test_an_expired_socket_is_closed_for_good_and_a_refreshed_one_stays(
        start_cluster: Callable[..., Cluster], node_client: StartNodeClient) -> None:
    cluster = start_cluster(1)
    url = cluster.replicas[0].url
    expiring, refreshing = unique_user(), unique_user()
    deadline = time.time() + LIFETIME
    left_alone = await node_client(url, {"token": make_token(expiring, expires_in=LIFETIME)})
    refreshed = await node_client(url, {"token": make_token(refreshing, expires_in=LIFETIME)})
    await left_alone.wait_for_event("connected")
    await refreshed.wait_for_event("connected")

    await refreshed.send({"emit": "refresh_token", "data": {"token": make_token(refreshing, expires_in=300)}})
    assert (await refreshed.wait_for_event("token_refreshed"))["expires_at"]

    assert (await left_alone.wait_for_event("error"))["code"] == "TOKEN_EXPIRED"
    await left_alone.wait_for(lambda rs: any(r["kind"] == "disconnect" for r in rs), what="disconnect")
    assert [r["reason"] for r in left_alone.records if r["kind"] == "disconnect"] == ["io server disconnect"]
    await eventually(lambda: time.time() > deadline + 1, timeout=LIFETIME + 5, what="past the first token's exp")
    async with Emitter(cluster.redis_url, channel=cluster.channel) as emitter:
        await emitter.send_to_user(refreshing, "still_here", {})
    assert await refreshed.wait_for_event("still_here") == {}
    assert refreshed.events("error") == []
    assert not any(r["kind"] == "reconnect_attempt" for r in left_alone.records)  # closed for good
