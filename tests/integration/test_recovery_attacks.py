"""Connection state recovery under churn and attack, with real replicas, real Redis (one and a
Cluster) and real clients: each test is a row of the review that found these holes, shown failing.

- one token losing its connection in a loop leaves at most ``RECOVERY_MAX_SESSIONS`` sessions,
  and nothing once the window has passed;
- one user holds at most ``MAX_SOCKETS_PER_USER`` live sockets, on all replicas together;
- a client claiming one session again and again is replayed its burst, then gets new sessions;
  one that missed more than ``RECOVERY_MAX_REPLAY_BYTES`` gets a new session;
- a session entry forged by a Redis neighbour recovers nothing, kicks nobody, and stores nothing;
- two connections claiming one session at once: one recovers, and no socket is left deaf.

The clients are raw Socket.IO clients (``RawClient``) where a test needs to send a ``pid``
socket.io-client would not, or to lose its connection without a goodbye (its WebSocket closed,
no DISCONNECT: what the server sees of a rider going into a tunnel).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis, RedisCluster

from cluster.processes import RedisClusterServers
from kindmap_realtime.backends.claims import CLAIM_BURST
from kindmap_realtime.backends.redis.keys import history_key, presence_key, sessions_key
from tests.helpers.clients import make_token
from tests.helpers.cluster import API_KEY, Cluster, unique_user
from tests.helpers.http import metric, post_emit
from tests.helpers.raw_client import OpenRaw, RawClient
from tests.helpers.waiting import eventually

# The churn tests wait for their sessions to expire: a short window, and a short clock skew allowed
# past a session's deadline (a lost session goes at the heartbeat after both).
CHURN = {"RECOVERY_WINDOW_SECONDS": "2", "QUEUE_REPLAY_WINDOW_SECONDS": "1", "RECOVERY_MAX_SESSIONS": "5"}
SIGNING_KEY = "attacks-queue-signing-key-0123456789abcdef"


@pytest.fixture(params=["redis", "redis-cluster"])
def redis(request: pytest.FixtureRequest) -> Any:
    """The test session's Redis: one server, or the three-master Cluster."""
    return request.getfixturevalue("redis_server" if request.param == "redis" else "redis_cluster")


@pytest.fixture
async def neighbour(redis: Any) -> AsyncIterator[Redis | RedisCluster]:
    """A Redis client of someone who can write keys but holds no signing key."""
    client: Redis | RedisCluster = (RedisCluster.from_url(redis.url) if isinstance(redis, RedisClusterServers)
                                    else Redis.from_url(redis.url))
    yield client
    await client.aclose()


@pytest.fixture
def start(start_cluster: Callable[..., Cluster], redis: Any) -> Callable[..., Cluster]:
    """``start(count, **env)``: a test's own replicas on ``redis``, signed as in production."""
    def start_on(count: int, **env: str) -> Cluster:
        return start_cluster(count, redis=redis, QUEUE_SIGNING_KEY=SIGNING_KEY, ALLOW_UNSIGNED_QUEUE="", **env)
    return start_on


async def session_of(raw: RawClient, auth: dict[str, Any]) -> dict[str, Any]:
    """CONNECT with ``auth`` and return the CONNECT reply (``sid``, ``pid``) merged with ``connected``."""
    answer = await raw.connect(auth)
    assert answer.startswith("0"), answer
    await raw.wait_for(lambda: bool(raw.events("connected")), what="connected")
    return {**json.loads(answer[1:]), **raw.events("connected")[0][0]}


async def lost(open_raw: OpenRaw, url: str, auth: dict[str, Any]) -> dict[str, Any]:
    """A connection that is lost right after it was welcomed: its WebSocket closed, no goodbye."""
    raw = await open_raw(url)
    welcome = await session_of(raw, auth)
    await raw.close()
    return welcome


async def offline(client: Redis | RedisCluster, cluster: Cluster, user: str) -> None:
    """Until the replicas have seen every connection of ``user`` go (sends are then stored)."""
    async def withdrawn() -> bool:
        return await client.hlen(presence_key(cluster.channel, user)) == 0

    await eventually(withdrawn, what=f"{user}'s connections withdrawn")


async def user_keys(client: Redis | RedisCluster, channel: str, user: str) -> int:
    return sum([await client.exists(key) for key in (presence_key(channel, user), sessions_key(channel, user),
                                                        history_key(channel, user))])


async def emit(cluster: Cluster, user: str, data: Any, *, replica: int = 0) -> str:
    """A durable ``step`` to ``user`` through the emit API; its answer's status."""
    body = {"user_id": user, "event": "step", "data": data}
    status, answer = await post_emit(cluster.replicas[replica].url, API_KEY, body)
    assert status in (202, 404), answer
    return str(answer["status"]) if status == 202 else str(answer["code"])


def steps(raw: RawClient) -> list[Any]:
    """The data of every ``step`` event ``raw`` got, in order (its trailing offset left off)."""
    return [args[0] for args in raw.events("step")]


async def failures(cluster: Cluster, reason: str) -> float:
    return sum([await metric(replica.url, "kindmap_recoveries_failed_total", {"reason": reason})
                for replica in cluster.replicas])


# --- row 1: one token losing its connection in a loop ------------------------------------------

async def test_one_token_losing_its_connection_in_a_loop_keeps_at_most_max_sessions_and_nothing_after_the_window(
        start: Callable[..., Cluster], neighbour: Redis | RedisCluster, open_raw: OpenRaw) -> None:
    cluster = start(2, **CHURN)
    user = unique_user("churn")
    auth = {"token": make_token(user)}
    most = 0
    for attempt in range(30):
        await lost(open_raw, cluster.replicas[attempt % 2].url, auth)
        most = max(most, await neighbour.hlen(sessions_key(cluster.channel, user)))

    assert 0 < most <= int(CHURN["RECOVERY_MAX_SESSIONS"])

    async def nothing_left() -> bool:
        return await user_keys(neighbour, cluster.channel, user) == 0

    await eventually(nothing_left, timeout=20, what="the user's keys gone once the window passed")


async def test_churn_beside_a_live_socket_leaves_only_the_live_sockets_session_after_the_window(
        start: Callable[..., Cluster], neighbour: Redis | RedisCluster, open_raw: OpenRaw) -> None:
    cluster = start(2, **CHURN)
    user = unique_user("churn")
    auth = {"token": make_token(user)}
    live = await open_raw(cluster.replicas[0].url)
    kept = await session_of(live, auth)
    for attempt in range(12):
        await lost(open_raw, cluster.replicas[attempt % 2].url, auth)
    key = sessions_key(cluster.channel, user)

    async def only_the_live_session() -> bool:
        return await neighbour.hkeys(key) == [kept["pid"].encode()]

    await eventually(only_the_live_session, timeout=20, what="only the live socket's session left")
    assert await emit(cluster, user, {"n": 1}, replica=1) == "sent"
    await live.wait_for(lambda: steps(live) == [{"n": 1}], what="the live socket's message")


# --- row 2: one user's sockets, on all replicas together --------------------------------------

async def test_a_user_past_max_sockets_across_replicas_gets_connect_error_too_many_connections(
        start: Callable[..., Cluster], open_raw: OpenRaw) -> None:
    cluster = start(2, MAX_SOCKETS_PER_USER="3")
    user = unique_user("many")
    auth = {"token": make_token(user)}
    sockets = []
    for index in range(3):
        sockets.append(raw := await open_raw(cluster.replicas[index % 2].url))
        await session_of(raw, auth)

    for replica in cluster.replicas:
        extra = await open_raw(replica.url)
        answer = await extra.connect(auth)
        assert answer.startswith("4") and extra.errors()[0]["code"] == "TOO_MANY_CONNECTIONS", answer
        await extra.wait_closed()
    assert await emit(cluster, user, {"n": 1}) == "sent"
    for raw in sockets:
        await raw.wait_for(lambda raw=raw: steps(raw) == [{"n": 1}], what="every live socket's message")


# --- row 4: one session claimed again and again -----------------------------------------------

async def test_a_session_claimed_in_a_loop_is_replayed_its_burst_then_gets_new_sessions(
        start: Callable[..., Cluster], neighbour: Redis | RedisCluster, open_raw: OpenRaw) -> None:
    cluster = start(2)
    user = unique_user("loop")
    auth = {"token": make_token(user)}
    first = await lost(open_raw, cluster.replicas[0].url, auth)
    await offline(neighbour, cluster, user)
    assert [await emit(cluster, user, {"n": n}) for n in range(3)] == ["stored"] * 3

    answers = []
    for attempt in range(CLAIM_BURST + 2):
        raw = await open_raw(cluster.replicas[attempt % 2].url)
        welcome = await session_of(raw, {**auth, "pid": first["pid"]})
        if welcome["recovered"]:
            await raw.wait_for(lambda raw=raw: len(steps(raw)) == 3, what="the replayed messages")
        answers.append((welcome["recovered"], steps(raw)))
        await raw.close()

    replayed = [(True, [{"n": 0}, {"n": 1}, {"n": 2}])] * CLAIM_BURST
    assert answers == [*replayed, (False, []), (False, [])]
    assert await failures(cluster, "too_frequent") == 2


async def test_a_session_that_missed_more_than_the_replay_bytes_gets_a_new_session(
        start: Callable[..., Cluster], neighbour: Redis | RedisCluster, open_raw: OpenRaw) -> None:
    cluster = start(1, RECOVERY_MAX_REPLAY_BYTES="20000")
    user = unique_user("big")
    auth = {"token": make_token(user)}
    first = await lost(open_raw, cluster.replicas[0].url, auth)
    await offline(neighbour, cluster, user)
    assert [await emit(cluster, user, {"n": n, "text": "x" * 6000}) for n in range(4)] == ["stored"] * 4

    raw = await open_raw(cluster.replicas[0].url)
    welcome = await session_of(raw, {**auth, "pid": first["pid"]})

    assert welcome["recovered"] is False and welcome["pid"] != first["pid"] and steps(raw) == []
    assert await failures(cluster, "too_large") == 1


# --- row 5: session entries forged by a Redis neighbour without the signing key ---------------

async def test_a_forged_session_entry_with_a_victims_sid_recovers_nothing_and_kicks_nobody(
        start: Callable[..., Cluster], neighbour: Redis | RedisCluster, open_raw: OpenRaw) -> None:
    cluster = start(2)
    victim_user, attacker_user = unique_user("victim"), unique_user("attacker")
    victim = await open_raw(cluster.replicas[0].url)
    welcome = await session_of(victim, {"token": make_token(victim_user)})
    genuine = await neighbour.hget(sessions_key(cluster.channel, victim_user), welcome["pid"])
    assert isinstance(genuine, bytes)
    # The victim's own entry, moved to the attacker's key under a pid of the attacker's choosing.
    await neighbour.hset(sessions_key(cluster.channel, attacker_user), "forged-pid", genuine)
    forged = genuine.decode().split("|")
    forged[0] = str(int(forged[0]) + 60_000)  # a later deadline: the signature no longer matches
    await neighbour.hset(sessions_key(cluster.channel, victim_user), "forged-pid", "|".join(forged))

    for user in (attacker_user, victim_user):
        attacker = await open_raw(cluster.replicas[1].url)
        stolen = await session_of(attacker, {"token": make_token(user), "pid": "forged-pid"})
        assert stolen["recovered"] is False and stolen["sid"] != welcome["sid"]

    assert await emit(cluster, victim_user, {"n": 1}, replica=1) == "sent"
    await victim.wait_for(lambda: steps(victim) == [{"n": 1}], what="the victim's message")
    assert not victim.closed and not any(packet.startswith("1") for packet in victim.packets)


async def test_a_forged_session_for_a_user_who_never_connected_is_answered_user_not_connected_not_stored(
        start: Callable[..., Cluster], neighbour: Redis | RedisCluster) -> None:
    """The backend falls back to a push notification on 404: a forgery must not make it skip that."""
    cluster = start(1)
    ghost = unique_user("ghost")
    deadline = int(time.time() * 1000) + 60_000
    await neighbour.hset(sessions_key(cluster.channel, ghost), "forged-pid",
                         f"{deadline}|1|forged-sid|1-0|0|replica-1|{'0' * 64}")
    await neighbour.rpush(history_key(cluster.channel, ghost), "h|1|0|200")

    assert [await emit(cluster, ghost, {"n": n}) for n in range(3)] == ["USER_NOT_CONNECTED"] * 3


# --- row 7: two connections claiming one session at once ---------------------------------------

@pytest.mark.parametrize("spread", ["one replica", "two replicas"])
async def test_two_connections_claiming_one_session_at_once_leave_exactly_one_recovered_and_none_deaf(
        start: Callable[..., Cluster], neighbour: Redis | RedisCluster, open_raw: OpenRaw, spread: str) -> None:
    cluster = start(2)
    user = unique_user("twice")
    auth = {"token": make_token(user)}
    first = await lost(open_raw, cluster.replicas[0].url, auth)
    await offline(neighbour, cluster, user)
    assert await emit(cluster, user, {"n": 0}) == "stored"
    urls = [cluster.replicas[0].url, cluster.replicas[0 if spread == "one replica" else 1].url]
    claimants = [await open_raw(url) for url in urls]

    answers = await asyncio.gather(*(raw.connect({**auth, "pid": first["pid"]}) for raw in claimants))

    recovered = []
    for raw, answer in zip(claimants, answers, strict=True):
        if answer.startswith("0"):
            await raw.wait_for(lambda raw=raw: bool(raw.events("connected")) or raw.closed, what="connected or closed")
        if raw.events("connected") and not raw.closed:
            recovered.append(raw.events("connected")[0][0]["recovered"])
    assert sorted(recovered) in ([False, True], [True])
    live = [raw for raw in claimants if raw.events("connected") and not raw.closed]
    assert await emit(cluster, user, {"n": 1}) == "sent"
    for raw in live:
        await raw.wait_for(lambda raw=raw: {"n": 1} in steps(raw), what="the next message on every live socket")
    winner = next(raw for raw in live if raw.events("connected")[0][0]["recovered"])
    assert steps(winner) == [{"n": 0}, {"n": 1}]

    for raw in claimants:
        await raw.close()

    async def no_connection_left() -> bool:
        return sum([await metric(replica.url, "kindmap_connections") for replica in cluster.replicas]) == 0

    await eventually(no_connection_left, what="kindmap_connections back to 0 on every replica")
