"""Hostile clients against real replica processes sharing a real Redis.

The attacker is a raw Engine.IO client (tests/helpers/raw_client.py); the people it
aims at are real python-socketio and Node socket.io-client sockets on the same and
on another replica. To show that nothing reached them, a later broadcast is
awaited first: anything forged before it would have arrived before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from kindmap_realtime.emitter import Emitter
from kindmap_realtime.errors import UserNotConnectedError
from tests.helpers.clients import MakeClient, connected, make_token
from tests.helpers.cluster import Cluster, unique_user
from tests.helpers.http import metric
from tests.helpers.node_client import StartNodeClient
from tests.helpers.payloads import assert_error_payload
from tests.helpers.raw_client import OpenRaw
from tests.helpers.raw_engineio import NonReadingClient, OpenStubborn


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_event_named_star_reaches_no_other_socket_on_any_replica(
        start_cluster: Callable[..., Cluster], make_client: MakeClient, open_raw: OpenRaw, transport: str) -> None:
    cluster = start_cluster(2)
    bob_id = unique_user("bob")
    bob = await connected(make_client, cluster.replicas[1], bob_id)
    carol = await connected(make_client, cluster.replicas[0], unique_user("carol"))
    attacker = await open_raw(cluster.replicas[0].url, transport=transport)
    assert (await attacker.connect({"token": make_token(unique_user("mallory"))})).startswith("0")

    await attacker.send(f'2["*","user:{bob_id}"]', '2["*",null]', '2["ping"]')
    await attacker.wait_for(lambda: attacker.events("pong"), what="pong")
    async with Emitter(cluster.redis_url, channel=cluster.channel) as emitter:
        await emitter.broadcast("marker", {"after": "the attack"})
    await bob.wait_for("marker")
    await carol.wait_for("marker")

    assert bob.received("error") == [] and carol.received("error") == []
    assert [e["code"] for e in attacker.errors()] == ["UNKNOWN_EVENT", "UNKNOWN_EVENT"]


async def test_browser_client_sees_connect_before_connected(start_cluster: Callable[..., Cluster],
                                                            node_client: StartNodeClient) -> None:
    cluster = start_cluster(1)
    browser = await node_client(cluster.replicas[0].url, {"token": make_token(unique_user())})

    await browser.wait_for_event("connected")

    kinds = [r["kind"] if r["kind"] != "event" else r["event"] for r in browser.records]
    assert kinds.index("connect") < kinds.index("connected")


async def test_browser_client_on_an_unknown_namespace_gets_connect_error_with_an_error_payload(
        start_cluster: Callable[..., Cluster], node_client: StartNodeClient) -> None:
    cluster = start_cluster(1)
    browser = await node_client(f"{cluster.replicas[0].url}/admin", {"token": make_token(unique_user())})

    await browser.wait_for(lambda records: any(r["kind"] == "connect_error" for r in records), what="connect_error")

    error = next(r for r in browser.records if r["kind"] == "connect_error")
    assert_error_payload(error["data"], "NOT_FOUND")
    assert "/admin" in error["data"]["message"]


async def test_a_flooding_client_that_never_reads_is_cut_off_after_its_goodbye(
        start_cluster: Callable[..., Cluster]) -> None:
    """A closed abuser that does not answer the WebSocket close would otherwise keep its
    connection (and the replica reading its flood) until aiohttp's close timeout."""
    [replica] = start_cluster(1, RATE_LIMIT_EVENTS_PER_SECOND="0.1", RATE_LIMIT_BURST="2",
                              RATE_LIMIT_STRIKES="1").replicas
    flooder = NonReadingClient(replica.url)
    try:
        await asyncio.to_thread(flooder.connect, {"token": make_token(unique_user())})
        for _ in range(5):
            await asyncio.to_thread(flooder.send, '2["ping"]')

        assert await asyncio.to_thread(flooder.closed_by_server)
    finally:
        flooder.close()


# Sockets the server disconnects, held by a client that keeps answering pings: python-socketio's
# disconnect alone would leave its Engine.IO session and TCP connection open for as long as it likes.


async def test_a_kicked_socket_that_keeps_answering_pings_loses_its_session_and_connection(
        start_cluster: Callable[..., Cluster], open_stubborn: OpenStubborn) -> None:
    cluster = start_cluster(1)
    [replica] = cluster.replicas
    user = unique_user()
    client = await open_stubborn(replica.url, {"token": make_token(user)})

    async with Emitter(cluster.redis_url, channel=cluster.channel) as emitter:
        await emitter.disconnect_user(user)

        await client.wait_hung_up()
        assert client.received[-2:] == ["41", "1"]  # the DISCONNECT, then Engine.IO's CLOSE
        assert await metric(replica.url, "kindmap_engineio_sessions") == 0
        with pytest.raises(UserNotConnectedError):  # its recoverable session ended, not kept
            await emitter.send_to_user(user, "step", {})


async def test_a_replaced_socket_that_keeps_answering_pings_loses_its_session_and_connection(
        start_cluster: Callable[..., Cluster], open_stubborn: OpenStubborn, make_client: MakeClient) -> None:
    cluster = start_cluster(2, DUPLICATE_CONNECTION_POLICY="replace")
    user = unique_user()
    old = await open_stubborn(cluster.replicas[0].url, {"token": make_token(user)})

    await connected(make_client, cluster.replicas[1], user)

    await old.wait_hung_up()
    assert old.errors() == ["DUPLICATE_CONNECTION"]
    assert await metric(cluster.replicas[0].url, "kindmap_engineio_sessions") == 0


async def test_a_rate_limited_socket_that_keeps_answering_pings_loses_its_session_and_connection(
        start_cluster: Callable[..., Cluster], open_stubborn: OpenStubborn) -> None:
    [replica] = start_cluster(1, RATE_LIMIT_EVENTS_PER_SECOND="0.1", RATE_LIMIT_BURST="2",
                              RATE_LIMIT_STRIKES="1").replicas
    client = await open_stubborn(replica.url, {"token": make_token(unique_user())})

    for _ in range(5):
        client.send('2["ping"]')

    await client.wait_hung_up()
    assert client.errors() == ["RATE_LIMITED"]
    assert await metric(replica.url, "kindmap_engineio_sessions") == 0
