"""RedisSessions, the presence that keeps sessions alive, and the send functions that store into
histories, against a real Redis.

Recoverable sessions, each user's history and the functions that write them
(``server/backends/redis/{sessions,presence,routing.lua}``), signed as in production, on
one Redis and again on a Redis Cluster where a test does not depend on how replicas
are reached. Attacks are made as a Redis neighbour without the signing key would.
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
from server.backends.claims import CLAIM_BURST, HISTORY_PAGE
from server.backends.redis.entries import INSTANCE_TTL_MS, SessionEntry, SignedEntries, now_ms
from server.backends.redis.keys import consumed_key, history_key, inbox_key, presence_key, sessions_key
from server.backends.redis.presence import RedisPresence
from server.backends.redis.sessions import RedisSessions
from server.backends.redis.transport import RedisTransport
from server.config import RECOVERY_MAX_MESSAGES
from server.errors import PublishError, TooManyConnectionsError
from tests.helpers.backends import OpenReplica, emitter_backend, replica_backends

WINDOW = 30.0  # seconds; no test waits for it unless it sets its own
MAX_MESSAGES = 10
MAX_SESSIONS = 4
KEY = b"sessions-test-signing-key-0123456789"

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
def entries(channel: str) -> SignedEntries:
    """Entries as the replicas of ``channel`` sign them (what a test checks, or forges without the key)."""
    return SignedEntries(channel, KEY)


def options() -> dict[str, Any]:
    return {"signing_key": KEY, "recovery_window": WINDOW, "recovery_max_messages": MAX_MESSAGES,
            "max_sessions": MAX_SESSIONS, "max_sockets": 3}


@pytest.fixture
async def open_replica(redis_url: str, channel: str) -> AsyncIterator[OpenReplica]:
    """Factory: a replica's backend with recovery on, registered and reading its messages."""
    async with replica_backends(redis_url, channel, **options()) as open_one:
        yield open_one


@pytest.fixture
async def open_single_replica(single_redis_url: str, channel: str) -> AsyncIterator[OpenReplica]:
    async with replica_backends(single_redis_url, channel, **options()) as open_one:
        yield open_one


@pytest.fixture
async def sender(redis_url: str, channel: str) -> AsyncIterator[Backend]:
    """An emitter's backend (no session store of its own): what it sends is stored all the same."""
    async with emitter_backend(redis_url, channel, signing_key=KEY) as backend:
        yield backend


@pytest.fixture
async def single_sender(single_redis_url: str, channel: str) -> AsyncIterator[Backend]:
    async with emitter_backend(single_redis_url, channel, signing_key=KEY) as backend:
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


async def history(client: Client, channel: str, user: str) -> list[bytes]:
    """The history's elements after its header."""
    elements: list[bytes] = await client.lrange(history_key(channel, user), 1, -1)  # type: ignore[assignment]
    return elements


async def session_entry(client: Client, entries: SignedEntries, channel: str, user: str,
                        pid: str) -> SessionEntry | None:
    """A session's stored entry, read as a replica believes it (``None``: absent or not genuine)."""
    value: bytes | None = await client.hget(sessions_key(channel, user), pid)  # type: ignore[assignment]
    return None if value is None else entries.parse_session(user, pid, value)


async def rewrite(client: Client, entries: SignedEntries, channel: str, user: str, pid: str, **changes: Any) -> None:
    """Rewrite a session's entry, signed (as only the replicas could): e.g. its deadline passed."""
    entry = await session_entry(client, entries, channel, user, pid)
    assert entry is not None
    fields = {name: getattr(entry, name) for name in SessionEntry.__slots__} | changes
    await client.hset(sessions_key(channel, user), pid, entries.session(user, pid, SessionEntry(**fields)))


async def send(sender: Backend, channel: str, user: str, data: bytes, *, volatile: bool = False) -> Routed:
    return await sender.transport.publish_to_user(channel, user, data, volatile=volatile)


async def stored(sender: Backend, channel: str, user: str, count: int, *, start: int = 0) -> list[str]:
    """Send ``count`` messages to an offline user with a session; their offsets."""
    offsets = []
    for n in range(start, start + count):
        routed = await send(sender, channel, user, b"m%d" % n)
        assert routed.status == "stored" and routed.offset is not None, routed
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


def offset_after(offset: str, steps: int = 1) -> str:
    generation, _, sequence = offset.partition("-")
    return f"{generation}-{int(sequence) + steps}"


async def live_session(open_replica: OpenReplica, user: str, sid: str = "sid-1",
                       replica: Backend | None = None) -> tuple[Backend, Session]:
    """A replica holding socket ``sid`` of ``user``, with a session that its presence keeps alive."""
    replica = replica or await open_replica()
    session = await sessions_of(replica).open(user, sid)
    await presence_of(replica).add(user, sid, session)
    return replica, session


async def lost_session(open_replica: OpenReplica, user: str, sid: str = "sid-1",
                       replica: Backend | None = None) -> tuple[Backend, Session]:
    """As ``live_session``, but its connection was lost: recoverable for the window, the user offline."""
    replica, session = await live_session(open_replica, user, sid, replica)
    await presence_of(replica).remove(user, sid, session, keep=True)
    return replica, session


def kicks(replica: Backend) -> list[str]:
    """The sids ``replica``'s presence disconnects as taken over elsewhere, as they come."""
    kicked: list[str] = []

    async def on_taken(sid: str) -> None:
        kicked.append(sid)

    presence_of(replica).on_taken(on_taken)
    return kicked


# --- opening a session ---------------------------------------------------------------------


async def test_a_session_opened_on_no_history_starts_at_a_new_generation_and_is_written_with_its_socket(
        open_replica: OpenReplica, entries: SignedEntries, channel: str, user: str) -> None:
    replica = await open_replica()

    session = await sessions_of(replica).open(user, "sid-1")

    client = await client_of(replica)
    generation, _, sequence = session.start.partition("-")
    assert sequence == "0" and await client.lindex(history_key(channel, user), 0) == (
        f"h|{generation}|0|{MAX_MESSAGES}".encode())
    assert await session_entry(client, entries, channel, user, session.pid) is None  # not until the socket joins
    await presence_of(replica).add(user, "sid-1", session)
    entry = await session_entry(client, entries, channel, user, session.pid)
    assert entry is not None and (entry.epoch, entry.sid, entry.start, entry.process) == (
        session.epoch, "sid-1", session.start, process_of(replica))


async def test_a_session_opened_on_a_history_starts_after_its_last_element(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    replica, _ = await lost_session(open_replica, user)
    offsets = await stored(sender, channel, user, 3)

    later = await sessions_of(replica).open(user, "sid-2")

    assert later.start == offsets[-1]


async def test_a_session_is_kept_unattended_for_a_dead_replicas_ttl_plus_the_window(
        open_replica: OpenReplica, entries: SignedEntries, channel: str, user: str) -> None:
    """Its replica may crash at once: nothing but the deadline written ahead ends the session."""
    replica, session = await live_session(open_replica, user)

    entry = await session_entry(await client_of(replica), entries, channel, user, session.pid)

    assert entry is not None
    assert INSTANCE_TTL_MS + WINDOW * 1000 - 500 < entry.deadline - now_ms() <= INSTANCE_TTL_MS + WINDOW * 1000
    client = await client_of(replica)
    for key in (sessions_key(channel, user), history_key(channel, user)):
        assert await client.pttl(key) >= INSTANCE_TTL_MS + WINDOW * 1000 - 500


async def test_a_user_has_at_most_max_sessions_the_oldest_dropped_when_one_more_opens(
        open_replica: OpenReplica, channel: str, user: str) -> None:
    """One token's connections lost in a loop leave at most that many sessions behind."""
    replica = await open_replica()
    sessions = []
    for n in range(MAX_SESSIONS + 3):
        sessions.append((await lost_session(open_replica, user, f"sid-{n}", replica))[1])

    held = await (await client_of(replica)).hkeys(sessions_key(channel, user))
    assert sorted(held) == sorted(session.pid.encode() for session in sessions[-MAX_SESSIONS:])


async def test_a_live_sockets_session_is_dropped_for_the_cap_only_after_every_lost_ones(
        open_replica: OpenReplica, channel: str, user: str) -> None:
    """Churn beside a rider's live socket drops the churn's sessions, not the rider's (the oldest)."""
    replica, live = await live_session(open_replica, user, "sid-live")
    for n in range(MAX_SESSIONS + 3):
        await lost_session(open_replica, user, f"sid-{n}", replica)

    held = await (await client_of(replica)).hkeys(sessions_key(channel, user))
    assert live.pid.encode() in held and len(held) == MAX_SESSIONS


async def test_expired_sessions_go_at_the_next_heartbeat_without_waiting_for_a_send(
        open_replica: OpenReplica, entries: SignedEntries, channel: str, user: str) -> None:
    replica, live = await live_session(open_replica, user)
    _, gone = await lost_session(open_replica, user, "sid-2", replica)
    client = await client_of(replica)
    await rewrite(client, entries, channel, user, gone.pid, deadline=now_ms() - 60_000)

    await presence_of(replica).heartbeat()

    assert await client.hkeys(sessions_key(channel, user)) == [live.pid.encode()]


# --- claiming a session --------------------------------------------------------------------


async def test_claiming_an_unknown_session_says_unknown(open_replica: OpenReplica, user: str) -> None:
    replica, _ = await lost_session(open_replica, user)

    assert await sessions_of(replica).claim(user, "no-such-pid", None) == "unknown"
    assert await sessions_of(replica).claim("another-user", "no-such-pid", None) == "unknown"


async def test_claiming_a_session_past_its_deadline_says_expired(
        open_replica: OpenReplica, entries: SignedEntries, channel: str, user: str) -> None:
    replica, session = await lost_session(open_replica, user)
    await rewrite(await client_of(replica), entries, channel, user, session.pid, deadline=now_ms() - 1)

    assert await sessions_of(replica).claim(user, session.pid, None) == "expired"


async def test_a_forged_session_entry_is_never_recovered_and_kicks_nobody(
        open_replica: OpenReplica, channel: str, user: str) -> None:
    """A neighbour without the key writes an entry naming a victim's socket id (read from presence)
    under its own account: the claim finds no genuine entry."""
    victim_replica, _ = await live_session(open_replica, "victim")
    forger = SignedEntries(channel, b"not-the-replicas-key-0123456789abcdef")
    forged = forger.session(user, "stolen", SessionEntry(now_ms() + 60_000, "e", "sid-1", "0-0", 0, "x"))
    await (await client_of(victim_replica)).hset(sessions_key(channel, user), "stolen", forged)

    assert await sessions_of(victim_replica).claim(user, "stolen", None) == "unknown"


async def test_a_claim_whose_old_socket_has_a_genuine_presence_entry_is_vouched_for(
        open_replica: OpenReplica, user: str) -> None:
    _old, session = await live_session(open_replica, user)

    claim = claimed(await sessions_of(await open_replica("new")).claim(user, session.pid, None))

    assert claim.vouched is True and claim.sid == "sid-1"


async def test_a_claim_whose_sid_holds_a_forged_presence_entry_is_not_vouched_for(
        open_replica: OpenReplica, channel: str, user: str) -> None:
    replica, session = await lost_session(open_replica, user)
    await (await client_of(replica)).hset(presence_key(channel, user), "sid-1", f"{process_of(replica)}#1#ab")

    claim = claimed(await sessions_of(replica).claim(user, session.pid, None))

    assert claim.vouched is False


async def test_claiming_a_session_whose_history_was_trimmed_past_its_start_says_gone(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    replica, session = await live_session(open_replica, user)
    await stored_while_online(sender, channel, user, MAX_MESSAGES + 5)
    await presence_of(replica).heartbeat()  # trims the history to its limit

    assert await sessions_of(replica).claim(user, session.pid, None) == "gone"


async def stored_while_online(sender: Backend, channel: str, user: str, count: int) -> list[str]:
    """``count`` messages stored (and sent) to a user who is online; their offsets."""
    offsets = []
    for n in range(count):
        routed = await send(sender, channel, user, b"live %d" % n)
        assert routed.status == "sent" and routed.offset is not None
        offsets.append(routed.offset)
    return offsets


async def test_claiming_a_session_whose_history_was_lost_says_gone(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    replica, session = await lost_session(open_replica, user)
    [offset] = await stored(sender, channel, user, 1)
    await (await client_of(replica)).delete(history_key(channel, user))

    assert await sessions_of(replica).claim(user, session.pid, offset) == "gone"


async def test_claiming_a_session_of_a_history_lost_and_opened_anew_says_gone(
        open_replica: OpenReplica, channel: str, user: str) -> None:
    """Offsets carry the history's generation: those of a lost history never match a new one's."""
    replica, session = await lost_session(open_replica, user)
    await (await client_of(replica)).delete(history_key(channel, user))
    await sessions_of(replica).open(user, "sid-2")

    assert await sessions_of(replica).claim(user, session.pid, None) == "gone"


async def test_claiming_from_an_offset_the_history_never_held_says_gone(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    replica, session = await lost_session(open_replica, user)
    [offset] = await stored(sender, channel, user, 1)

    assert await sessions_of(replica).claim(user, session.pid, offset_after(offset)) == "gone"


async def test_claiming_a_session_that_missed_more_than_max_messages_says_gone(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    """Without a heartbeat nobody trims its history, which holds twice as many: the claim still refuses."""
    replica, session = await lost_session(open_replica, user)
    offsets = await stored(sender, channel, user, MAX_MESSAGES + 1)

    assert await sessions_of(replica).claim(user, session.pid, None) == "gone"
    claimed(await sessions_of(replica).claim(user, session.pid, offsets[0]))  # missed MAX_MESSAGES: recovers


async def test_a_full_history_stores_no_more_and_a_claim_from_before_that_says_gone(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    """A sender cannot trim: at twice the limit the history ends with a marker, and a message
    after it is answered as not stored (the user is offline: not recoverable)."""
    replica, session = await lost_session(open_replica, user)
    offsets = await stored(sender, channel, user, 2 * MAX_MESSAGES)

    assert await send(sender, channel, user, b"one too many") == Routed(False, None)
    assert (await history(await client_of(replica), channel, user))[-1] == b"!"
    assert await sessions_of(replica).claim(user, session.pid, offsets[-2]) == "gone"


async def test_a_claim_returns_the_old_socket_id_and_process_and_takes_the_session_over(
        open_replica: OpenReplica, entries: SignedEntries, channel: str, user: str) -> None:
    old, session = await lost_session(open_replica, user)
    new = await open_replica("new")

    claim = claimed(await sessions_of(new).claim(user, session.pid, None))

    assert (claim.sid, claim.previous) == ("sid-1", process_of(old))
    assert claim.session.pid == session.pid and claim.session.start == session.start
    assert claim.session.epoch != session.epoch and claim.session.claimed
    entry = await session_entry(await client_of(new), entries, channel, user, session.pid)
    assert entry is not None and (entry.epoch, entry.process) == (claim.session.epoch, process_of(new))


async def test_two_claims_of_one_session_at_once_give_it_to_exactly_one(
        open_replica: OpenReplica, user: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both read the session before either takes it over: the second finds it taken."""
    _, session = await lost_session(open_replica, user)
    first, second = await open_replica("first"), await open_replica("second")
    both_read = asyncio.Barrier(2)
    for replica in (first, second):
        store = sessions_of(replica)

        async def call(name: str, keys: list[str], args: list[Any], *, read_only: bool = False,
                       original: Any = store._call) -> Any:
            if name == "claim_take":
                await both_read.wait()
            return await original(name, keys, args, read_only=read_only)

        monkeypatch.setattr(store, "_call", call)

    results = await asyncio.gather(*(sessions_of(replica).claim(user, session.pid, None)
                                     for replica in (first, second)))

    assert sorted(type(result).__name__ for result in results) == ["Claim", "str"] and "taken" in results


async def test_a_session_claimed_in_a_loop_is_refused_as_too_frequent_past_its_burst(
        open_replica: OpenReplica, user: str) -> None:
    """A client reconnecting with one pid again and again cannot make Redis read the history each time."""
    replica, session = await lost_session(open_replica, user)
    for _ in range(CLAIM_BURST):
        claimed(await sessions_of(replica).claim(user, session.pid, None))

    assert await sessions_of(replica).claim(user, session.pid, None) == "too_frequent"


async def test_a_connection_whose_session_was_taken_over_neither_refreshes_nor_ends_it(
        open_replica: OpenReplica, entries: SignedEntries, channel: str, user: str) -> None:
    """The old replica's heartbeat and disconnect find another epoch and another process's entry:
    the new connection's session and presence entry (same socket id) are left as they are."""
    old, session = await live_session(open_replica, user)
    new = await open_replica("new")
    claim = claimed(await sessions_of(new).claim(user, session.pid, None))
    await presence_of(new).add(user, "sid-1", claim.session)
    client = await client_of(new)
    taken = await client.hget(sessions_key(channel, user), session.pid)
    kicked = kicks(old)
    await presence_of(old).heartbeat()
    assert kicked == ["sid-1"]  # the leftover socket of the old replica goes
    assert await client.hget(sessions_key(channel, user), session.pid) == taken
    for keep in (True, False):
        await presence_of(old).remove(user, "sid-1", session, keep=keep)
        assert await client.hget(sessions_key(channel, user), session.pid) == taken
        value = await client.hget(presence_key(channel, user), "sid-1")
        assert isinstance(value, bytes) and value.startswith(process_of(new).encode())


async def test_a_forged_presence_entry_over_a_live_socket_is_written_over_and_kicks_nobody(
        open_replica: OpenReplica, channel: str, user: str) -> None:
    """A neighbour cannot make a replica disconnect its own socket by naming another process."""
    replica, _ = await live_session(open_replica, user)
    client = await client_of(replica)
    await client.hset(presence_key(channel, user), "sid-1", "another-process#1#00")
    kicked = kicks(replica)
    await presence_of(replica).heartbeat()

    value = await client.hget(presence_key(channel, user), "sid-1")
    assert kicked == [] and isinstance(value, bytes) and value.startswith(process_of(replica).encode())


async def test_a_presence_entry_of_non_ascii_digits_over_a_live_socket_is_forged_and_the_heartbeat_goes_on(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    """``'²'.isdigit()`` is true and ``int('²')`` raises: such an entry once stopped a replica's heartbeat."""
    replica, _ = await live_session(open_replica, user)
    client = await client_of(replica)
    await client.hset(presence_key(channel, user), "sid-1", "x#\u00b2#00")

    await presence_of(replica).heartbeat()

    value = await client.hget(presence_key(channel, user), "sid-1")
    assert isinstance(value, bytes) and value.startswith(process_of(replica).encode())
    assert (await send(sender, channel, user, b"after", volatile=True)).online is True


async def test_a_replayed_entry_of_the_replica_a_socket_was_recovered_from_kicks_nobody(
        open_replica: OpenReplica, channel: str, user: str) -> None:
    """Only a later claim of the session (its signed ``tat`` past this socket's) proves a takeover."""
    old, session = await lost_session(open_replica, user)
    client = await client_of(old)
    await presence_of(old).add(user, "sid-1", session)
    recorded = await client.hget(presence_key(channel, user), "sid-1")  # signed by the old replica
    await presence_of(old).remove(user, "sid-1", session, keep=True)
    new = await open_replica("new")
    claim = claimed(await sessions_of(new).claim(user, session.pid, None))
    await presence_of(new).add(user, "sid-1", claim.session)
    await client.hset(presence_key(channel, user), "sid-1", recorded)
    kicked = kicks(new)
    await presence_of(new).heartbeat()

    value = await client.hget(presence_key(channel, user), "sid-1")
    assert kicked == [] and isinstance(value, bytes) and value.startswith(process_of(new).encode())


async def test_a_flood_of_future_dated_presence_entries_is_deleted_by_the_next_heartbeat(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    """Over the hard limit the send functions see nobody (reading it costs every send): the user
    looks offline for one heartbeat at most, not for as long as the flood stays."""
    replica, _ = await live_session(open_replica, user)
    client = await client_of(replica)
    forged = {f"forged-{n}": f"{process_of(replica)}#99999999999999#00" for n in range(1001)}
    await client.hset(presence_key(channel, user), mapping=forged)  # type: ignore[arg-type]
    assert (await send(sender, channel, user, b"during", volatile=True)).online is False

    await presence_of(replica).heartbeat()

    assert await client.hkeys(presence_key(channel, user)) == [b"sid-1"]
    assert (await send(sender, channel, user, b"after", volatile=True)).online is True


async def test_a_future_dated_presence_entry_is_not_a_live_ones_and_goes_when_a_socket_joins(
        open_replica: OpenReplica, channel: str, user: str) -> None:
    replica = await open_replica()
    client = await client_of(replica)
    await client.hset(presence_key(channel, user), "forged", f"{process_of(replica)}#99999999999999#00")

    await presence_of(replica).add(user, "sid-1")

    assert await client.hkeys(presence_key(channel, user)) == [b"sid-1"]


async def test_sends_while_a_users_sessions_hash_is_flooded_make_its_recoveries_fail_not_miss_them(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    replica, session = await lost_session(open_replica, user)
    client = await client_of(replica)
    junk = {f"junk-{n}": "99999999999999|e|x|1-0|0|p|00" for n in range(1001)}
    await client.hset(sessions_key(channel, user), mapping=junk)  # type: ignore[arg-type]

    assert (await send(sender, channel, user, b"missed")).offset is None
    assert await history(client, channel, user) == [b"!"]
    await presence_of(replica).add(user, "sid-3", await sessions_of(replica).open(user, "sid-3"))
    assert await client.hlen(sessions_key(channel, user)) == 1  # the flood went with the join
    assert await sessions_of(replica).claim(user, session.pid, None) == "unknown"


async def test_a_claim_starts_at_the_sessions_start_when_the_clients_offset_is_older(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    """An offset kept from an earlier session of the client replays nothing of before this one."""
    replica, _ = await lost_session(open_replica, user)
    earlier = await stored(sender, channel, user, 2)
    _, session = await lost_session(open_replica, user, "sid-2", replica)

    claim = claimed(await sessions_of(replica).claim(user, session.pid, earlier[0]))

    assert claim.session.start == session.start == earlier[-1]


async def test_a_claim_starts_after_a_later_offset_the_client_received(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    replica, session = await lost_session(open_replica, user)
    offsets = await stored(sender, channel, user, 3)

    claim = claimed(await sessions_of(replica).claim(user, session.pid, offsets[1]))

    assert claim.session.start == offsets[1]
    assert await read_history(sessions_of(replica), user, claim.session.start) == [[(offsets[2], b"m2")]]


async def test_a_claim_keeps_the_history_at_least_as_long_as_the_session(
        open_replica: OpenReplica, channel: str, user: str) -> None:
    replica, session = await lost_session(open_replica, user)
    client = await client_of(replica)
    await client.pexpire(history_key(channel, user), 100)

    claimed(await sessions_of(replica).claim(user, session.pid, None))

    assert await client.pttl(history_key(channel, user)) > WINDOW * 1000


# --- reading a history ---------------------------------------------------------------------


async def test_a_history_is_read_in_order_a_page_at_a_time_after_its_start(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    count = 2 * HISTORY_PAGE + 30
    replica = await open_replica(recovery_max_messages=count)
    _, session = await lost_session(open_replica, user, replica=replica)
    offsets = await stored(sender, channel, user, count)

    pages = await read_history(sessions_of(replica), user, session.start)

    assert len(pages) == 3 and all(len(page) <= HISTORY_PAGE for page in pages)
    assert [entry for page in pages for entry in page] == [(offset, b"m%d" % n) for n, offset in enumerate(offsets)]


async def test_a_history_read_past_a_marker_of_unstored_messages_raises_history_gone(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    replica, session = await lost_session(open_replica, user)
    await stored(sender, channel, user, 2 * MAX_MESSAGES)
    await send(sender, channel, user, b"not stored")

    with pytest.raises(HistoryGone):
        await read_history(sessions_of(replica), user, session.start)


async def test_a_history_trimmed_past_a_replays_start_since_the_claim_raises_history_gone(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    replica, session = await live_session(open_replica, user)
    claim = claimed(await sessions_of(replica).claim(user, session.pid, None))
    await stored_while_online(sender, channel, user, MAX_MESSAGES + 2)
    await presence_of(replica).heartbeat()

    with pytest.raises(HistoryGone):
        await read_history(sessions_of(replica), user, claim.session.start)


async def test_a_heartbeat_trims_a_history_to_its_limit_keeping_every_offset(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    replica, _session = await live_session(open_replica, user)
    offsets = await stored_while_online(sender, channel, user, MAX_MESSAGES + 4)

    await presence_of(replica).heartbeat()

    assert len(await history(await client_of(replica), channel, user)) == MAX_MESSAGES
    kept = await read_history(sessions_of(replica), user, offsets[3])
    assert [offset for page in kept for offset, _ in page] == offsets[4:]


async def test_a_history_limit_raised_in_its_header_by_a_neighbour_is_capped_at_the_settings_bound(
        open_replica: OpenReplica, channel: str, user: str) -> None:
    """A forged header cannot make a history grow with all of a user's traffic."""
    replica, _session = await live_session(open_replica, user)
    client = await client_of(replica)
    header = await client.lindex(history_key(channel, user), 0)
    assert isinstance(header, bytes)
    generation = header.decode().split("|")[1]
    await client.lset(history_key(channel, user), 0, f"h|{generation}|0|999999999")
    most = int(RECOVERY_MAX_MESSAGES.high)
    await client.rpush(history_key(channel, user), *[b"m"] * (most + 50))

    await presence_of(replica).heartbeat()

    assert await client.llen(history_key(channel, user)) == most + 1
    assert await client.lindex(history_key(channel, user), 0) == f"h|{generation}|50|{most}".encode()


# --- sending: stored, sent or refused ------------------------------------------------------


async def test_a_send_to_a_user_offline_within_a_sessions_window_is_stored_under_its_offset(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    replica, session = await lost_session(open_replica, user)

    routed = await send(sender, channel, user, b"transfer here")

    assert routed.online is False and routed.status == "stored"
    assert routed.offset == offset_after(session.start)
    assert (await history(await client_of(replica), channel, user))[-1] == b"transfer here"


async def test_a_send_to_a_user_without_socket_or_session_is_refused_and_not_stored(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    replica = await open_replica()

    routed = await send(sender, channel, user, b"nobody")

    assert routed == Routed(False, None) and routed.status is None
    assert await (await client_of(replica)).exists(history_key(channel, user)) == 0


async def test_a_send_to_a_user_with_only_a_forged_session_is_refused_not_stored(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    """Else the backend would hear "stored" and skip its push notification for a user who never connected."""
    replica = await open_replica()
    await sessions_of(replica).open(user, "sid-x")  # a history exists, as a forger could make one too
    forger = SignedEntries(channel, b"not-the-replicas-key-0123456789abcdef")
    forged = forger.session(user, "fake", SessionEntry(now_ms() + 60_000, "e", "sid-x", "0-0", 0, "x"))
    await (await client_of(replica)).hset(sessions_key(channel, user), "fake", forged)

    assert (await send(sender, channel, user, b"elevator out of service")).status is None


async def test_a_send_to_an_online_user_is_sent_with_its_offset_to_the_holding_replica(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    holder, _ = await live_session(open_replica, user)

    routed = await send(sender, channel, user, b"arrival")

    assert routed.status == "sent" and routed.offset is not None
    assert await next_received(holder) == (b"arrival", routed.offset)
    assert (await history(await client_of(holder), channel, user))[-1] == b"arrival"


async def test_the_offset_reaches_the_replicas_inbox_before_the_envelope(
        open_single_replica: OpenReplica, single_sender: Backend, channel: str, user: str) -> None:
    holder, _ = await live_session(open_single_replica, user)
    client = await client_of(holder)
    inbox = inbox_key(channel, process_of(holder))
    await client.rpush(inbox, "a placeholder")  # keeps the reader's count off it

    routed = await send(single_sender, channel, user, b"arrival")

    assert routed.offset is not None
    assert await client.lrange(inbox, 1, -1) == [b"@" + routed.offset.encode() + b" arrival"]


async def test_a_volatile_send_is_never_stored(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    holder, _session = await lost_session(open_replica, user)
    client = await client_of(holder)
    before = await history(client, channel, user)

    assert await send(sender, channel, user, b"position", volatile=True) == Routed(False, None)  # offline: refused
    await presence_of(holder).add(user, "sid-2", await sessions_of(holder).open(user, "sid-2"))
    assert await send(sender, channel, user, b"position", volatile=True) == Routed(True, None)
    assert await next_received(holder) == (b"position", None)
    assert await history(client, channel, user) == before


async def test_a_key_of_the_wrong_type_at_a_users_presence_makes_them_offline_until_a_heartbeat_repairs_it(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    """A neighbour cannot wedge a user: sends treat the key as absent (and report it), a replica deletes it."""
    replica, _ = await live_session(open_replica, user)
    client = await client_of(replica)
    await client.delete(presence_key(channel, user))
    await client.xadd(presence_key(channel, user), {"x": "1"})
    found: list[str] = []
    assert isinstance(sender.transport, RedisTransport)
    sender.transport.anomalies._count = found.append

    assert (await send(sender, channel, user, b"during", volatile=True)).online is False
    assert found == ["presence_type"]
    await presence_of(replica).heartbeat()
    assert (await send(sender, channel, user, b"after", volatile=True)).online is True


async def test_a_send_whose_users_only_replica_has_a_full_inbox_fails_instead_of_saying_sent(
        open_single_replica: OpenReplica, single_sender: Backend, channel: str, user: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A flooded inbox (the emitter user may append to any) drops what is sent to it: the sender hears so."""
    monkeypatch.setattr("server.backends.redis.inboxes.INBOX_MAX_LEN", 3)
    full, _ = await live_session(open_single_replica, user)
    client = await client_of(full)
    await client.rpush(inbox_key(channel, process_of(full)), *[b"flood"] * 3)

    with pytest.raises(PublishError):
        await send(single_sender, channel, user, b"lost", volatile=True)
    await live_session(open_single_replica, user, "sid-2", await open_single_replica("other"))
    assert (await send(single_sender, channel, user, b"half", volatile=True)).online is True


async def test_an_inbox_is_read_on_when_its_consumed_counter_is_not_a_number(
        open_single_replica: OpenReplica, single_sender: Backend, channel: str, user: str) -> None:
    """A counter written over by a neighbour once stopped the replica reading its inbox for good."""
    holder, _ = await live_session(open_single_replica, user)
    client = await client_of(holder)
    await client.set(consumed_key(channel, process_of(holder)), "x")

    await send(single_sender, channel, user, b"still", volatile=True)

    assert await next_received(holder) == (b"still", None)


# --- the presence side: heartbeat, the cap on sockets, leaving -------------------------------


async def test_a_heartbeat_pushes_a_live_sockets_session_a_dead_replicas_ttl_plus_the_window_ahead(
        open_replica: OpenReplica, entries: SignedEntries, channel: str, user: str) -> None:
    replica, session = await live_session(open_replica, user)
    client = await client_of(replica)
    await rewrite(client, entries, channel, user, session.pid, deadline=now_ms() + 1000)
    await client.pexpire(history_key(channel, user), 100)

    await presence_of(replica).heartbeat()

    entry = await session_entry(client, entries, channel, user, session.pid)
    assert entry is not None and entry.deadline - now_ms() > INSTANCE_TTL_MS + WINDOW * 1000 - 500
    assert await client.pttl(history_key(channel, user)) > INSTANCE_TTL_MS + WINDOW * 1000 - 500


async def test_a_user_past_max_sockets_is_refused_and_forged_entries_do_not_count(
        open_replica: OpenReplica, channel: str, user: str) -> None:
    """One token cannot fill the replicas; a neighbour's entries cannot lock a user out."""
    first, second = await open_replica("first"), await open_replica("second")
    for n, replica in enumerate((first, second, first)):
        await presence_of(replica).add(user, f"sid-{n}")
    client = await client_of(first)

    with pytest.raises(TooManyConnectionsError):
        await presence_of(second).add(user, "sid-3")
    await presence_of(first).remove(user, "sid-0")
    await client.hset(presence_key(channel, user), "sid-forged", f"{process_of(first)}#{now_ms()}#{'0' * 32}")
    await presence_of(second).add(user, "sid-3")  # the forged entry is removed, not counted

    assert sorted(await client.hkeys(presence_key(channel, user))) == [
        b"sid-1", b"sid-2", b"sid-3"]


async def test_a_session_of_a_crashed_replica_outlives_the_window_until_the_replica_counts_as_dead(
        open_replica: OpenReplica, user: str) -> None:
    """No heartbeat after the socket was recorded, no disconnect: past the window, the session
    is still claimable; one whose connection was lost (and said so) is not."""
    window = 0.2
    crashed = await open_replica("crashed", recovery_window=window)
    other = await open_replica("other", recovery_window=window)
    _, unattended = await live_session(open_replica, user, "sid-1", crashed)
    _, left = await lost_session(open_replica, user, "sid-2", crashed)

    await asyncio.sleep(2 * window)  # the time passing is what is tested

    assert await sessions_of(other).claim(user, left.pid, None) == "expired"
    claimed(await sessions_of(other).claim(user, unattended.pid, None))


async def test_a_lost_connection_keeps_its_session_for_the_window_from_now(
        open_replica: OpenReplica, entries: SignedEntries, channel: str, user: str) -> None:
    replica, session = await lost_session(open_replica, user)

    client = await client_of(replica)
    entry = await session_entry(client, entries, channel, user, session.pid)
    assert entry is not None and WINDOW * 1000 - 500 < entry.deadline - now_ms() <= WINDOW * 1000
    assert await client.hexists(presence_key(channel, user), "sid-1") is False


async def test_a_connection_that_ends_on_purpose_ends_its_session(
        open_replica: OpenReplica, channel: str, user: str) -> None:
    replica, session = await live_session(open_replica, user)

    await presence_of(replica).remove(user, "sid-1", session, keep=False)

    client = await client_of(replica)
    assert await client.hexists(sessions_key(channel, user), session.pid) is False
    assert await client.hexists(presence_key(channel, user), "sid-1") is False


async def test_leaving_with_a_stale_epoch_changes_nothing(
        open_replica: OpenReplica, channel: str, user: str) -> None:
    replica, session = await live_session(open_replica, user)
    client = await client_of(replica)
    before = await client.hget(sessions_key(channel, user), session.pid)
    stale = Session(session.pid, "0" * 16, session.start)

    for keep in (True, False):
        await presence_of(replica)._withdraw(user, "sid-1", stale, keep)

    assert await client.hget(sessions_key(channel, user), session.pid) == before
