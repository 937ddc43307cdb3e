"""Delivery across three real replica processes sharing a real Redis."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

import pytest
from redis import asyncio as aioredis

from cluster.processes import REPO_ROOT
from kindmap_realtime.emitter import Emitter
from kindmap_realtime.errors import ErrorCode, UserNotConnectedError
from tests.helpers.clients import MakeClient, connected, make_token
from tests.helpers.cluster import API_KEY, Cluster, unique_user
from tests.helpers.http import metric, post_emit
from tests.helpers.inboxes import inject, record_until
from tests.helpers.node_client import StartNodeClient
from tests.helpers.waiting import eventually

# The module's cluster runs an unsigned queue (tests.helpers.cluster.replica_env); so does the CLI.
UNSIGNED_CLI_ENV = {**os.environ, "ALLOW_UNSIGNED_QUEUE": "true"}


async def test_backend_emit_reaches_a_user_on_each_replica(cluster: Cluster, make_client: MakeClient) -> None:
    users = [unique_user() for _ in cluster.replicas]
    clients = [await connected(make_client, r, u) for r, u in zip(cluster.replicas, users, strict=True)]
    assert [c.received("connected")[0]["instance_id"] for c in clients] == ["replica-1", "replica-2", "replica-3"]

    async with Emitter(cluster.redis_url, channel=cluster.channel) as emitter:
        for user in users:
            await emitter.send_to_user(user, "route_calculated", {"for": user, "text": "환승 2호선"})

    for user, client in zip(users, clients, strict=True):
        assert await client.wait_for("route_calculated") == {"for": user, "text": "환승 2호선"}


async def test_node_client_on_one_replica_gets_emit_made_through_another(
        cluster: Cluster, node_client: StartNodeClient) -> None:
    user = unique_user()
    browser = await node_client(cluster.replicas[2].url, {"token": make_token(user)})
    connected = await browser.wait_for_event("connected")
    assert connected["instance_id"] == "replica-3" and connected["user_id"] == user

    status, body = await post_emit(cluster.replicas[0].url, API_KEY,
                                   {"user_id": user, "event": "elevator_status", "data": {"out_of_service": True}})

    assert (status, body["status"]) == (202, "sent")
    assert await browser.wait_for_event("elevator_status") == {"out_of_service": True}


async def test_user_with_sockets_on_two_replicas_gets_each_message_once_on_both(
        cluster: Cluster, make_client: MakeClient, node_client: StartNodeClient) -> None:
    user = unique_user()
    phone = await connected(make_client, cluster.replicas[0], user)
    browser = await node_client(cluster.replicas[1].url, {"token": make_token(user)})
    await browser.wait_for_event("connected")

    async with Emitter(cluster.redis_url, channel=cluster.channel) as emitter:
        await emitter.send_to_user(user, "navigation_update", {"step": 1})
        await emitter.send_to_user(user, "marker", {"last": True})

    await phone.wait_for("marker")
    await browser.wait_for_event("marker")
    assert phone.received("navigation_update") == [{"step": 1}]
    assert browser.events("navigation_update") == [{"step": 1}]


async def test_message_for_user_connected_nowhere_is_refused_counted_and_never_sent(
        cluster: Cluster, make_client: MakeClient) -> None:
    if cluster.redis_mode == "redis-cluster":
        pytest.skip("watches and writes the replicas' inboxes, which exist on one Redis only")
    ghost, present = unique_user("ghost"), unique_user()
    client = await connected(make_client, cluster.replicas[1], present)
    redis = aioredis.Redis.from_url(cluster.redis_url)
    before = await metric(cluster.replicas[0].url, "kindmap_messages_dropped_total", {"reason": "user_not_connected"})
    answers: list[tuple[int, Any]] = []

    async def send() -> None:
        answers.append(await post_emit(cluster.replicas[0].url, API_KEY, {"user_id": ghost, "event": "arrival"}))
        async with Emitter(cluster.redis_url, channel=cluster.channel) as emitter:
            with pytest.raises(UserNotConnectedError):
                await emitter.send_to_user(ghost, "arrival", {})
            await emitter.send_to_user(present, "marker", {})

    try:
        appended = await record_until(redis, cluster.channel, send, lambda data: b'"marker"' in data)
        await client.wait_for("marker")
        seen = [json.loads(data) for data in appended]
    finally:
        await redis.aclose()
    [(status, body)] = answers

    assert (status, body["code"]) == (404, ErrorCode.USER_NOT_CONNECTED.value)
    after = await metric(cluster.replicas[0].url, "kindmap_messages_dropped_total", {"reason": "user_not_connected"})
    assert after == before + 1
    assert [(m["event"], m["room"]) for m in seen] == [("marker", f"user:{present}")]


def test_emit_cli_exits_zero_when_sent_and_three_for_a_user_connected_nowhere(cluster: Cluster) -> None:
    def cli(user: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kindmap_realtime.cli", "--user", user, "--event", "arrival",
             "--data", '{"station": "시청"}', "--redis-url", cluster.redis_url, "--channel", cluster.channel],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=30, env=UNSIGNED_CLI_ENV)

    result = cli(unique_user("ghost"))
    assert result.returncode == 3
    assert "not connected" in result.stderr and len(result.stderr.strip().splitlines()) == 1


async def test_emit_cli_delivers_to_a_connected_user(cluster: Cluster, make_client: MakeClient) -> None:
    user = unique_user()
    client = await connected(make_client, cluster.replicas[2], user)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kindmap_realtime.cli", "--user", user, "--event", "arrival",
        "--data", '{"station": "시청"}', "--redis-url", cluster.redis_url, "--channel", cluster.channel,
        cwd=REPO_ROOT, env=UNSIGNED_CLI_ENV)
    assert await process.wait() == 0
    assert await client.wait_for("arrival") == {"station": "시청"}


async def test_broadcast_reaches_every_replica(cluster: Cluster, make_client: MakeClient) -> None:
    clients = [await connected(make_client, r, unique_user()) for r in cluster.replicas]
    async with Emitter(cluster.redis_url, channel=cluster.channel) as emitter:
        await emitter.broadcast("service_alert", {"line": 2})
    for client in clients:
        assert await client.wait_for("service_alert") == {"line": 2}


async def test_emitter_disconnect_user_disconnects_their_sockets_on_every_replica(
        cluster: Cluster, make_client: MakeClient) -> None:
    user, bystander = unique_user(), unique_user()
    sockets = [await connected(make_client, r, user) for r in cluster.replicas]
    other = await connected(make_client, cluster.replicas[0], bystander)

    async with Emitter(cluster.redis_url, channel=cluster.channel) as emitter:
        await emitter.disconnect_user(user)
        for client in sockets:
            await client.wait_for_disconnect()
        await emitter.send_to_user(bystander, "marker", {})
        await other.wait_for("marker")

        async def refused() -> bool:
            """A replica withdraws a socket's presence after the client has seen it go."""
            try:
                await emitter.send_to_user(user, "late", {})
            except UserNotConnectedError:
                return True
            return False

        await eventually(refused, what="every replica to withdraw the user's presence")
    assert other.disconnects == []


@pytest.mark.parametrize("auth, code", [
    ({}, "AUTH_REQUIRED"),
    ({"token": "not-a-jwt"}, "INVALID_TOKEN"),
    ({"token": make_token("mallory", secret="a-different-secret-0123456789abcdef")}, "INVALID_TOKEN"),
    ({"token": make_token("late", expires_in=-10)}, "TOKEN_EXPIRED"),
    ({"user_id": "claimed"}, "AUTH_REQUIRED"),
])
async def test_bad_handshake_is_refused_with_the_error_schema(cluster: Cluster, node_client: StartNodeClient,
                                                              auth: dict[str, Any], code: str) -> None:
    browser = await node_client(cluster.replicas[0].url, auth)
    await browser.wait_for(lambda records: any(r["kind"] == "connect_error" for r in records), what="connect_error")
    error = next(r for r in browser.records if r["kind"] == "connect_error")
    assert error["data"]["type"] == "error" and error["data"]["code"] == code
    assert error["data"]["timestamp"].endswith("+00:00")
    assert not any(r["kind"] == "connect" for r in browser.records)


async def test_forged_queue_messages_are_dropped_and_counted_by_every_replica(
        cluster: Cluster, make_client: MakeClient) -> None:
    if cluster.redis_mode == "redis-cluster":
        pytest.skip("watches and writes the replicas' inboxes, which exist on one Redis only")
    user = unique_user()
    client = await connected(make_client, cluster.replicas[1], user)
    before = [await metric(r.url, "kindmap_messages_dropped_total", {"reason": "invalid_envelope"})
              for r in cluster.replicas]
    redis = aioredis.Redis.from_url(cluster.redis_url)
    try:
        forged = {"method": "emit", "event": "fake", "data": "not a list", "namespace": "/", "host_id": "x",
                  "room": f"user:{user}"}
        assert await inject(redis, cluster.channel, json.dumps(forged)) == 3
    finally:
        await redis.aclose()
    async with Emitter(cluster.redis_url, channel=cluster.channel) as emitter:
        await emitter.send_to_user(user, "marker", {})
    await client.wait_for("marker")

    for replica, count in zip(cluster.replicas, before, strict=True):
        assert await metric(replica.url, "kindmap_messages_dropped_total", {"reason": "invalid_envelope"}) == count + 1
    assert client.received("fake") == []


async def test_long_polling_client_connects_and_receives_cross_replica_messages(
        cluster: Cluster, node_client: StartNodeClient) -> None:
    user = unique_user()
    browser = await node_client(cluster.replicas[0].url, {"token": make_token(user)}, transports=["polling"])
    await browser.wait_for_event("connected")
    status, _ = await post_emit(cluster.replicas[2].url, API_KEY, {"user_id": user, "event": "transfer", "data": 1})
    assert status == 202
    assert await browser.wait_for_event("transfer") == 1
