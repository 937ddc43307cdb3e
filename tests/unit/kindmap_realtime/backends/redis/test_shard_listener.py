"""The listening connection of one Redis Cluster shard: one connection, confirmations in turn,
moved slots and failures reported, never a silent reconnect.

A real redis-server (sharded pub/sub works on one Redis too) where Redis's own answers matter;
a stub (``RespStub``) where a test must make Redis push, refuse, fall silent or cut.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from redis import asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from cluster.processes import HOST, RedisServer
from kindmap_realtime.backends.redis import shard_listener
from kindmap_realtime.backends.redis.shard_listener import ShardListener, node_options
from tests.helpers.resp_stub import RespStub
from tests.helpers.waiting import eventually


@dataclass
class Heard:
    """What a listener reported: messages, channels Redis dropped, losses."""

    out: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    dropped: list[str] = field(default_factory=list)
    lost: list[Exception] = field(default_factory=list)

    def listener(self, port: int) -> ShardListener:
        return ShardListener(HOST, port, options=node_options({}), out=self.out,
                             on_lost=lambda _, error: self.lost.append(error),
                             on_dropped=lambda _, channel: self.dropped.append(channel))


@pytest.fixture
async def stub() -> AsyncIterator[RespStub]:
    server = RespStub()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def test_concurrent_subscribes_on_a_fresh_listener_are_all_confirmed_on_one_connection(
        redis_server: RedisServer, redis: aioredis.Redis) -> None:
    heard = Heard()
    listener = heard.listener(redis_server.port)
    channels = [f"storm:user:{{u{i}}}" for i in range(300)]
    before = len(await redis.client_list())
    try:
        await asyncio.gather(*(listener.subscribe(name) for name in channels))

        assert listener.channels == set(channels)
        assert len(await redis.client_list()) == before + 1
        for name in channels:  # each has one receiver, and it is the connection that is read
            assert await redis.spublish(name, name) == 1
        assert sorted([(await heard.out.get()).decode() for _ in channels]) == sorted(channels)
    finally:
        await listener.close()
    assert heard.lost == []


async def test_an_unsubscribed_channel_is_no_longer_heard_and_its_earlier_messages_are(
        redis_server: RedisServer, redis: aioredis.Redis) -> None:
    heard = Heard()
    listener = heard.listener(redis_server.port)
    try:
        await listener.subscribe("left:user:{a}")
        await redis.spublish("left:user:{a}", "before")
        await listener.unsubscribe("left:user:{a}")

        assert await redis.spublish("left:user:{a}", "after") == 0
        assert await heard.out.get() == b"before"
        assert listener.channels == set()
    finally:
        await listener.close()


async def test_every_ssubscribe_names_one_channel_however_many_are_subscribed_at_once(stub: RespStub) -> None:
    """A cluster refuses one command for channels of different slots (CROSSSLOT)."""
    heard = Heard()
    listener = heard.listener(stub.port)
    channels = [f"slots:user:{{u{i}}}" for i in range(50)]
    try:
        await asyncio.gather(*(listener.subscribe(name) for name in channels))
    finally:
        await listener.close()

    subscribes = [command for command in stub.commands if command[0].upper() == b"SSUBSCRIBE"]
    assert sorted(command[1:] for command in subscribes) == sorted([name.encode()] for name in channels)


async def test_a_sunsubscribe_nobody_asked_for_reports_the_channel_dropped(stub: RespStub) -> None:
    heard = Heard()
    listener = heard.listener(stub.port)
    try:
        await listener.subscribe("moved:user:{a}")
        await listener.subscribe("kept:user:{b}")

        stub.push_sunsubscribe(b"moved:user:{a}")
        await eventually(lambda: heard.dropped, what="the drop reported")

        assert heard.dropped == ["moved:user:{a}"]
        assert listener.channels == {"kept:user:{b}"}
        stub.publish(b"kept:user:{b}", b"still heard")
        assert await asyncio.wait_for(heard.out.get(), 2) == b"still heard"
        assert heard.lost == []
    finally:
        await listener.close()


async def test_a_refused_subscription_raises_and_the_others_stay_confirmed(stub: RespStub) -> None:
    heard = Heard()
    listener = heard.listener(stub.port)
    stub.refused.add(b"refused:user:{a}")
    try:
        outcomes = await asyncio.gather(listener.subscribe("ok:user:{a}"), listener.subscribe("refused:user:{a}"),
                                        listener.subscribe("ok:user:{b}"), return_exceptions=True)

        assert outcomes[0] is None and outcomes[2] is None
        assert isinstance(outcomes[1], ResponseError)
        assert listener.channels == {"ok:user:{a}", "ok:user:{b}"}
        assert heard.lost == []
    finally:
        await listener.close()


async def test_a_failed_connection_is_reported_lost_once_and_never_opened_again(stub: RespStub) -> None:
    heard = Heard()
    listener = heard.listener(stub.port)
    try:
        await listener.subscribe("cut:user:{a}")
        stub.cut()
        await eventually(lambda: heard.lost, what="the loss reported")

        with pytest.raises(RedisConnectionError):
            await listener.subscribe("cut:user:{b}")
        assert len(heard.lost) == 1
        assert stub.connections == 1
        assert listener.failed
    finally:
        await listener.close()


async def test_a_silent_connection_is_pinged_then_reported_lost(stub: RespStub,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shard_listener, "KEEPALIVE_INTERVAL", 0.05)
    monkeypatch.setattr(shard_listener, "KEEPALIVE_TIMEOUT", 0.2)
    heard = Heard()
    listener = heard.listener(stub.port)
    try:
        await listener.subscribe("quiet:user:{a}")
        await eventually(lambda: stub.pings >= 3, what="keepalive pings")  # idle, answered: not lost
        assert heard.lost == []

        stub.silent = True
        await eventually(lambda: heard.lost, timeout=2, what="the silence reported")
        assert stub.connections == 1
    finally:
        await listener.close()


async def test_closing_reports_nothing_lost(redis_server: RedisServer) -> None:
    heard = Heard()
    listener = heard.listener(redis_server.port)
    await listener.subscribe("closed:user:{a}")

    await listener.close()

    assert heard.lost == []
