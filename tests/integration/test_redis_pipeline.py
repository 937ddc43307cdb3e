"""kindmap_realtime/backends/redis/pipeline.py: AutoPipeline against a real redis-server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from redis import asyncio as aioredis
from redis.exceptions import NoScriptError, ResponseError

from cluster.processes import RedisServer
from kindmap_realtime.backends.redis.client import COMMAND_TIMEOUT, PoolExhaustedError, connect_redis, sending
from kindmap_realtime.backends.redis.pipeline import AutoPipeline
from kindmap_realtime.errors import PublishError, QueueBusyError
from tests.helpers.pipeline import blocked_call, pack
from tests.helpers.waiting import eventually

MakePipeline = Callable[..., AutoPipeline]


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
def key() -> str:
    return f"kindmap-pipeline-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def make_pipeline(redis_server: RedisServer) -> AsyncIterator[MakePipeline]:
    """Factory: a pipeline on a connection like the transports' (``socket_timeout`` may be shortened)."""
    made: list[AutoPipeline] = []

    def make(max_calls: int = 64, wait_timeout: float = COMMAND_TIMEOUT,
             socket_timeout: float = COMMAND_TIMEOUT) -> AutoPipeline:
        pool = connect_redis(redis_server.url).connection_pool
        connection = pool.connection_class(**{**pool.connection_kwargs, "socket_timeout": socket_timeout})
        pipeline = AutoPipeline(connection, max_calls=max_calls, wait_timeout=wait_timeout)
        made.append(pipeline)
        return pipeline

    yield make
    for pipeline in made:
        await pipeline.close()


async def test_concurrent_callers_share_one_connection_and_get_their_own_replies_in_order(
        make_pipeline: MakePipeline) -> None:
    pipeline = make_pipeline()

    async def call(n: int) -> list[object]:
        return await pipeline.execute([pack("ECHO", f"{n}-a"), pack("CLIENT", "ID"), pack("ECHO", f"{n}-b")])

    results = await asyncio.gather(*(call(n) for n in range(200)))

    assert [(a, b) for a, _, b in results] == [(f"{n}-a".encode(), f"{n}-b".encode()) for n in range(200)]
    assert len({client_id for _, client_id, _ in results}) == 1


async def test_what_callers_send_in_one_tick_goes_out_in_one_write(make_pipeline: MakePipeline,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = make_pipeline()
    await pipeline.execute([pack("PING")])  # connected
    writer = pipeline._connection._writer
    assert writer is not None
    writes: list[bytes] = []
    write = writer.write

    def counted(data: bytes) -> None:
        writes.append(data)
        write(data)

    monkeypatch.setattr(writer, "write", counted)

    replies = await asyncio.gather(*(pipeline.execute([pack("ECHO", n)]) for n in range(50)))

    assert replies == [[str(n).encode()] for n in range(50)]
    assert writes == [b"".join(pack("ECHO", n) for n in range(50))]


async def test_error_replies_are_returned_as_values_in_their_place(make_pipeline: MakePipeline, key: str) -> None:
    pipeline = make_pipeline()

    replies = await pipeline.execute([pack("SET", key, "text"), pack("INCR", key),
                                      pack("EVALSHA", "0" * 40, 0), pack("GET", key)])

    assert replies[0] is True or replies[0] == b"OK"
    assert isinstance(replies[1], ResponseError)
    assert isinstance(replies[2], NoScriptError)
    assert replies[3] == b"text"


async def test_a_dropped_connection_fails_the_calls_in_flight_and_the_next_call_reconnects(
        make_pipeline: MakePipeline, redis: aioredis.Redis, key: str) -> None:
    pipeline = make_pipeline()
    (client_id,) = await pipeline.execute([pack("CLIENT", "ID")])
    waiting = await blocked_call(pipeline, redis, key)
    behind = asyncio.ensure_future(sending(pipeline.execute([pack("ECHO", "behind")])))

    await redis.client_kill_filter(_id=client_id)

    with pytest.raises(PublishError):
        await sending(waiting)
    with pytest.raises(PublishError):
        await behind
    (new_id,) = await pipeline.execute([pack("CLIENT", "ID")])
    assert new_id != client_id


async def test_a_connection_closed_while_idle_is_replaced_before_the_next_call(
        make_pipeline: MakePipeline, redis: aioredis.Redis) -> None:
    pipeline = make_pipeline()
    (client_id,) = await pipeline.execute([pack("CLIENT", "ID")])
    await redis.client_kill_filter(_id=client_id)

    async def closed() -> bool:
        return all(int(client["id"]) != client_id for client in await redis.client_list())

    await eventually(closed, what="connection closed by Redis")

    assert await pipeline.execute([pack("ECHO", "after")]) == [b"after"]


async def test_callers_that_find_redis_down_share_one_attempt_to_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not one connect timeout after another: with Redis unreachable, all fail at once."""
    pool = connect_redis("redis://127.0.0.1:1/0").connection_pool
    pipeline = AutoPipeline(pool.make_connection(), max_calls=64, wait_timeout=COMMAND_TIMEOUT)  # type: ignore[no-untyped-call]
    attempts: list[object] = []
    connect = pipeline._connection.connect

    async def counted() -> None:
        attempts.append(None)
        await connect()  # type: ignore[no-untyped-call]

    monkeypatch.setattr(pipeline._connection, "connect", counted)

    outcomes = await asyncio.gather(*(sending(pipeline.execute([pack("PING")])) for _ in range(20)),
                                    return_exceptions=True)

    assert [type(outcome) for outcome in outcomes] == [PublishError] * 20
    assert len(attempts) == 1
    await pipeline.close()


async def test_a_reply_that_does_not_come_in_time_fails_the_call_and_the_next_call_reconnects(
        make_pipeline: MakePipeline, redis: aioredis.Redis, key: str) -> None:
    pipeline = make_pipeline(socket_timeout=0.2)
    waiting = await blocked_call(pipeline, redis, key)

    with pytest.raises(PublishError, match="Timeout"):
        await sending(waiting)
    assert await pipeline.execute([pack("ECHO", "after")]) == [b"after"]


async def test_a_cancelled_caller_does_not_shift_the_replies_of_the_others(
        make_pipeline: MakePipeline, redis: aioredis.Redis, key: str) -> None:
    pipeline = make_pipeline()
    cancelled = await blocked_call(pipeline, redis, key)
    behind = asyncio.ensure_future(pipeline.execute([pack("ECHO", "behind")]))

    cancelled.cancel()
    await redis.rpush(key, "for the cancelled caller")

    assert await behind == [b"behind"]
    assert await pipeline.execute([pack("ECHO", "next")]) == [b"next"]
    assert await redis.llen(key) == 0  # its command ran; only its reply was dropped


async def test_calls_beyond_the_limit_wait_for_one_to_finish(
        make_pipeline: MakePipeline, redis: aioredis.Redis, key: str) -> None:
    pipeline = make_pipeline(max_calls=1)
    first = await blocked_call(pipeline, redis, key)
    second = asyncio.ensure_future(pipeline.execute([pack("ECHO", "second")]))

    await redis.rpush(key, "go")

    assert await first == [[key.encode(), b"go"]]
    assert await second == [b"second"]


async def test_calls_that_wait_too_long_for_the_limit_are_busy_not_failed(
        make_pipeline: MakePipeline, redis: aioredis.Redis, key: str) -> None:
    pipeline = make_pipeline(max_calls=1, wait_timeout=0.1)
    first = await blocked_call(pipeline, redis, key)

    with pytest.raises(PoolExhaustedError):
        await pipeline.execute([pack("ECHO", "too many")])
    with pytest.raises(QueueBusyError):
        await sending(pipeline.execute([pack("ECHO", "too many")]))

    await redis.rpush(key, "go")
    assert await first == [[key.encode(), b"go"]]
    assert await pipeline.execute([pack("ECHO", "room again")]) == [b"room again"]


async def test_close_fails_the_calls_in_flight(make_pipeline: MakePipeline, redis: aioredis.Redis, key: str) -> None:
    pipeline = make_pipeline()
    waiting = await blocked_call(pipeline, redis, key)

    await pipeline.close()

    with pytest.raises(PublishError):
        await sending(waiting)
