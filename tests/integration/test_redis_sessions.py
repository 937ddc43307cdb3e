"""RedisSessions and the scripts that keep sessions and histories, against a real Redis.

Recoverable sessions, each user's history and the send scripts that store into it
(``server/backends/redis/{sessions,scripts,presence}.py``), on one Redis and again
on a Redis Cluster where a test does not depend on how replicas are reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis import asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from server.backends import Backend
from server.backends.base import Claim, HistoryGone, Received, Routed, Session
from server.backends.redis.entries import INSTANCE_TTL_MS
from server.backends.redis.keys import history_key, inbox_key, presence_key, sessions_key
from server.backends.redis.presence import RedisPresence
from server.backends.redis.sessions import HISTORY_PAGE, RedisSessions
from server.backends.redis.transport import RedisTransport
from tests.helpers.backends import OpenReplica, emitter_backend, replica_backends

WINDOW = 30.0  # seconds; no test waits for it unless it sets its own
MAX_MESSAGES = 10
# A deadline is TIME's ms plus a TTL, a key's expiry Redis's own ms clock plus the same TTL: the
# two can differ by the millisecond TIME rounds down.
ROUNDING_MS = 1

Client = aioredis.Redis | RedisCluster


@pytest.fixture(params=["redis", "redis-cluster"])
def redis_url(request: pytest.FixtureRequest) -> str:
    server = request.getfixturevalue("redis_server" if request.param == "redis" else "redis_cluster")
    return str(server.url)


@pytest.fixture
def single_redis_url(redis_server: Any) -> str:
    """For what only one Redis has: per-replica inboxes."""
    return str(redis_server.url)


@pytest.fixture
def channel() -> str:
    return f"kindmap_sessions_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def user() -> str:
    return f"rider-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def open_replica(redis_url: str, channel: str) -> AsyncIterator[OpenReplica]:
    """Factory: a replica's backend with recovery on, registered and reading its messages."""
    async with replica_backends(redis_url, channel, recovery_window=WINDOW,
                                recovery_max_messages=MAX_MESSAGES) as open_one:
        yield open_one


@pytest.fixture
async def open_single_replica(single_redis_url: str, channel: str) -> AsyncIterator[OpenReplica]:
    async with replica_backends(single_redis_url, channel, recovery_window=WINDOW,
                                recovery_max_messages=MAX_MESSAGES) as open_one:
        yield open_one


@pytest.fixture
async def sender(redis_url: str, channel: str) -> AsyncIterator[Backend]:
    """An emitter's backend (no session store of its own): what it sends is stored all the same."""
    async with emitter_backend(redis_url, channel) as backend:
        yield backend


@pytest.fixture
async def single_sender(single_redis_url: str, channel: str) -> AsyncIterator[Backend]:
    async with emitter_backend(single_redis_url, channel) as backend:
        yield backend


def sessions_of(replica: Backend) -> RedisSessions:
    assert isinstance(replica.sessions, RedisSessions)
    return replica.sessions


def presence_of(replica: Backend) -> RedisPresence:
    assert isinstance(replica.presence, RedisPresence)
    return replica.presence


def process_of(replica: Backend) -> str:
    assert isinstance(replica.transport, RedisTransport)
    return replica.transport.process


async def client_of(replica: Backend) -> Client:
    assert isinstance(replica.transport, RedisTransport)
    return await replica.transport.redis()


async def history(client: Client, channel: str, user: str) -> list[tuple[str, dict[bytes, bytes]]]:
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await client.xrange(  # type: ignore[assignment]
        history_key(channel, user))
    return [(entry_id.decode(), fields) for entry_id, fields in entries]


async def session_entry(client: Client, channel: str, user: str, pid: str) -> list[str] | None:
    """A session's stored fields: deadline, epoch, sid, base, max messages, process."""
    value: bytes | None = await client.hget(sessions_key(channel, user), pid)  # type: ignore[assignment]
    return None if value is None else value.decode().split("|")


async def expire(client: Client, channel: str, user: str, pid: str) -> None:
    """Put a session's deadline in the past, as if its window had passed."""
    entry = await session_entry(client, channel, user, pid)
    assert entry is not None
    await client.hset(sessions_key(channel, user), pid, "|".join(["1", *entry[1:]]))


_TIMES = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local entry = redis.call('HGET', KEYS[1], ARGV[1])
return {now, entry and tonumber(string.match(entry, '^(%d+)|')) or -1, redis.call('PTTL', KEYS[2]),
        redis.call('PTTL', KEYS[1])}
"""


async def times_left(client: Client, channel: str, user: str, pid: str) -> tuple[int, int, int]:
    """At one instant on Redis's clock: ms until the session's deadline, the history's TTL, the sessions' TTL."""
    now, deadline, history_ttl, sessions_ttl = await client.eval(
        _TIMES, 2, sessions_key(channel, user), history_key(channel, user), pid)
    return int(deadline) - int(now), int(history_ttl), int(sessions_ttl)


async def send(sender: Backend, channel: str, user: str, data: bytes, *, volatile: bool = False) -> Routed:
    return await sender.transport.publish_to_user(channel, user, data, volatile=volatile)


async def stored(sender: Backend, channel: str, user: str, count: int, *, start: int = 0) -> list[str]:
    """Send ``count`` messages to an offline user with a session; their offsets."""
    offsets = []
    for n in range(start, start + count):
        routed = await send(sender, channel, user, b"m%d" % n)
        assert routed.status == "stored" and routed.offset is not None
        offsets.append(routed.offset)
    return offsets


async def read_history(sessions: RedisSessions, user: str, start: str) -> list[list[tuple[str, bytes]]]:
    return [page async for page in sessions.history(user, start)]


async def next_received(replica: Backend, timeout: float = 5.0) -> Received:
    async with asyncio.timeout(timeout), contextlib.aclosing(replica.transport.messages()) as messages:
        async for received in messages:
            return received
    raise AssertionError("the stream of messages ended")


def claimed(result: Claim | str) -> Claim:
    assert isinstance(result, Claim), result
    return result


# --- opening a session ---------------------------------------------------------------------


async def live_session(open_replica: OpenReplica, user: str) -> tuple[Backend, Session]:
    """A replica holding socket ``sid-1`` of ``user``, with a session that its presence keeps alive."""
    replica = await open_replica()
    session = await sessions_of(replica).open(user, "sid-1")
    await presence_of(replica).add(user, "sid-1", session)
    return replica, session


async def test_a_session_opened_on_an_empty_history_starts_after_a_start_marker_it_adds(
        open_replica: OpenReplica, channel: str, user: str) -> None:
    replica = await open_replica()

    session = await sessions_of(replica).open(user, "sid-1")

    client = await client_of(replica)
    assert await history(client, channel, user) == [(session.start, {b"s": b""})]
    assert await session_entry(client, channel, user, session.pid) == [
        await deadline_of(client, channel, user, session.pid), session.epoch, "sid-1", session.start,
        str(MAX_MESSAGES), process_of(replica)]


async def deadline_of(client: Client, channel: str, user: str, pid: str) -> str:
    entry = await session_entry(client, channel, user, pid)
    assert entry is not None
    return entry[0]


async def test_a_session_opened_on_a_history_starts_after_its_last_entry(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    replica = await open_replica()
    await sessions_of(replica).open(user, "sid-1")
    offsets = await stored(sender, channel, user, 3)

    later = await sessions_of(replica).open(user, "sid-2")

    assert later.start == offsets[-1]
    assert len(await history(await client_of(replica), channel, user)) == 4  # no second marker


async def test_a_session_is_kept_unattended_for_a_dead_replicas_ttl_plus_the_window(
        open_replica: OpenReplica, channel: str, user: str) -> None:
    """Its replica may crash at once: nothing but the deadline written ahead ends the session."""
    replica = await open_replica()

    session = await sessions_of(replica).open(user, "sid-1")

    deadline, history_ttl, sessions_ttl = await times_left(await client_of(replica), channel, user, session.pid)
    assert INSTANCE_TTL_MS + WINDOW * 1000 - 50 < deadline <= INSTANCE_TTL_MS + WINDOW * 1000
    assert history_ttl >= deadline - ROUNDING_MS and sessions_ttl >= deadline - ROUNDING_MS


# --- claiming a session --------------------------------------------------------------------


async def test_claiming_an_unknown_session_says_unknown(open_replica: OpenReplica, user: str) -> None:
    replica = await open_replica()
    await sessions_of(replica).open(user, "sid-1")

    assert await sessions_of(replica).claim(user, "no-such-pid", None) == "unknown"
    assert await sessions_of(replica).claim("another-user", "no-such-pid", None) == "unknown"


async def test_claiming_a_session_past_its_deadline_says_expired_and_removes_it(
        open_replica: OpenReplica, channel: str, user: str) -> None:
    replica = await open_replica()
    session = await sessions_of(replica).open(user, "sid-1")
    client = await client_of(replica)
    await expire(client, channel, user, session.pid)

    assert await sessions_of(replica).claim(user, session.pid, None) == "expired"
    assert await session_entry(client, channel, user, session.pid) is None


async def test_claiming_a_session_whose_start_was_trimmed_says_gone_and_removes_it(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    replica = await open_replica(recovery_max_messages=3)
    session = await sessions_of(replica).open(user, "sid-1")
    await stored(sender, channel, user, 3)  # the start marker is trimmed to keep 3

    assert await sessions_of(replica).claim(user, session.pid, None) == "gone"
    assert await session_entry(await client_of(replica), channel, user, session.pid) is None


async def test_claiming_a_session_whose_history_was_lost_says_gone(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    replica = await open_replica()
    session = await sessions_of(replica).open(user, "sid-1")
    [offset] = await stored(sender, channel, user, 1)
    await (await client_of(replica)).delete(history_key(channel, user))

    assert await sessions_of(replica).claim(user, session.pid, offset) == "gone"


async def test_a_claim_returns_the_old_socket_id_and_process_and_takes_the_session_over(
        open_replica: OpenReplica, channel: str, user: str) -> None:
    old, new = await open_replica("old"), await open_replica("new")
    session = await sessions_of(old).open(user, "sid-1")

    claim = claimed(await sessions_of(new).claim(user, session.pid, None))

    assert (claim.sid, claim.previous) == ("sid-1", process_of(old))
    assert claim.session.pid == session.pid and claim.session.start == session.start
    assert claim.session.epoch != session.epoch
    entry = await session_entry(await client_of(new), channel, user, session.pid)
    assert entry is not None and (entry[1], entry[5]) == (claim.session.epoch, process_of(new))


async def test_a_connection_whose_session_was_taken_over_neither_refreshes_nor_ends_it(
        open_replica: OpenReplica, channel: str, user: str) -> None:
    """The old replica's heartbeat and disconnect find another epoch: the new connection's
    session and presence entry (same socket id) are left as they are."""
    old, new = await open_replica("old"), await open_replica("new")
    session = await sessions_of(old).open(user, "sid-1")
    await presence_of(old).add(user, "sid-1", session)
    claim = claimed(await sessions_of(new).claim(user, session.pid, None))
    await presence_of(new).add(user, "sid-1", claim.session)
    client = await client_of(new)
    taken = await session_entry(client, channel, user, session.pid)

    await presence_of(old).heartbeat()
    assert await session_entry(client, channel, user, session.pid) == taken
    assert await client.hget(presence_key(channel, user), "sid-1") == process_of(new).encode()

    for keep in (True, False):
        await presence_of(old).remove(user, "sid-1", session, keep=keep)
        assert await session_entry(client, channel, user, session.pid) == taken
        assert await client.hget(presence_key(channel, user), "sid-1") == process_of(new).encode()


async def test_a_claim_starts_at_the_sessions_start_when_the_clients_offset_is_older(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    """An offset kept from an earlier session of the client replays nothing of before this one."""
    replica = await open_replica()
    await sessions_of(replica).open(user, "sid-1")
    earlier = await stored(sender, channel, user, 2)
    session = await sessions_of(replica).open(user, "sid-2")

    claim = claimed(await sessions_of(replica).claim(user, session.pid, earlier[0]))

    assert claim.session.start == session.start == earlier[-1]


async def test_a_claim_starts_after_a_later_offset_the_client_received(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    replica = await open_replica()
    session = await sessions_of(replica).open(user, "sid-1")
    offsets = await stored(sender, channel, user, 3)

    claim = claimed(await sessions_of(replica).claim(user, session.pid, offsets[1]))

    assert claim.session.start == offsets[1]
    assert await read_history(sessions_of(replica), user, claim.session.start) == [[(offsets[2], b"m2")]]


async def test_a_claim_from_an_offset_the_history_never_held_says_gone(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    replica = await open_replica()
    session = await sessions_of(replica).open(user, "sid-1")
    [offset] = await stored(sender, channel, user, 1)
    ms, _, seq = offset.partition("-")

    assert await sessions_of(replica).claim(user, session.pid, f"{ms}-{int(seq) + 1}") == "gone"


async def test_a_claim_keeps_the_history_at_least_as_long_as_the_session(
        open_replica: OpenReplica, channel: str, user: str) -> None:
    replica = await open_replica()
    session = await sessions_of(replica).open(user, "sid-1")
    client = await client_of(replica)
    await client.pexpire(history_key(channel, user), 100)

    claimed(await sessions_of(replica).claim(user, session.pid, None))

    deadline, history_ttl, sessions_ttl = await times_left(client, channel, user, session.pid)
    assert deadline > WINDOW * 1000 and history_ttl >= deadline - ROUNDING_MS and sessions_ttl >= deadline - ROUNDING_MS


# --- reading a history ---------------------------------------------------------------------


async def test_a_history_is_read_in_order_a_page_at_a_time_after_its_start(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    count = 2 * HISTORY_PAGE + 30
    replica = await open_replica(recovery_max_messages=count + 1)
    session = await sessions_of(replica).open(user, "sid-1")
    offsets = await stored(sender, channel, user, count)

    pages = await read_history(sessions_of(replica), user, session.start)

    assert len(pages) == 3 and all(len(page) <= HISTORY_PAGE for page in pages)
    assert [entry for page in pages for entry in page] == [(offset, b"m%d" % n) for n, offset in enumerate(offsets)]


async def test_a_history_skips_entries_that_hold_no_message(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    replica = await open_replica()
    session = await sessions_of(replica).open(user, "sid-1")
    first = await stored(sender, channel, user, 1)
    marker: bytes = await (await client_of(replica)).xadd(history_key(channel, user), {"s": ""})  # type: ignore[assignment]
    second = await stored(sender, channel, user, 1, start=1)

    pages = await read_history(sessions_of(replica), user, session.start)

    assert pages == [[(first[0], b"m0"), (second[0], b"m1")]]
    assert marker.decode() in [entry_id for entry_id, _ in await history(await client_of(replica), channel, user)]


async def test_a_history_whose_start_was_trimmed_since_the_claim_raises_history_gone(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    replica = await open_replica(recovery_max_messages=3)
    session = await sessions_of(replica).open(user, "sid-1")
    claim = claimed(await sessions_of(replica).claim(user, session.pid, None))
    await stored(sender, channel, user, 3)

    with pytest.raises(HistoryGone):
        await read_history(sessions_of(replica), user, claim.session.start)


async def test_a_history_holds_at_most_recovery_max_messages(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    replica = await open_replica(recovery_max_messages=5)
    await sessions_of(replica).open(user, "sid-1")

    offsets = await stored(sender, channel, user, 12)

    assert [entry_id for entry_id, _ in await history(await client_of(replica), channel, user)] == offsets[-5:]


# --- sending: stored, sent or refused ------------------------------------------------------


async def test_a_send_to_a_user_offline_within_a_sessions_window_is_stored_under_its_entry_id(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    replica = await open_replica()
    session = await sessions_of(replica).open(user, "sid-1")

    routed = await send(sender, channel, user, b"transfer here")

    assert routed.online is False and routed.status == "stored"
    assert (await history(await client_of(replica), channel, user))[-1] == (routed.offset, {b"m": b"transfer here"})
    assert routed.offset != session.start


async def test_a_send_to_a_user_without_socket_or_session_is_refused_and_not_stored(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    replica = await open_replica()

    routed = await send(sender, channel, user, b"nobody")

    assert routed == Routed(False, None) and routed.status is None
    assert await (await client_of(replica)).exists(history_key(channel, user)) == 0


async def test_a_send_to_an_online_user_is_sent_with_its_offset_to_the_holding_replica(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    holder = await open_replica("holder")
    session = await sessions_of(holder).open(user, "sid-1")
    await presence_of(holder).add(user, "sid-1", session)

    routed = await send(sender, channel, user, b"arrival")

    assert routed.status == "sent" and routed.offset is not None
    assert await next_received(holder) == (b"arrival", routed.offset)
    assert (await history(await client_of(holder), channel, user))[-1] == (routed.offset, {b"m": b"arrival"})


async def test_the_offset_reaches_the_replicas_inbox_entry_as_field_o(
        open_single_replica: OpenReplica, single_sender: Backend, channel: str, user: str) -> None:
    holder = await open_single_replica("holder")
    session = await sessions_of(holder).open(user, "sid-1")
    await presence_of(holder).add(user, "sid-1", session)

    routed = await send(single_sender, channel, user, b"arrival")

    assert routed.offset is not None
    [(_, fields)] = await (await client_of(holder)).xrange(  # type: ignore[misc]
        inbox_key(channel, process_of(holder)))
    assert fields == {b"m": b"arrival", b"o": routed.offset.encode()}


async def test_a_volatile_send_is_never_stored(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    holder = await open_replica("holder")
    session = await sessions_of(holder).open(user, "sid-1")
    client = await client_of(holder)
    before = await history(client, channel, user)

    assert await send(sender, channel, user, b"position", volatile=True) == Routed(False, None)  # offline: refused
    await presence_of(holder).add(user, "sid-1", session)
    assert await send(sender, channel, user, b"position", volatile=True) == Routed(True, None)
    assert await next_received(holder) == (b"position", None)
    assert await history(client, channel, user) == before


async def test_a_send_removes_expired_sessions_on_its_way(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    replica = await open_replica()
    gone, kept = [await sessions_of(replica).open(user, sid) for sid in ("sid-1", "sid-2")]
    client = await client_of(replica)
    await expire(client, channel, user, gone.pid)

    assert (await send(sender, channel, user, b"one")).status == "stored"
    assert await client.hkeys(sessions_key(channel, user)) == [kept.pid.encode()]

    await expire(client, channel, user, kept.pid)
    assert (await send(sender, channel, user, b"two")).status is None
    assert await client.exists(sessions_key(channel, user)) == 0


async def test_a_stored_send_keeps_the_history_at_least_as_long_as_the_session(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    replica = await open_replica()
    session = await sessions_of(replica).open(user, "sid-1")
    client = await client_of(replica)
    await client.pexpire(history_key(channel, user), 100)

    await stored(sender, channel, user, 1)

    deadline, history_ttl, _ = await times_left(client, channel, user, session.pid)
    assert history_ttl >= deadline - ROUNDING_MS and deadline > 100


# --- the presence side: heartbeat (RECORD) and leaving (LEAVE) ------------------------------


async def test_a_heartbeat_pushes_a_live_sockets_session_a_dead_replicas_ttl_plus_the_window_ahead(
        open_replica: OpenReplica, channel: str, user: str) -> None:
    replica = await open_replica()
    session = await sessions_of(replica).open(user, "sid-1")
    client = await client_of(replica)
    await presence_of(replica).add(user, "sid-1", session)
    await client.pexpire(history_key(channel, user), 100)
    await client.pexpire(sessions_key(channel, user), 100)

    await presence_of(replica).heartbeat()

    deadline, history_ttl, sessions_ttl = await times_left(client, channel, user, session.pid)
    assert INSTANCE_TTL_MS + WINDOW * 1000 - 50 < deadline <= INSTANCE_TTL_MS + WINDOW * 1000
    assert history_ttl >= deadline - ROUNDING_MS and sessions_ttl >= deadline - ROUNDING_MS


async def test_a_session_of_a_crashed_replica_outlives_the_window_until_the_replica_counts_as_dead(
        open_replica: OpenReplica, user: str) -> None:
    """No heartbeat after the socket was recorded, no disconnect: past the window, the session
    is still claimable; one whose connection was lost (and said so) is not."""
    window = 0.2
    crashed = await open_replica("crashed", recovery_window=window)
    other = await open_replica("other", recovery_window=window)
    unattended, left = [await sessions_of(crashed).open(user, sid) for sid in ("sid-1", "sid-2")]
    await presence_of(crashed).add(user, "sid-1", unattended)
    await presence_of(crashed).add(user, "sid-2", left)
    await presence_of(crashed).remove(user, "sid-2", left, keep=True)

    await asyncio.sleep(2 * window)  # the time passing is what is tested

    assert await sessions_of(other).claim(user, left.pid, None) == "expired"
    claimed(await sessions_of(other).claim(user, unattended.pid, None))


async def test_a_lost_connection_keeps_its_session_for_the_window_from_now(
        open_replica: OpenReplica, channel: str, user: str) -> None:
    replica, session = await live_session(open_replica, user)

    await presence_of(replica).remove(user, "sid-1", session, keep=True)

    client = await client_of(replica)
    deadline, history_ttl, _ = await times_left(client, channel, user, session.pid)
    assert WINDOW * 1000 - 50 < deadline <= WINDOW * 1000 and history_ttl >= deadline - ROUNDING_MS
    assert await client.hexists(presence_key(channel, user), "sid-1") is False


async def test_a_connection_that_ends_on_purpose_ends_its_session(
        open_replica: OpenReplica, channel: str, user: str) -> None:
    replica, session = await live_session(open_replica, user)

    await presence_of(replica).remove(user, "sid-1", session, keep=False)

    client = await client_of(replica)
    assert await session_entry(client, channel, user, session.pid) is None
    assert await client.hexists(presence_key(channel, user), "sid-1") is False


async def test_leaving_with_a_stale_epoch_changes_nothing(
        open_replica: OpenReplica, channel: str, user: str) -> None:
    replica, session = await live_session(open_replica, user)
    client = await client_of(replica)
    before = await session_entry(client, channel, user, session.pid)
    stale = Session(session.pid, "0" * 16, session.start)

    for keep in (True, False):
        await presence_of(replica)._withdraw(user, "sid-1", stale, keep)

    assert await session_entry(client, channel, user, session.pid) == before
    assert await client.hexists(presence_key(channel, user), "sid-1") is True
