"""Three real replicas behind a real Nginx running the production site (nginx/conf.d).

Clients leave from addresses of different /24 networks of the loopback range
(127.0.N.1), so Nginx's ip_hash sees them as clients of different networks.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import socketio

from cluster import LocalCluster
from cluster.processes import RedisServer, http_status
from kindmap_realtime.emitter import Emitter
from kindmap_realtime.errors import ErrorCode
from tests.helpers.clients import MakeClient, RecordingClient, make_token, session_from
from tests.helpers.cluster import API_KEY, local_cluster_east_of_utc, new_channel, replica_env, unique_user
from tests.helpers.http import get_json, post_emit
from tests.helpers.node_client import StartNodeClient
from tests.helpers.payloads import assert_error_payload
from tests.helpers.waiting import eventually

NETWORKS = [f"127.0.{n}.1" for n in range(1, 13)]
FAST_RECONNECT: dict[str, Any] = {"reconnection": True, "reconnection_delay": 0.1, "reconnection_delay_max": 0.5}


@pytest.fixture
def own_nginx_cluster(redis_server: RedisServer) -> Iterator[LocalCluster]:
    """A cluster of one test's own, which it may break."""
    with local_cluster_east_of_utc(replicas=3, env=replica_env(redis_server.url, new_channel()),
                                   redis_url=redis_server.url) as cluster:
        yield cluster


async def connect_from(make_client: MakeClient, cluster: LocalCluster, source: str, user: str | None = None, *,
                       transports: Sequence[str] = ("polling", "websocket"), headers: dict[str, str] | None = None,
                       **options: Any) -> RecordingClient:
    client = make_client(http_session=session_from(source), **options)
    await client.connect(cluster.url, auth={"token": make_token(user or unique_user())},
                         transports=list(transports), headers=headers)
    return client


def instance_of(client: RecordingClient, connection: int = 1) -> str:
    instance_id: str = client.received("connected")[connection - 1]["instance_id"]
    return instance_id


async def place(make_client: MakeClient, cluster: LocalCluster, sources: list[str]) -> dict[str, str]:
    """The replica Nginx gives each source address, learnt by connecting once from it."""
    placed = {}
    for source in sources:
        client = await connect_from(make_client, cluster, source)
        placed[source] = instance_of(client)
        await client.disconnect()
    return placed


async def test_clients_of_different_networks_spread_over_replicas_and_keep_theirs(
        nginx_cluster: LocalCluster, make_client: MakeClient) -> None:
    placed = await place(make_client, nginx_cluster, NETWORKS)
    print("clients per replica:", dict(sorted(Counter(placed.values()).items())))
    assert len(set(placed.values())) > 1

    # A new session from the same address, and from another address of the same /24.
    for source, replica in placed.items():
        again = await connect_from(make_client, nginx_cluster, source)
        neighbour = await connect_from(make_client, nginx_cluster, source.removesuffix(".1") + ".77")
        assert (instance_of(again), instance_of(neighbour)) == (replica, replica), source


async def test_clients_reconnect_to_their_replica_after_nginx_restarts(
        own_nginx_cluster: LocalCluster, make_client: MakeClient) -> None:
    cluster = own_nginx_cluster
    clients = [await connect_from(make_client, cluster, source, **FAST_RECONNECT) for source in NETWORKS]

    await asyncio.to_thread(cluster.nginx.stop)
    await asyncio.gather(*(client.wait_for_disconnect() for client in clients))
    await asyncio.to_thread(cluster.nginx.start)

    for client in clients:
        await client.wait_for("connected", count=2, timeout=15)
        assert instance_of(client, 2) == instance_of(client, 1)


async def test_long_polling_only_client_works_end_to_end_through_nginx(
        nginx_cluster: LocalCluster, make_client: MakeClient) -> None:
    user = unique_user()
    client = await connect_from(make_client, nginx_cluster, "127.0.4.1", user, transports=["polling"])

    await client.sio.emit("ping", {"id": "p-1"})
    assert (await client.wait_for("pong"))["id"] == "p-1"
    status, _ = await post_emit(nginx_cluster.url, API_KEY,
                                {"user_id": user, "event": "arrival", "data": {"station": "Jongno 3-ga"}})
    assert status == 202
    assert await client.wait_for("arrival") == {"station": "Jongno 3-ga"}
    assert client.sio.transport() == "polling"


async def test_polling_client_upgrades_to_websocket_through_nginx(nginx_cluster: LocalCluster,
                                                                  make_client: MakeClient) -> None:
    client = await connect_from(make_client, nginx_cluster, "127.0.5.1")

    await eventually(lambda: client.sio.transport() == "websocket", what="upgrade to websocket")
    await client.sio.emit("ping", {"id": "after-upgrade"})
    assert (await client.wait_for("pong"))["id"] == "after-upgrade"


async def test_node_polling_client_works_through_nginx(nginx_cluster: LocalCluster,
                                                       node_client: StartNodeClient) -> None:
    user = unique_user()
    browser = await node_client(nginx_cluster.url, {"token": make_token(user)}, ["polling"])
    assert (await browser.wait_for_event("connected"))["user_id"] == user

    await browser.send({"emit": "ping", "data": {"id": "from-node"}})
    assert (await browser.wait_for_event("pong"))["id"] == "from-node"
    status, _ = await post_emit(nginx_cluster.url, API_KEY, {"user_id": user, "event": "arrival", "data": "Euljiro"})
    assert status == 202
    assert await browser.wait_for_event("arrival") == "Euljiro"


async def test_backend_emit_reaches_users_on_every_replica_through_nginx(
        nginx_cluster: LocalCluster, make_client: MakeClient) -> None:
    users = [unique_user() for _ in NETWORKS]
    clients = [await connect_from(make_client, nginx_cluster, source, user)
               for source, user in zip(NETWORKS, users, strict=True)]
    assert {instance_of(client) for client in clients} == {r.instance_id for r in nginx_cluster.replicas}

    # Half through the HTTP API behind Nginx (it lands on one replica), half through Redis.
    for user in users[::2]:
        status, _ = await post_emit(nginx_cluster.url, API_KEY, {"user_id": user, "event": "alert", "data": user})
        assert status == 202
    async with Emitter(nginx_cluster.redis_url, channel=nginx_cluster.env["SOCKETIO_CHANNEL"]) as emitter:
        for user in users[1::2]:
            await emitter.send_to_user(user, "alert", user)

    for user, client in zip(users, clients, strict=True):
        assert await client.wait_for("alert") == user
        assert client.received("alert") == [user]


async def test_forwarded_client_address_is_believed_only_from_a_trusted_proxy(
        nginx_cluster: LocalCluster, make_client: MakeClient) -> None:
    proxy = "127.0.0.1"  # trusted in nginx/snippets/trusted_proxies.conf
    placed = await place(make_client, nginx_cluster, [proxy, *NETWORKS])
    # A forwarded address whose replica is not the proxy's own, and an untrusted client
    # address whose replica is not the forwarded one's: each header is seen to count or not.
    forwarded = next(a for a in NETWORKS if placed[a] != placed[proxy])
    untrusted = next(a for a in NETWORKS if placed[a] != placed[forwarded])
    header = {"X-Forwarded-For": forwarded}

    via_proxy = await connect_from(make_client, nginx_cluster, proxy, headers=header)
    spoofing = await connect_from(make_client, nginx_cluster, untrusted, headers=header)

    assert instance_of(via_proxy) == placed[forwarded]
    assert instance_of(spoofing) == placed[untrusted]


async def test_browser_origin_is_accepted_through_nginx_also_behind_a_tls_proxy(
        nginx_cluster: LocalCluster, make_client: MakeClient) -> None:
    """The replicas compare Origin with Host and the scheme: Nginx must pass both on."""
    https_origin = nginx_cluster.url.replace("http://", "https://")

    browser = await connect_from(make_client, nginx_cluster, "127.0.6.1", headers={"Origin": nginx_cluster.url})
    behind_tls = await connect_from(make_client, nginx_cluster, "127.0.0.1",
                                    headers={"Origin": https_origin, "X-Forwarded-Proto": "https"})

    await eventually(lambda: browser.sio.transport() == "websocket", what="upgrade to websocket")
    assert behind_tls.received("connected")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await connect_from(make_client, nginx_cluster, "127.0.6.1", headers={"Origin": "http://elsewhere.example"})


async def test_request_bodies_larger_than_nginx_buffers_reach_the_replicas(
        nginx_cluster: LocalCluster, make_client: MakeClient) -> None:
    user = unique_user()
    client = await connect_from(make_client, nginx_cluster, "127.0.7.1", user)
    data = "elevator out of service " * 1000  # 24 KB: over Nginx's 16 KB, it goes to a temporary file

    status, _ = await post_emit(nginx_cluster.url, API_KEY, {"user_id": user, "event": "notice", "data": data})

    assert status == 202
    assert await client.wait_for("notice") == data


async def test_nginx_routes_health_and_answers_metrics_with_an_error_payload(nginx_cluster: LocalCluster) -> None:
    assert http_status(nginx_cluster.url + "/healthz") == 200
    assert http_status(nginx_cluster.url + "/readyz") == 200
    assert http_status(nginx_cluster.replicas[0].url + "/metrics") == 200

    status, body = await get_json(nginx_cluster.url + "/metrics")

    assert status == 404
    assert_error_payload(body, "NOT_FOUND")  # also: its timestamp is UTC


async def test_clients_of_a_killed_replica_reconnect_through_nginx_to_a_survivor(
        own_nginx_cluster: LocalCluster, make_client: MakeClient) -> None:
    cluster = own_nginx_cluster
    users = [unique_user() for _ in NETWORKS]
    clients = [await connect_from(make_client, cluster, source, user, **FAST_RECONNECT)
               for source, user in zip(NETWORKS, users, strict=True)]
    victim = instance_of(clients[0])
    orphaned = [(u, c) for u, c in zip(users, clients, strict=True) if instance_of(c) == victim]
    others = [c for c in clients if instance_of(c) != victim]
    assert others, "every client is on one replica; the test needs some elsewhere"

    next(r for r in cluster.replicas if r.instance_id == victim).kill()

    for _, client in orphaned:
        await client.wait_for("connected", count=2, timeout=15)
        assert instance_of(client, 2) != victim
    async with Emitter(cluster.redis_url, channel=cluster.env["SOCKETIO_CHANNEL"]) as emitter:
        for user, _ in orphaned:
            await emitter.send_to_user(user, "elevator_status", {"out_of_service": True})
    for _, client in orphaned:
        assert await client.wait_for("elevator_status") == {"out_of_service": True}
    assert all(not client.disconnects for client in others)

    for replica in cluster.replicas:
        replica.kill()
    status, body = await get_json(cluster.url + "/healthz")
    assert status == 503
    assert_error_payload(body, ErrorCode.REPLICA_UNAVAILABLE)  # also: its timestamp is UTC


async def test_a_token_sent_in_the_query_string_is_not_written_to_the_access_log(
        nginx_cluster: LocalCluster, make_client: MakeClient) -> None:
    token = make_token(unique_user())
    client = make_client()
    await client.connect(f"{nginx_cluster.url}/?token={token}", transports=["polling"])
    access_log = nginx_cluster.nginx.log_path.parent / "access.log"

    await eventually(lambda: "/socket.io/" in access_log.read_text(), what="the handshake in the access log")

    assert token not in access_log.read_text()
    assert token.split(".")[2] not in access_log.read_text()
