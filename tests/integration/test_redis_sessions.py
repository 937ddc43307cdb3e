"""RedisSessions, the presence that keeps sessions alive, and the send functions that store into
histories, against a real Redis.

Recoverable sessions, each user's history and the functions that write them
(``kindmap_realtime/backends/redis/{sessions,presence,routing.lua}``), signed as in production, on
one Redis and again on a Redis Cluster where a test does not depend on how replicas
are reached. Attacks are made as a Redis neighbour without the signing key would.
What every backend must do alike (claims and their refusals, histories, stored or sent)
is the contract suite's, run on Redis too: tests/integration/backends/.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis import asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from kindmap_realtime.backends import Backend
from kindmap_realtime.backends.base import HistoryGone, Routed
from kindmap_realtime.backends.redis.entries import INSTANCE_TTL_MS, SessionEntry, SignedEntries, now_ms
from kindmap_realtime.backends.redis.keys import consumed_key, history_key, inbox_key, presence_key, sessions_key
from kindmap_realtime.backends.redis.presence import RedisPresence
from kindmap_realtime.backends.redis.sessions import RedisSessions
from kindmap_realtime.backends.redis.transport import RedisTransport
from kindmap_realtime.errors import PublishError, TooManyConnectionsError
from server.config import RECOVERY_MAX_MESSAGES
from tests.helpers.backends import (
    OpenReplica,
    claimed,
    emitter_backend,
    kicks,
    live_session,
    lost_session,
    next_received,
    read_history,
    replica_backends,
    send,
    stored,
    stored_while_online,
)

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


async def test_expired_sessions_go_at_the_next_heartbeat_without_waiting_for_a_send(
        open_replica: OpenReplica, entries: SignedEntries, channel: str, user: str) -> None:
    replica, live = await live_session(open_replica, user)
    _, gone = await lost_session(open_replica, user, "sid-2", replica)
    client = await client_of(replica)
    await rewrite(client, entries, channel, user, gone.pid, deadline=now_ms() - 60_000)

    await presence_of(replica).heartbeat()

    assert await client.hkeys(sessions_key(channel, user)) == [live.pid.encode()]


# --- claiming a session --------------------------------------------------------------------


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


async def test_a_full_history_stores_no_more_and_a_claim_from_before_that_says_gone(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    """A sender cannot trim: at twice the limit the history ends with a marker, and a message
    after it is answered as not stored (the user is offline: not recoverable)."""
    replica, session = await lost_session(open_replica, user)
    offsets = await stored(sender, channel, user, 2 * MAX_MESSAGES)

    assert await send(sender, channel, user, b"one too many") == Routed(False, None)
    assert (await history(await client_of(replica), channel, user))[-1] == b"!"
    assert await sessions_of(replica).claim(user, session.pid, offsets[-2]) == "gone"


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


async def test_a_claim_keeps_the_history_at_least_as_long_as_the_session(
        open_replica: OpenReplica, channel: str, user: str) -> None:
    replica, session = await lost_session(open_replica, user)
    client = await client_of(replica)
    await client.pexpire(history_key(channel, user), 100)

    claimed(await sessions_of(replica).claim(user, session.pid, None))

    assert await client.pttl(history_key(channel, user)) > WINDOW * 1000


# --- reading a history ---------------------------------------------------------------------


async def test_a_history_read_past_a_marker_of_unstored_messages_raises_history_gone(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    replica, session = await lost_session(open_replica, user)
    await stored(sender, channel, user, 2 * MAX_MESSAGES)
    await send(sender, channel, user, b"not stored")

    with pytest.raises(HistoryGone):
        await read_history(replica, user, session.start)


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


async def test_a_send_to_a_user_with_only_a_forged_session_is_refused_not_stored(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    """Else the backend would hear "stored" and skip its push notification for a user who never connected."""
    replica = await open_replica()
    await sessions_of(replica).open(user, "sid-x")  # a history exists, as a forger could make one too
    forger = SignedEntries(channel, b"not-the-replicas-key-0123456789abcdef")
    forged = forger.session(user, "fake", SessionEntry(now_ms() + 60_000, "e", "sid-x", "0-0", 0, "x"))
    await (await client_of(replica)).hset(sessions_key(channel, user), "fake", forged)

    assert (await send(sender, channel, user, b"elevator out of service")).status is None


async def test_the_offset_reaches_the_replicas_inbox_before_the_envelope(
        open_single_replica: OpenReplica, single_sender: Backend, channel: str, user: str) -> None:
    holder, _ = await live_session(open_single_replica, user)
    client = await client_of(holder)
    inbox = inbox_key(channel, process_of(holder))
    await client.rpush(inbox, "a placeholder")  # keeps the reader's count off it

    routed = await send(single_sender, channel, user, b"arrival")

    assert routed.offset is not None
    assert await client.lrange(inbox, 1, -1) == [b"@" + routed.offset.encode() + b" arrival"]


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
    monkeypatch.setattr("kindmap_realtime.backends.redis.inboxes.INBOX_MAX_LEN", 3)
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


