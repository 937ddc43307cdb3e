"""The Engine.IO transport against hostile clients, on real replica processes (server/eio/server.py)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable

import aiohttp
import pytest

from cluster import LocalCluster
from tests.helpers.clients import MakeClient, connected, make_token
from tests.helpers.cluster import API_KEY, Cluster, unique_user
from tests.helpers.http import metric, post_emit
from tests.helpers.raw_engineio import NonReadingClient, engineio_url, open_polling_session, poll

# Engine.IO's body limit is 4 x MAX_PAYLOAD_BYTES (64 KiB by default): 256 KiB.
OVERSIZED_BODY = b"4" + b"y" * (300 * 1024)


async def test_a_client_that_stops_reading_is_dropped_as_slow_consumer_while_others_are_served(
        start_cluster: Callable[..., Cluster], make_client: MakeClient) -> None:
    replica = start_cluster(1, MAX_OUTGOING_BUFFER_BYTES="65536").replicas[0]
    slow_user, healthy_user = unique_user("slow"), unique_user("healthy")
    healthy = await connected(make_client, replica, healthy_user)
    slow = NonReadingClient(replica.url)
    await asyncio.to_thread(slow.connect, {"token": make_token(slow_user)})
    navigation = "x" * 60_000

    rounds = 0
    try:
        for rounds in range(1, 401):  # 24 MB at most; the kernel's socket buffers take a few MB first
            status, body = await post_emit(replica.url, API_KEY,
                                           {"user_id": slow_user, "event": "navigation_update", "data": navigation})
            if status == 404 or body["status"] == "stored":  # the slow consumer is gone (its session kept)
                break
            assert status == 202
            assert (await post_emit(replica.url, API_KEY, {"user_id": healthy_user, "event": "arrival",
                                                           "data": {"seq": rounds}}))[0] == 202
            if rounds % 10 == 0:
                await healthy.sio.emit("ping", {"id": rounds})
        else:
            pytest.fail("400 navigation messages were pushed to a client that reads nothing; it is still connected")

        # The healthy client got every message and every pong meanwhile.
        assert (await healthy.wait_for("arrival", count=rounds - 1))["seq"] == rounds - 1
        assert [p["seq"] for p in healthy.received("arrival")] == list(range(1, rounds))
        await healthy.wait_for("pong", count=(rounds - 1) // 10)
        assert await asyncio.to_thread(slow.closed_by_server)
    finally:
        slow.close()
    assert await metric(replica.url, "kindmap_slow_consumer_disconnects_total") == 1
    disconnects = [json.loads(line) for line in replica.log().splitlines() if '"client disconnected"' in line]
    assert {(d["user_id"], d["reason"]) for d in disconnects} == {(slow_user, "SLOW_CONSUMER")}
    assert healthy.sio.connected


async def test_oversized_long_poll_posts_are_refused_at_once_and_leave_no_session(
        start_cluster: Callable[..., Cluster]) -> None:
    replica = start_cluster(1).replicas[0]
    baseline = await metric(replica.url, "kindmap_engineio_sessions")
    statuses: Counter[int] = Counter()

    async def attack(session: aiohttp.ClientSession) -> None:
        sid = await open_polling_session(session, replica.url)
        async with session.post(engineio_url(replica.url, sid=sid), data=OVERSIZED_BODY,
                                timeout=aiohttp.ClientTimeout(total=5)) as response:
            statuses[response.status] += 1
            assert (await response.json())["code"] == "PAYLOAD_TOO_LARGE"
        assert (await poll(session, replica.url, sid))[0] == 400

    async with aiohttp.ClientSession() as session:
        for _ in range(5):
            await asyncio.gather(*(attack(session) for _ in range(10)))

    assert statuses == {413: 50}
    assert await metric(replica.url, "kindmap_engineio_sessions") == baseline
    assert await metric(replica.url, "kindmap_protocol_violations_total", {"cause": "oversized_body"}) == 50


async def test_through_nginx_an_oversized_long_poll_post_gets_the_replicas_413(nginx_cluster: LocalCluster) -> None:
    async with aiohttp.ClientSession() as session:
        sid = await open_polling_session(session, nginx_cluster.url)
        async with session.post(engineio_url(nginx_cluster.url, sid=sid), data=OVERSIZED_BODY,
                                timeout=aiohttp.ClientTimeout(total=5)) as response:
            status, body = response.status, await response.json()
        after = await poll(session, nginx_cluster.url, sid)

    assert (status, body["code"]) == (413, "PAYLOAD_TOO_LARGE")
    assert after[0] == 400


async def test_replica_logs_only_json_and_each_flooded_cause_at_most_once_a_second(
        start_cluster: Callable[..., Cluster]) -> None:
    replica = start_cluster(1).replicas[0]
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        for _ in range(20):
            async with session.ws_connect(engineio_url(replica.url, transport="websocket")) as ws:
                await ws.receive()
                await ws.send_str("")
                assert (await ws.receive(timeout=5)).data == aiohttp.WSCloseCode.PROTOCOL_ERROR
            sid = await open_polling_session(session, replica.url)
            async with session.post(engineio_url(replica.url, sid=sid), data=b"junk") as response:
                assert response.status == 400
            assert (await poll(session, replica.url, "no-such-session"))[0] == 400
            # A body shorter than announced, then gone; an HTTP request aiohttp cannot parse.
            await send_and_close(replica.port, b"POST /socket.io/?EIO=4&transport=polling&sid=x HTTP/1.1\r\n"
                                               b"Host: a\r\nContent-Length: 1000\r\n\r\n4444")
            await send_and_close(replica.port, b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                                               b"Transfer-Encoding: chunked\r\n\r\n")
    elapsed = time.monotonic() - started

    entries = [json.loads(line) for line in replica.log().splitlines()]  # every line is JSON
    causes = Counter(e.get("cause") or f"{e['logger']}: {e['message'][:30]}" for e in entries
                     if e["level"] != "INFO" or "cause" in e)
    assert causes["empty_frame"] + causes["bad_polling_body"] >= 2
    for cause, count in causes.items():
        assert count <= elapsed + 1, f"{cause!r} logged {count} times in {elapsed:.1f}s"
    assert sum("Invalid session" in e["message"] for e in entries) == 1  # the library's, once, not twice


async def send_and_close(port: int, data: bytes) -> None:
    """Write raw bytes on a new connection and hang up without reading the answer."""
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    writer.close()
