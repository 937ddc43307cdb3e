"""RedisTransport, RedisPresence and Emitter against a real redis-server: what only Redis does
(pools, readers cut, heartbeats, signed entries). What every backend does alike: the contract
suite, tests/integration/backends/."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import pytest
from redis import asyncio as aioredis

from cluster.processes import RedisServer
from kindmap_realtime.backends import Backend
from kindmap_realtime.backends.base import Session
from kindmap_realtime.backends.redis.client import MAX_CONNECTIONS, PoolExhaustedError, connect_redis
from kindmap_realtime.backends.redis.entries import SignedEntries
from kindmap_realtime.backends.redis.inboxes import InboxTransport
from kindmap_realtime.backends.redis.keys import presence_key, registry_key
from kindmap_realtime.backends.redis.presence import WRITE_CHUNK, RedisPresence
from kindmap_realtime.backends.redis.transport import RedisTransport
from kindmap_realtime.emitter import Emitter
from kindmap_realtime.errors import PayloadTooLargeError, QueueBusyError, QueueUnavailableError, RequestError
from tests.helpers.backends import OpenReplica, emitter_backend, replica_backends
from tests.helpers.pipeline import blocked_call


@pytest.fixture
def channel() -> str:
    return f"kindmap_unit_{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


MakePresence = Callable[..., RedisPresence]


@pytest.fixture
async def make_presence(redis_server: RedisServer, channel: str) -> AsyncIterator[MakePresence]:
    """Factory: a replica process's presence on its own transport (to ``url``, the test Redis by default)."""
    transports: list[RedisTransport] = []

    def make(process: str, key: bytes | None = None, *, url: str | None = None, **options: Any) -> RedisPresence:
        entries = SignedEntries(channel, key)
        transport = RedisTransport(url or redis_server.url, process=process, entries=entries)
        transports.append(transport)
        return RedisPresence(transport, channel=channel, process=process, entries=entries, **options)

    yield make
    for transport in transports:
        await transport.close()


@pytest.fixture
async def open_replica(redis_server: RedisServer, channel: str) -> AsyncIterator[OpenReplica]:
    """Opens a replica's backend: registered by a heartbeat and reading its inbox, as the app does."""
    async with replica_backends(redis_server.url, channel) as open_one:
        yield open_one


@pytest.fixture
async def sender(redis_server: RedisServer, channel: str) -> AsyncIterator[Backend]:
    """An emitter's backend: it sends, never reads."""
    async with emitter_backend(redis_server.url, channel) as backend:
        yield backend


async def next_envelopes(backend: Backend, count: int = 1, timeout: float = 5.0) -> list[bytes]:
    got = []
    async with asyncio.timeout(timeout), contextlib.aclosing(backend.transport.messages()) as messages:
        async for data, offset in messages:
            assert offset is None  # nothing of these tests is stored for recovery
            got.append(data)
            if len(got) == count:
                return got
    return got


async def test_a_burst_of_commands_larger_than_the_pool_waits_for_connections(redis_server: RedisServer) -> None:
    """A drain writes presence for every socket at once: none may fail for want of a connection."""
    client = connect_redis(redis_server.url)
    try:
        burst = 4 * MAX_CONNECTIONS
        results = await asyncio.gather(*(client.blpop([f"kindmap-burst-{i}"], timeout=0.05) for i in range(burst)))
        assert results == [None] * burst
        assert await client.ping() is True
    finally:
        await client.aclose()


@pytest.fixture
async def busy_transport(redis_server: RedisServer, redis: aioredis.Redis,
                         channel: str) -> AsyncIterator[RedisTransport]:
    """A transport whose only pooled connection is taken, and whose pipeline's only call is
    in flight: every command waits, then gives up."""
    transport = RedisTransport(redis_server.url, process="busy", entries=SignedEntries(channel, None),
                               max_connections=1, pool_timeout=0.2)
    inboxes = await transport.chosen()
    assert isinstance(inboxes, InboxTransport)
    pool = inboxes.client.connection_pool
    held = await pool.get_connection()  # type: ignore[no-untyped-call]
    blocked = await blocked_call(inboxes._pipeline, redis, f"{channel}:never")
    yield transport
    await pool.release(held)
    await transport.close()
    with pytest.raises(aioredis.ConnectionError):
        await blocked


async def test_a_pool_that_stays_busy_raises_pool_exhausted_not_a_plain_connection_error(
        busy_transport: RedisTransport) -> None:
    """redis-py raises one ConnectionError for a wait that timed out and for a failed
    connection, told apart only by its cause: this catches an upgrade that changes it."""
    with pytest.raises(PoolExhaustedError):
        await (await busy_transport.redis()).ping()


async def test_a_connection_that_fails_is_not_mistaken_for_a_busy_pool() -> None:
    client = connect_redis("redis://127.0.0.1:1/0", max_connections=1, pool_timeout=0.2)
    try:
        with pytest.raises(aioredis.ConnectionError) as caught:
            await client.ping()
        assert not isinstance(caught.value, PoolExhaustedError)
    finally:
        await client.aclose()


async def test_busy_redis_is_queue_busy_for_publish_and_presence(busy_transport: RedisTransport,
                                                                 channel: str) -> None:
    presence = RedisPresence(busy_transport, channel=channel, process="busy", entries=SignedEntries(channel, None))

    with pytest.raises(QueueBusyError):
        await busy_transport.publish(channel, b"{}")
    with pytest.raises(QueueBusyError):
        await busy_transport.publish_to_user(channel, "alice", b"{}")
    with pytest.raises(QueueBusyError):
        await presence.is_online("alice")


async def test_a_reader_whose_connection_is_cut_resumes_where_it_stopped(
        open_replica: Callable[..., Awaitable[Backend]], sender: Backend, channel: str, redis: aioredis.Redis) -> None:
    """A frozen or silently dead connection is replaced; what arrived meanwhile is read, not lost."""
    replica = await open_replica()
    await replica.presence.add("ana", "sid-1")
    await sender.transport.publish_to_user(channel, "ana", b"before")
    assert await next_envelopes(replica) == [b"before"]

    messages = replica.transport.messages()
    reading = asyncio.ensure_future(anext(messages))
    await kill_reader(redis, replica)
    with pytest.raises(QueueUnavailableError):
        await reading
    for n in range(3):
        await sender.transport.publish_to_user(channel, "ana", f"meanwhile {n}".encode())
    await replica.transport.subscribe(channel)

    assert await next_envelopes(replica, 3) == [b"meanwhile 0", b"meanwhile 1", b"meanwhile 2"]


async def kill_reader(redis: aioredis.Redis, replica: Backend) -> None:
    """Cut the connection reading ``replica``'s inbox, as a dead network would."""
    assert isinstance(replica.transport, RedisTransport)
    name = f"kindmap-inbox:{replica.transport.process}"
    readers = [c["id"] for c in await redis.client_list() if c.get("name") == name]
    assert readers, f"no connection named {name}"
    for client_id in readers:
        await redis.client_kill_filter(_id=client_id)


async def test_transport_for_unreachable_redis_fails_fast_with_queue_unavailable() -> None:
    unreachable = RedisTransport("redis://127.0.0.1:1/0", process="x", entries=SignedEntries("x", None))
    with pytest.raises(QueueUnavailableError):
        await unreachable.connect()
    assert await unreachable.ping() is False
    with pytest.raises(QueueUnavailableError):
        await unreachable.subscribe("anything")
    await unreachable.close()



async def test_presence_tracks_sockets_of_live_replicas_only(redis: aioredis.Redis, channel: str,
        make_presence: MakePresence) -> None:
    alive = make_presence("alive")
    await alive.heartbeat()
    await alive.add("ana", "sid-1")
    assert await alive.is_online("ana") is True
    await alive.remove("ana", "sid-1")
    assert await alive.is_online("ana") is False

    dead = make_presence("dead")
    await dead.add("bo", "sid-2")
    await redis.zrem(registry_key(channel), "dead")  # its heartbeat stopped long ago
    assert await alive.is_online("bo") is False
    await alive.add("bo", "sid-3")  # a replica's write drops the entries of dead replicas (a sender cannot)
    assert await redis.hkeys(presence_key(channel, "bo")) == [b"sid-3"]


async def test_presence_heartbeat_announces_sockets_again_after_redis_lost_them(
        redis: aioredis.Redis, channel: str, make_presence: MakePresence) -> None:
    presence = make_presence("replica-x")
    await presence.heartbeat()
    await presence.add("ana", "sid-1")
    await forget_channel(redis, channel)  # as if Redis restarted empty
    assert await presence.is_online("ana") is False

    await presence.heartbeat()

    assert await presence.is_online("ana") is True


async def test_a_socket_added_after_redis_lost_everything_is_online_before_the_next_heartbeat(
        redis: aioredis.Redis, channel: str, make_presence: MakePresence) -> None:
    presence = make_presence("replica-x")
    await presence.heartbeat()
    await forget_channel(redis, channel)  # as if Redis restarted empty

    await presence.add("ana", "sid-1")

    assert await presence.is_online("ana") is True
    assert await redis.zscore(registry_key(channel), "replica-x") is not None


async def test_presence_heartbeat_rewrites_sockets_a_neighbour_deleted(redis: aioredis.Redis, channel: str,
        make_presence: MakePresence) -> None:
    presence = make_presence("replica-x")
    await presence.heartbeat()
    await presence.add("ana", "sid-1")
    await redis.delete(presence_key(channel, "ana"))  # the replica's own key is left alone

    await presence.heartbeat()

    assert await presence.is_online("ana") is True


async def test_presence_heartbeat_rewrites_every_socket_when_they_span_several_round_trips(
        redis: aioredis.Redis, channel: str, make_presence: MakePresence) -> None:
    presence = make_presence("replica-x")
    await presence.heartbeat()
    users = [f"user-{n}" for n in range(WRITE_CHUNK * 2 + 1)]
    for user in users:
        await presence.add(user, f"sid-{user}")
    await forget_channel(redis, channel)

    await presence.heartbeat()

    written = [await redis.hget(presence_key(channel, user), f"sid-{user}") for user in users]
    assert written == [b"replica-x"] * len(users)


async def test_presence_heartbeat_repairs_a_socket_whose_write_failed(
        redis: aioredis.Redis, redis_server: RedisServer, channel: str, make_presence: MakePresence) -> None:
    user = f"presence-{uuid.uuid4().hex[:8]}"
    await redis.acl_setuser(user, enabled=True, passwords=["+pw"], keys=["*"], channels=["*"], commands=["+@all"])
    try:
        presence = make_presence("replica-x", url=redis_server.url.replace("redis://", f"redis://{user}:pw@"))
        await presence.heartbeat()
        await redis.acl_setuser(user, enabled=True, commands=["-hset"])
        await presence.add("ana", "sid-1")  # refused by Redis: logged, left to the heartbeat
        assert await presence.is_online("ana") is False
        await redis.acl_setuser(user, enabled=True, commands=["+hset"])

        await presence.heartbeat()

        assert await presence.is_online("ana") is True
    finally:
        await redis.acl_deluser(user)


PRESENCE_KEY = b"presence-signing-key-0123456789abcdef"


async def test_signed_presence_ignores_forged_entries_and_counts_genuine_ones(
        redis: aioredis.Redis, channel: str, make_presence: MakePresence) -> None:
    presence = make_presence("replica-x", PRESENCE_KEY)
    await presence.heartbeat()
    await presence.add("ana", "sid-1")
    entry = await redis.hget(presence_key(channel, "ana"), "sid-1")
    assert isinstance(entry, bytes)  # the client does not decode responses
    process = entry.decode().split("#")[0]
    now_ms = int(time.time() * 1000)
    for user, value in [("ghost-1", process), ("ghost-2", f"{process}#{now_ms}#{'0' * 32}")]:
        await redis.hset(presence_key(channel, user), "sid-forged", value)
    genuine = await redis.hget(presence_key(channel, "ana"), "sid-1")
    await redis.hset(presence_key(channel, "ghost-3"), "sid-1", genuine)  # ana's entry, copied

    assert await presence.is_online("ana") is True
    assert [await presence.is_online(f"ghost-{n}") for n in (1, 2, 3)] == [False, False, False]
    unkeyed = make_presence("reader", b"another-key-" * 3)
    assert await unkeyed.is_online("ana") is False


async def test_signed_presence_counts_the_sockets_of_a_replica_whose_instance_id_holds_a_hash(
        redis: aioredis.Redis, channel: str, make_presence: MakePresence) -> None:
    presence = make_presence("replica#1", PRESENCE_KEY)
    await presence.heartbeat()

    await presence.add("ana", "sid-1")

    assert await presence.is_online("ana") is True


async def forget_channel(redis: aioredis.Redis, channel: str) -> None:
    await redis.delete(*[key async for key in redis.scan_iter(f"{channel}:*")])


async def test_replica_restarted_under_the_same_instance_id_does_not_revive_dead_sockets(
        redis: aioredis.Redis, channel: str, make_presence: MakePresence) -> None:
    crashed = make_presence("replica-1:crashed")
    await crashed.heartbeat()
    await crashed.add("ana", "sid-of-crashed-process")
    await redis.delete(registry_key(channel))  # its heartbeat stopped vouching for it

    restarted = make_presence("replica-1:restarted")
    await restarted.heartbeat()

    assert await restarted.is_online("ana") is False


async def test_socket_that_leaves_during_a_rewrite_is_not_brought_back(
        redis: aioredis.Redis, channel: str, monkeypatch: pytest.MonkeyPatch, make_presence: MakePresence) -> None:
    presence = make_presence("replica-x")
    await presence.heartbeat()
    await presence.add("ana", "sid-1")
    await forget_channel(redis, channel)
    write = presence._write

    async def write_while_the_socket_leaves(entries: Iterable[tuple[str, str, Session | None]]) -> None:
        entries = list(entries)
        await presence.remove("ana", "sid-1")  # the disconnect lands before the rewrite does
        await write(entries)

    monkeypatch.setattr(presence, "_write", write_while_the_socket_leaves)
    await presence.heartbeat()

    assert await presence.is_online("ana") is False


async def test_presence_close_withdraws_this_replica(redis: aioredis.Redis, channel: str,
        make_presence: MakePresence) -> None:
    presence = make_presence("closing", heartbeat_interval=0.05)
    await presence.start()
    await presence.add("ana", "sid-1")
    await presence.close()
    assert await redis.zscore(registry_key(channel), "closing") is None
    assert await presence.is_online("ana") is False


async def test_presence_on_a_redis_never_reached_raises_queue_unavailable(make_presence: MakePresence) -> None:
    """Whether it is one Redis or a cluster (whose sockets must be listened for before they are
    announced) is not known yet: the socket is refused, not kept deaf."""
    presence = make_presence("x", url="redis://127.0.0.1:1/0")
    with pytest.raises(QueueUnavailableError):
        await presence.is_online("ana")
    with pytest.raises(QueueUnavailableError):
        await presence.add("ana", "sid-1")


async def test_emitter_rejects_bad_user_ids_and_reserved_events(redis_server: RedisServer, channel: str) -> None:
    async with Emitter(redis_server.url, channel=channel) as emitter:
        with pytest.raises(RequestError):
            await emitter.send_to_user("has space", "event", {})
        with pytest.raises(RequestError):
            await emitter.send_to_user("ana", "connect", {})
        with pytest.raises(RequestError):
            await emitter.disconnect_user("")
        with pytest.raises(RequestError):
            await emitter.broadcast("disconnect", {})


async def test_emitter_left_open_warns_when_collected(redis_server: RedisServer, channel: str) -> None:
    emitter = Emitter(redis_server.url, channel=channel)
    await emitter.connect()
    with pytest.warns(ResourceWarning):
        emitter.__del__()
    await emitter.close()


async def test_emitter_refuses_a_message_over_its_limit_before_redis_sees_it(
        redis_server: RedisServer, channel: str, open_replica: Callable[..., Awaitable[Backend]]) -> None:
    replica = await open_replica()
    async with Emitter(redis_server.url, channel=channel, max_message_bytes=1024) as emitter:
        with pytest.raises(PayloadTooLargeError):
            await emitter.broadcast("notice", "x" * 1024)
        await emitter.broadcast("notice", "small")

    assert [b'"small"' in data for data in await next_envelopes(replica)] == [True]


@pytest.mark.parametrize("data", [float("nan"), {"eta": float("inf")}, 10 ** 5000, {"stop": "\ud800"}],
                         ids=["nan", "infinity", "huge-int", "lone-surrogate"])
async def test_emitter_refuses_data_the_http_api_refuses(redis_server: RedisServer, channel: str, data: object) -> None:
    async with Emitter(redis_server.url, channel=channel) as emitter:
        with pytest.raises(RequestError, match="data"):
            await emitter.broadcast("notice", data)
        with pytest.raises(RequestError, match="data"):
            await emitter.send_to_user("alice", "notice", data)


async def test_emitter_with_a_key_starts_when_no_replica_listens_to_prove_or_refute_it(
        redis_server: RedisServer, redis: aioredis.Redis, channel: str) -> None:
    await redis.set(f"{channel}:signing", b"0" * 32)  # a stale or forged fingerprint, nobody subscribed
    async with Emitter(redis_server.url, channel=channel, signing_key="k" * 32) as emitter:
        assert emitter is not None


async def test_a_replica_warns_of_replicas_of_the_older_version_on_its_channel(
        open_replica: Callable[..., Awaitable[Backend]], redis: aioredis.Redis, channel: str,
        caplog: pytest.LogCaptureFixture) -> None:
    older = redis.pubsub()
    await older.subscribe(channel)  # what a replica before directed delivery listens to
    try:
        await open_replica()
    finally:
        await older.aclose()  # type: ignore[no-untyped-call]

    warnings = [r for r in caplog.records if "older version" in r.getMessage()]
    assert [(r.levelname, getattr(r, "older_replicas", None)) for r in warnings] == [("WARNING", 1)]


async def test_send_many_delivers_a_batch_and_reports_each_message(
        redis_server: RedisServer, channel: str, open_replica: Callable[..., Awaitable[Backend]]) -> None:
    replica = await open_replica()
    for user in ("ana", "bo"):
        await replica.presence.add(user, f"sid-{user}")
    batch = [("ana", "step", {"n": n}) for n in range(50)] + [("cy", "step", {}), ("bo", "step", {"n": 50})]

    async with Emitter(redis_server.url, channel=channel) as emitter:
        outcomes = await emitter.send_many(batch)

    assert [o.sent for o in outcomes] == [True] * 50 + [False, True]
    assert type(outcomes[50].error).__name__ == "UserNotConnectedError"
    received = [json.loads(data)["data"] for data in await next_envelopes(replica, 51)]
    assert received == [[{"n": n}] for n in range(51)]  # in order


async def test_send_many_loads_the_routing_script_again_after_redis_forgot_it(
        redis_server: RedisServer, channel: str, open_replica: Callable[..., Awaitable[Backend]],
        redis: aioredis.Redis) -> None:
    replica = await open_replica()
    await replica.presence.add("ana", "sid-ana")
    async with Emitter(redis_server.url, channel=channel) as emitter:
        await redis.script_flush()  # as after a Redis restart

        outcomes = await emitter.send_many([("ana", "step", {"n": 1}), ("ana", "step", {"n": 2})])

    assert [o.sent for o in outcomes] == [True, True]
    assert [json.loads(data)["data"] for data in await next_envelopes(replica, 2)] == [[{"n": 1}], [{"n": 2}]]
