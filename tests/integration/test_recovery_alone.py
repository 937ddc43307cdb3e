"""A replica without Redis (``make dev``'s embedded default) keeps Redis mode's promises: a real
socket.io-client that lost its connection recovers its session and the messages sent meanwhile,
the HTTP emit API answers "stored" for it, and refusals are those of Redis mode.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import socketio

from cluster import ReplicaSet
from cluster.processes import Replica
from kindmap_realtime.errors import ErrorCode
from tests.helpers.clients import MakeClient, connected, make_token
from tests.helpers.cluster import API_KEY, new_channel, replica_env, unique_user
from tests.helpers.http import metric, post_emit
from tests.helpers.node_client import NodeClient, StartNodeClient
from tests.helpers.waiting import eventually


@pytest.fixture
async def alone(tmp_path: Path) -> AsyncIterator[Replica]:
    """One replica process with no ``REDIS_URL``, each user at most 2 sockets."""
    async with ReplicaSet(1, env=replica_env("", new_channel(), MAX_SOCKETS_PER_USER="2"),
                          log_dir=tmp_path) as replicas:
        yield replicas.replicas[0]


def connects(client: NodeClient) -> list[dict[str, object]]:
    return [r for r in client.records if r["kind"] == "connect"]


def offline(replica: Replica) -> Callable[[], Awaitable[bool]]:
    """Whether the replica holds no socket any more (it withdrew the last one's presence first)."""
    async def no_connection() -> bool:
        return await metric(replica.url, "kindmap_connections") == 0
    return no_connection


async def emit(replica: Replica, user: str, n: int) -> tuple[int, str]:
    """``POST /api/v1/emit`` of step ``n``: its status and what it says (``sent``, ``stored`` or the error code)."""
    status, body = await post_emit(replica.url, API_KEY, {"user_id": user, "event": "step", "data": {"n": n}})
    return status, body.get("status", body.get("code"))


async def test_a_client_of_a_replica_alone_recovers_what_was_stored_while_it_was_offline(
        alone: Replica, node_client: StartNodeClient) -> None:
    user = unique_user("rider")
    client = await node_client(alone.url, {"token": make_token(user)})
    welcome = await client.wait_for_event("connected")
    assert await emit(alone, user, 0) == (202, "sent")
    await client.wait_for_event("step")

    await client.send({"cut": True, "stay_offline": True})
    await client.wait_for(lambda rs: any(r["kind"] == "disconnect" for r in rs), what="disconnect")
    await eventually(offline(alone), what="the replica saw the socket go")
    stored = [await emit(alone, user, n) for n in range(1, 4)]
    await client.send({"reconnect": True})
    await client.wait_for_event("connected", count=2)
    assert await emit(alone, user, 4) == (202, "sent")
    await client.wait_for_event("step", count=5)

    assert stored == [(202, "stored")] * 3
    first, again = connects(client)
    assert again["recovered"] is True and again["id"] == first["id"]
    assert (welcome["recovered"], client.events("connected")[1]["recovered"]) == (False, True)
    assert client.events("connected")[1]["replayed"] == 3
    assert [data["n"] for data in client.events("step")] == [0, 1, 2, 3, 4]  # in order, once each


async def test_a_replica_alone_refuses_as_a_replica_on_redis_does(alone: Replica, make_client: MakeClient) -> None:
    user = unique_user("rider")
    auth = {"token": make_token(user), "recovery": False}
    for _ in range(2):
        await connected(make_client, alone, user, auth=auth)
    third = make_client()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await third.connect(alone.url, auth=auth)

    refused = await third.wait_for_connect_error()
    status, answer = await emit(alone, unique_user("nobody"), 1)

    assert refused["data"]["code"] == ErrorCode.TOO_MANY_CONNECTIONS.value
    assert (status, answer) == (404, ErrorCode.USER_NOT_CONNECTED.value)
