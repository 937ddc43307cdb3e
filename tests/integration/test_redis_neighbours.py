"""What a Redis neighbour (anyone who can read or write the replicas' Redis) can no longer do.

Replicas sign their queue (``QUEUE_SIGNING_KEY``); the neighbour records, replays,
forges and deletes with a plain redis-py client, as an attacker would.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from redis import asyncio as aioredis

from cluster.processes import RedisServer, Replica
from kindmap_realtime.backends.redis.keys import presence_key, registry_key, signing_key_name
from kindmap_realtime.emitter import Emitter
from kindmap_realtime.errors import ConfigError
from tests.helpers.clients import MakeClient, Served, connected, make_token
from tests.helpers.cluster import API_KEY, Cluster, replica_env, unique_user
from tests.helpers.http import metric, post_emit
from tests.helpers.inboxes import inject, record_next
from tests.helpers.waiting import eventually

SIGNING_KEY = "integration-queue-signing-key-0123456789"
REPLAY_WINDOW = 1.0
# Users of a dead replica count as offline within its heartbeat key's TTL (10 s), and a
# slow poll's margin; a TTL of minutes would miss it.
OFFLINE_DEADLINE = 15.0


@pytest.fixture
async def neighbour(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def record_a_kick(cluster: Cluster, make_client: MakeClient, neighbour: aioredis.Redis, emitter: Emitter,
                        user: str) -> bytes:
    """Connect ``user`` to the first replica, disconnect them through ``emitter``, and return the
    signed ``disconnect_room`` envelope a neighbour recorded from the replica's inbox meanwhile."""
    first = await connected(make_client, cluster.replicas[0], user)
    recorded = await record_next(neighbour, cluster.channel, lambda: emitter.disconnect_user(user))
    await first.wait_for_disconnect()
    return recorded


async def dropped(cluster: Cluster, reason: str) -> float:
    return sum([await metric(r.url, "kindmap_messages_dropped_total", {"reason": reason}) for r in cluster.replicas])


@pytest.mark.parametrize("later", [False, True], ids=["at-once-as-a-repeat", "after-the-window-as-stale"])
async def test_a_recorded_signed_disconnect_replayed_does_not_kick_the_users_new_socket(
        start_cluster: Callable[..., Cluster], make_client: MakeClient, neighbour: aioredis.Redis, later: bool) -> None:
    # "At once" must stay within the window on a loaded machine: the default 30 s then.
    window = {"QUEUE_REPLAY_WINDOW_SECONDS": str(REPLAY_WINDOW)} if later else {}
    cluster = start_cluster(2, QUEUE_SIGNING_KEY=SIGNING_KEY, **window)
    user = unique_user()
    async with Emitter(cluster.redis_url, channel=cluster.channel, signing_key=SIGNING_KEY) as emitter:
        recorded = await record_a_kick(cluster, make_client, neighbour, emitter, user)
        second = await connected(make_client, cluster.replicas[1], user)
        if later:
            sent_at = json.loads(recorded.partition(b".")[2])["ts"] / 1000
            await eventually(lambda: time.time() > sent_at + REPLAY_WINDOW + 0.1, timeout=5, what="window over")

        assert await inject(neighbour, cluster.channel, recorded) == 2
        await eventually(lambda: dropped(cluster, "stale" if later else "replayed"), what="replay dropped")
        await emitter.send_to_user(user, "still_connected", {})

    # In order after the replay on the second replica: by now it has handled the replay.
    assert await second.wait_for("still_connected") == {}
    assert second.disconnects == []
    # Late, both replicas drop it as stale; at once, the first drops it as a repeat, and the
    # second, which never saw the kick, spares the socket that connected after it.
    assert await dropped(cluster, "stale" if later else "replayed") == (2 if later else 1)


async def test_a_recorded_signed_disconnect_replayed_to_a_replica_started_since_is_dropped_as_stale(
        start_cluster: Callable[..., Cluster], make_client: MakeClient, neighbour: aioredis.Redis,
        tmp_path: Path) -> None:
    cluster = start_cluster(1, QUEUE_SIGNING_KEY=SIGNING_KEY)
    user = unique_user()
    async with Emitter(cluster.redis_url, channel=cluster.channel, signing_key=SIGNING_KEY) as emitter:
        recorded = await record_a_kick(cluster, make_client, neighbour, emitter, user)
        fresh = Replica(instance_id="replica-fresh", log_dir=tmp_path,
                        env=replica_env(cluster.redis_url, cluster.channel, QUEUE_SIGNING_KEY=SIGNING_KEY))
        cluster.replicas.append(fresh)  # stopped with the cluster
        fresh.start()
        second = await connected(make_client, fresh, user)

        assert await inject(neighbour, cluster.channel, recorded) == 2
        await eventually(lambda: dropped(cluster, "stale"), what="replay dropped")
        await emitter.send_to_user(user, "still_connected", {})

    assert await second.wait_for("still_connected") == {}
    assert second.disconnects == []
    assert await metric(fresh.url, "kindmap_messages_dropped_total", {"reason": "stale"}) == 1


async def test_a_forged_presence_entry_does_not_make_an_unknown_user_look_connected(
        start_cluster: Callable[..., Cluster], make_client: MakeClient, neighbour: aioredis.Redis) -> None:
    cluster = start_cluster(2, QUEUE_SIGNING_KEY=SIGNING_KEY)
    real = unique_user()
    client = await connected(make_client, cluster.replicas[0], real)
    entry = await neighbour.hget(presence_key(cluster.channel, real), client.sio.get_sid())
    assert isinstance(entry, bytes)  # the neighbour's client does not decode responses
    process = entry.decode().split("#")[0]
    assert await neighbour.zscore(registry_key(cluster.channel), process) is not None
    ghost = unique_user("ghost")

    await neighbour.hset(presence_key(cluster.channel, ghost), mapping={
        "forged-1": process, "forged-2": f"{process}#{int(time.time() * 1000)}#{'ab' * 16}",
        client.sio.get_sid(): entry})

    assert (await emit_outcome(cluster.replicas[1], ghost))[0] == 404
    assert (await emit_outcome(cluster.replicas[1], real))[0] == 202


async def test_a_deleted_presence_key_is_written_again_by_the_next_heartbeat(
        start_cluster: Callable[..., Cluster], make_client: MakeClient, neighbour: aioredis.Redis) -> None:
    cluster = start_cluster(2, QUEUE_SIGNING_KEY=SIGNING_KEY)
    user = unique_user()
    await connected(make_client, cluster.replicas[0], user)

    await neighbour.delete(presence_key(cluster.channel, user))

    await eventually(lambda: neighbour.exists(presence_key(cluster.channel, user)), timeout=10, what="rewritten")
    assert (await emit_outcome(cluster.replicas[1], user))[0] == 202


async def test_users_of_a_killed_replica_count_as_offline_within_the_instance_ttl(
        start_cluster: Callable[..., Cluster], make_client: MakeClient) -> None:
    """Offline: a user without a session is refused; a rider whose session may still be
    recovered (on any replica, within its window) has the message stored for it."""
    cluster = start_cluster(2)
    doomed, survivor = cluster.replicas
    user, rider = unique_user(), unique_user("rider")
    await connected(make_client, doomed, user, auth={"token": make_token(user), "recovery": False})
    await connected(make_client, doomed, rider)
    assert await emit_outcome(survivor, user) == (202, "sent")
    assert await emit_outcome(survivor, rider) == (202, "sent")

    doomed.kill()  # SIGKILL: no withdrawal, only the heartbeat key's TTL tells

    await eventually(lambda: emit_outcome_is(survivor, user, (404, None)), timeout=OFFLINE_DEADLINE,
                     what="USER_NOT_CONNECTED after SIGKILL")
    assert await emit_outcome(survivor, rider) == (202, "stored")


async def emit_outcome(replica: Served, user: str) -> tuple[int, str | None]:
    """The emit API's status code, and for a 202 the body's status (sent or stored)."""
    status, body = await post_emit(replica.url, API_KEY, {"user_id": user, "event": "probe", "data": {}})
    return status, body["status"] if status == 202 else None


async def emit_outcome_is(replica: Served, user: str, expected: tuple[int, str | None]) -> bool:
    return await emit_outcome(replica, user) == expected


async def test_an_emitter_whose_key_no_replica_can_confirm_starts_with_a_warning_not_a_tampering_alarm(
        start_cluster: Callable[..., Cluster], neighbour: aioredis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    cluster = start_cluster(1, QUEUE_SIGNING_KEY=SIGNING_KEY)
    cluster.stop()  # the routing functions stay loaded; nobody listens on the channel any more
    await neighbour.set(signing_key_name(cluster.channel), b"0" * 32)  # as replicas with another key left it

    async with Emitter(cluster.redis_url, channel=cluster.channel, signing_key=SIGNING_KEY):
        pass

    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert [message for message in warnings if "fingerprint" in message] == [
        "the signing fingerprint in Redis is not this key's, and no replica listens to say which is right: "
        "starting unverified (a wrong key makes every rider look offline)"]


async def test_an_emitter_with_the_right_key_starts_although_the_fingerprint_was_rewritten(
        start_cluster: Callable[..., Cluster], make_client: MakeClient, neighbour: aioredis.Redis) -> None:
    cluster = start_cluster(2, QUEUE_SIGNING_KEY=SIGNING_KEY)
    user = unique_user()
    client = await connected(make_client, cluster.replicas[0], user)
    for forged in (b"0" * 32, b"unsigned"):
        await neighbour.set(signing_key_name(cluster.channel), forged)

        async with Emitter(cluster.redis_url, channel=cluster.channel, signing_key=SIGNING_KEY) as emitter:
            await emitter.send_to_user(user, "delivered", forged.decode())

        assert await client.wait_for("delivered", count=1 if forged != b"unsigned" else 2) == forged.decode()
    with pytest.raises(ConfigError, match="QUEUE_SIGNING_KEY"):
        await Emitter(cluster.redis_url, channel=cluster.channel, signing_key="a-wrong-key-" + "x" * 30).connect()
    await neighbour.delete(signing_key_name(cluster.channel))
    with pytest.raises(ConfigError, match="QUEUE_SIGNING_KEY"):
        await Emitter(cluster.redis_url, channel=cluster.channel, signing_key="a-wrong-key-" + "x" * 30).connect()
