"""Token expiry on a real replica process, seen by the Node socket.io-client browsers use and
by a client that keeps answering pings after the server disconnected it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp
import pytest

from kindmap_realtime.emitter import Emitter
from kindmap_realtime.errors import UserNotConnectedError
from tests.helpers.clients import MakeClient, connected, make_token
from tests.helpers.cluster import Cluster, unique_user
from tests.helpers.http import metric
from tests.helpers.node_client import StartNodeClient
from tests.helpers.raw_engineio import OpenStubborn, engineio_url
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


async def test_an_expired_socket_that_keeps_answering_pings_loses_its_session_and_connection(
        start_cluster: Callable[..., Cluster], open_stubborn: OpenStubborn) -> None:
    cluster = start_cluster(1)
    [replica] = cluster.replicas
    user = unique_user()
    client = await open_stubborn(replica.url, {"token": make_token(user, expires_in=2)})

    await client.wait_hung_up()

    assert client.errors() == ["TOKEN_EXPIRED"]
    assert client.received[-3].startswith('42["error"')  # told why, then the DISCONNECT, then Engine.IO's CLOSE
    assert client.received[-2:] == ["41", "1"]
    assert await metric(replica.url, "kindmap_engineio_sessions") == 0
    async with Emitter(cluster.redis_url, channel=cluster.channel) as emitter:
        with pytest.raises(UserNotConnectedError):  # its recoverable session ended, not kept
            await emitter.send_to_user(user, "step", {})


async def test_one_users_expiring_tokens_cannot_keep_a_replica_full(
        start_cluster: Callable[..., Cluster], open_stubborn: OpenStubborn, make_client: MakeClient) -> None:
    """MAX_CONNECTIONS counts Engine.IO sessions: those of sockets the server disconnected must end."""
    [replica] = start_cluster(1, MAX_CONNECTIONS="20", MAX_SOCKETS_PER_USER="20").replicas
    token = make_token(unique_user("hog"), expires_in=3)
    hogs = await asyncio.gather(*(open_stubborn(replica.url, {"token": token}) for _ in range(20)))
    assert await handshake_status(replica.url) == 503

    await asyncio.gather(*(hog.wait_disconnected() for hog in hogs))

    async def admitted() -> bool:
        return await handshake_status(replica.url) == 200

    await eventually(admitted, what="a handshake admitted")
    rider = await connected(make_client, replica, unique_user("rider"))
    assert rider.received("connected")[0]["instance_id"]


async def handshake_status(url: str) -> int:
    """The HTTP status of a new Engine.IO handshake (long-polling)."""
    async with aiohttp.ClientSession() as session, session.get(engineio_url(url)) as response:
        return response.status


async def test_one_user_cannot_fill_a_replica_and_refused_sockets_hold_no_session(
        start_cluster: Callable[..., Cluster], open_stubborn: OpenStubborn, make_client: MakeClient) -> None:
    """Past MAX_SOCKETS_PER_USER a socket is refused, and its Engine.IO session ends with the refusal."""
    [replica] = start_cluster(1, MAX_CONNECTIONS="20", MAX_SOCKETS_PER_USER="10").replicas
    token = make_token(unique_user("hog"))
    admitted = [await open_stubborn(replica.url, {"token": token}) for _ in range(10)]
    refused = [await open_stubborn(replica.url, {"token": token}, refused=True) for _ in range(10)]

    assert {hog.refusal() for hog in refused} == {"TOO_MANY_CONNECTIONS"}
    for hog in refused:
        await hog.wait_for(lambda hog=hog: hog.ended, what="the refused session to end")  # type: ignore[misc]
    assert not any(hog.ended for hog in admitted)
    rider = await connected(make_client, replica, unique_user("rider"))
    assert rider.received("connected")[0]["instance_id"]
