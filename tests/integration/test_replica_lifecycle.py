"""Policies and lifecycle that need their own replicas: replace policy, SIGTERM, start-up."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from redis import asyncio as aioredis

from cluster.processes import REPO_ROOT, RedisServer, Replica
from kindmap_realtime.emitter import Emitter
from kindmap_realtime.errors import ConfigError
from kindmap_realtime.messages import envelope
from tests.helpers.clients import MakeClient, connected, make_token
from tests.helpers.cluster import Cluster, replica_env, unique_user
from tests.helpers.http import get_json, metric
from tests.helpers.inboxes import inject
from tests.helpers.node_client import StartNodeClient
from tests.helpers.waiting import eventually


async def test_replace_policy_disconnects_older_sockets_on_other_replicas(
        start_cluster: Callable[..., Cluster], make_client: MakeClient, node_client: StartNodeClient) -> None:
    cluster = start_cluster(3, DUPLICATE_CONNECTION_POLICY="replace")
    user = unique_user()
    old_phone = await connected(make_client, cluster.replicas[0], user)
    old_browser = await node_client(cluster.replicas[1].url, {"token": make_token(user)})
    await old_browser.wait_for_event("connected")
    await old_phone.wait_for("error")  # the browser replaced the phone

    new = await connected(make_client, cluster.replicas[2], user)

    notice = await old_browser.wait_for_event("error")
    assert notice["code"] == "DUPLICATE_CONNECTION"
    await old_browser.wait_for(lambda rs: any(r["kind"] == "disconnect" for r in rs), what="disconnect")
    assert next(r for r in old_browser.records if r["kind"] == "disconnect")["reason"] == "io server disconnect"
    assert old_phone.received("error")[0]["code"] == "DUPLICATE_CONNECTION"
    assert await old_phone.wait_for_disconnect() == old_phone.sio.reason.SERVER_DISCONNECT
    async with Emitter(cluster.redis_url, channel=cluster.channel) as emitter:
        await emitter.send_to_user(user, "still_here", {})
    assert await new.wait_for("still_here") == {}
    assert new.received("error") == []


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_a_replaced_browser_client_is_told_why_and_does_not_reconnect_once_its_session_is_ended(
        start_cluster: Callable[..., Cluster], make_client: MakeClient, node_client: StartNodeClient,
        transport: str) -> None:
    """The replica ends the Engine.IO session of a socket it disconnects. socket.io-client has closed
    its engine itself on "io server disconnect" (no other namespace of it is active), so it must not
    take the end of the transport for a lost connection and reconnect."""
    cluster = start_cluster(2, DUPLICATE_CONNECTION_POLICY="replace")
    old, new = cluster.replicas
    user = unique_user()
    browser = await node_client(old.url, {"token": make_token(user)}, [transport])
    await browser.wait_for_event("connected")

    await connected(make_client, new, user)

    assert (await browser.wait_for_event("error"))["code"] == "DUPLICATE_CONNECTION"

    async def session_ended() -> bool:
        return await metric(old.url, "kindmap_engineio_sessions") == 0

    await eventually(session_ended, what="the replaced socket's session ended")
    await browser.send({"state": True})
    await browser.wait_for(lambda records: records[-1]["kind"] == "state", what="its state")
    assert [r["reason"] for r in browser.records if r["kind"] == "disconnect"] == ["io server disconnect"]
    assert browser.records[-1] == {"kind": "state", "active": False, "reconnecting": False}
    assert not any(r["kind"] == "reconnect_attempt" for r in browser.records)


async def test_sigterm_drains_clients_withdraws_presence_and_exits_zero(
        start_cluster: Callable[..., Cluster], make_client: MakeClient, node_client: StartNodeClient) -> None:
    cluster = start_cluster(2)
    leaving, staying = cluster.replicas
    user = unique_user()
    client = await connected(make_client, leaving, user)
    browser = await node_client(leaving.url, {"token": make_token(user)})
    await browser.wait_for_event("connected")

    assert leaving.terminate(timeout=10) == 0

    # A dropped transport, not a server "disconnect" packet, so clients reconnect (through
    # the load balancer, to another replica); "io server disconnect" would stop them.
    # ("io server disconnect" is the JS client's name; python-socketio's are its ``reason`` values.)
    assert await client.wait_for_disconnect() == client.sio.reason.TRANSPORT_ERROR
    await browser.wait_for(lambda rs: any(r["kind"] == "reconnect_attempt" for r in rs), what="reconnect_attempt")
    assert [r["reason"] for r in browser.records if r["kind"] == "disconnect"] == ["transport close"]
    async with Emitter(cluster.redis_url, channel=cluster.channel) as emitter:
        # Presence withdrawn: not "sent"; the sessions are kept for the clients to recover elsewhere.
        assert await emitter.send_to_user(user, "late", {}) == "stored"
    assert (await get_json(staying.url + "/readyz"))[0] == 200
    assert "replica draining" in leaving.log()


async def test_sigterm_exits_at_once_while_a_websocket_is_in_mid_upgrade(start_cluster: Callable[..., Cluster]) -> None:
    """A browser that has had its ``3probe`` but not yet sent ``5`` (as happens when a
    page connects just before a restart) must not hold the replica up: without the
    drain's abort aiohttp waits SHUTDOWN_TIMEOUT for that handler, then as long again."""
    [replica] = start_cluster(1, SHUTDOWN_TIMEOUT="60").replicas
    base = f"{replica.url}/socket.io/?EIO=4"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}&transport=polling") as response:
            sid = json.loads((await response.text())[1:])["sid"]
        ws = await session.ws_connect(f"{base}&transport=websocket&sid={sid}")
        await ws.send_str("2probe")
        assert (await ws.receive()).data == "3probe"

        assert replica.terminate(timeout=20) == 0

        assert (await ws.receive()).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                             aiohttp.WSMsgType.ERROR)
    assert '"connections_aborted": 1' in replica.log()


async def test_replica_started_while_redis_is_down_becomes_ready_when_it_comes_back(
        own_redis: RedisServer, tmp_path: Path) -> None:
    own_redis.stop()
    replica = Replica(instance_id="late-redis", env=replica_env(own_redis.url, "kindmap_late"), log_dir=tmp_path)
    replica.launch()
    try:
        replica.wait_ready("/healthz")
        status, body = await get_json(replica.url + "/readyz")
        assert (status, body["code"]) == (503, "QUEUE_UNAVAILABLE")
        own_redis.start()
        replica.wait_ready("/readyz", timeout=5)
    finally:
        replica.stop()
    assert "queue unavailable at start-up" in replica.log()


async def test_signed_cluster_drops_unsigned_envelopes_and_emitters_without_the_key_refuse_to_start(
        start_cluster: Callable[..., Cluster], make_client: MakeClient) -> None:
    key = "integration-queue-signing-key-0123456789"
    cluster = start_cluster(2, QUEUE_SIGNING_KEY=key)
    user = unique_user()
    client = await connected(make_client, cluster.replicas[1], user)
    forged = {"method": "emit", "event": "forged", "data": [{}], "namespace": "/", "room": f"user:{user}",
              "host_id": "forger"}

    with pytest.raises(ConfigError, match="QUEUE_SIGNING_KEY"):
        await Emitter(cluster.redis_url, channel=cluster.channel).connect()
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kindmap_realtime.cli", "--user", user, "--event", "e", "--redis-url", cluster.redis_url,
        "--channel", cluster.channel, cwd=REPO_ROOT, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "QUEUE_SIGNING_KEY": "a-wrong-key-" + "x" * 30})
    _, stderr = await cli.communicate()
    assert cli.returncode == 2 and b"QUEUE_SIGNING_KEY" in stderr
    redis = aioredis.Redis.from_url(cluster.redis_url)
    try:
        assert await inject(redis, cluster.channel, envelope.encode(forged)) == 2
    finally:
        await redis.aclose()
    async with Emitter(cluster.redis_url, channel=cluster.channel, signing_key=key) as signed:
        await signed.send_to_user(user, "genuine", {})

    assert await client.wait_for("genuine") == {}
    assert client.received("forged") == []
    for replica in cluster.replicas:  # the forgery, and the key probe of the CLI with the wrong key
        assert await metric(replica.url, "kindmap_messages_dropped_total", {"reason": "bad_signature"}) == 2
