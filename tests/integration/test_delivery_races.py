"""Directed delivery while a user's sockets come and go, on real replicas and a real Redis (and Cluster).

A replica receives a user's messages only while it holds a socket of that user, so the moments
a socket joins or leaves are where a message could slip between replicas. The contract: a
message sent once a socket's connection has completed reaches it; one sent while the user is
connected nowhere is refused to the sender, or stored for a session that may still recover it
(the sender hears "stored"); none vanishes without the sender being told.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from kindmap_realtime.emitter import Emitter
from kindmap_realtime.errors import UserNotConnectedError
from tests.helpers.clients import MakeClient, RecordingClient, connected
from tests.helpers.cluster import Cluster, unique_user
from tests.helpers.http import metric
from tests.helpers.waiting import eventually

MAX_MESSAGES = 20_000  # the flow's bound, far above what a test needs
DELIVERED, DROPPED, USER_LEFT = ("kindmap_messages_delivered_total", "kindmap_messages_dropped_total",
                                 {"reason": "user_left"})


@dataclass
class Flow:
    """Messages ``{"n": 1}``, ``{"n": 2}``, ... sent to one user back to back; what became of each."""

    sent: list[int] = field(default_factory=list)
    stored: list[int] = field(default_factory=list)  # the user was offline: kept for a session to recover
    refused: list[int] = field(default_factory=list)
    issued: int = 0  # the last sequence number handed to the emitter


@asynccontextmanager
async def flowing(cluster: Cluster, user: str) -> AsyncIterator[Flow]:
    """Sends to ``user`` until the block ends; then one last message, ``{"n": "end"}``."""
    flow, stop = Flow(), asyncio.Event()

    async def send(emitter: Emitter) -> None:
        while not stop.is_set() and flow.issued < MAX_MESSAGES:
            flow.issued += 1
            seq = flow.issued
            try:
                status = await emitter.send_to_user(user, "step", {"n": seq})
                (flow.sent if status == "sent" else flow.stored).append(seq)
            except UserNotConnectedError:
                flow.refused.append(seq)

    async with Emitter(cluster.redis_url, channel=cluster.channel) as emitter:
        sender = asyncio.create_task(send(emitter))
        try:
            yield flow
        finally:
            stop.set()
            await sender
        await emitter.send_to_user(user, "step", {"n": "end"})


def steps(client: RecordingClient) -> list[int]:
    return [data["n"] for data in client.received("step") if data["n"] != "end"]


async def ended(client: RecordingClient) -> None:
    """Wait for the flow's last message: a socket's messages arrive in order, so all before it are in."""
    await client.wait_until(lambda: {"n": "end"} in client.received("step"), "the last message")


async def test_a_socket_joining_while_messages_flow_gets_every_message_sent_after_it_connected(
        cluster: Cluster, make_client: MakeClient) -> None:
    user = unique_user()
    phone = await connected(make_client, cluster.replicas[0], user)

    async with flowing(cluster, user) as flow:
        await phone.wait_for("step", count=20)
        browser = await connected(make_client, cluster.replicas[1], user)
        joined = flow.issued  # every message issued from here on was sent after the browser connected
        await browser.wait_for("step", count=50)

    await ended(phone)
    await ended(browser)
    assert flow.refused == [] and flow.stored == []
    assert steps(phone) == flow.sent  # the first socket missed nothing meanwhile, in order
    after = steps(browser)
    assert after == sorted(set(after))  # in order, each once
    assert set(range(joined + 1, flow.issued + 1)) <= set(after)


async def test_a_user_moving_between_replicas_loses_no_message_without_the_sender_or_a_replica_counting_it(
        cluster: Cluster, make_client: MakeClient) -> None:
    user = unique_user()
    old_replica = cluster.replicas[0]
    counted_before = await _counted(old_replica.url)
    before = await connected(make_client, old_replica, user)

    async with flowing(cluster, user) as flow:
        await before.wait_for("step", count=20)
        leaving = max(steps(before))  # it has every message up to here (one socket's arrive in order)
        await before.disconnect()
        after = await connected(make_client, cluster.replicas[1], user)
        arrived = flow.issued  # issued after the second socket connected
        await after.wait_for("step", count=50)

    await ended(after)
    assert set(range(1, leaving + 1)) <= set(steps(before))
    assert set(range(arrived + 1, flow.issued + 1)) <= set(steps(after))
    assert set(steps(before)) & set(steps(after)) == set()
    moving = set(range(leaving + 1, arrived + 1))
    assert set(flow.refused) | set(flow.stored) <= moving  # refused or stored only while it moved
    # Sent while the old socket was closing: the old replica wrote each to the closing socket or,
    # the socket gone, counted (and logged) it as user_left. python-socketio's client closes its
    # WebSocket before its goodbye leaves, so the old socket's session is kept: what was sent while
    # the user had no socket was stored for it, and the sender heard so. None vanished uncounted.
    lost = set(range(1, flow.issued + 1)) - set(steps(before)) - set(steps(after)) - set(flow.refused) \
        - set(flow.stored)
    assert lost <= moving
    expected = counted_before + len(steps(before)) + len(lost)
    await eventually(lambda: _counted_is(old_replica.url, expected),
                     what=f"{len(steps(before))} delivered and {len(lost)} lost messages counted by the old replica")


async def _counted(url: str) -> float:
    """Messages for users the replica wrote to a socket, or found no socket for."""
    return await metric(url, DELIVERED) + await metric(url, DROPPED, USER_LEFT)


async def _counted_is(url: str, expected: float) -> bool:
    return await _counted(url) == expected
