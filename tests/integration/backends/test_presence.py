"""The contract of ``Presence``: which users have a socket anywhere, the cap on a user's sockets, and
a socket id that a recovered connection holds elsewhere now."""

from __future__ import annotations

import pytest

from kindmap_realtime.errors import SessionTakenError, TooManyConnectionsError
from tests.helpers.backends import OpenReplica, claimed, kicks, live_session, sessions_of
from tests.integration.backends.conftest import MAX_SOCKETS


async def test_a_user_is_online_while_any_of_their_sockets_is_recorded_on_any_replica(
        open_replica: OpenReplica, user: str) -> None:
    first, second = await open_replica("first"), await open_replica("second")
    assert await first.presence.is_online(user) is False

    await first.presence.add(user, "sid-1")
    await second.presence.add(user, "sid-2")
    assert [await first.presence.is_online(user), await second.presence.is_online(user)] == [True, True]

    await first.presence.remove(user, "sid-1")
    assert await second.presence.is_online(user) is True
    await second.presence.remove(user, "sid-2")
    assert await first.presence.is_online(user) is False


async def test_a_user_at_max_sockets_is_refused_on_every_replica_until_one_leaves(
        open_replica: OpenReplica, user: str) -> None:
    """One token cannot fill the replicas."""
    first, second = await open_replica("first"), await open_replica("second")
    for n in range(MAX_SOCKETS):
        await (first, second)[n % 2].presence.add(user, f"sid-{n}")
    await first.presence.add(user, "sid-0")  # the same socket again is not one more

    for replica in (first, second):
        with pytest.raises(TooManyConnectionsError):
            await replica.presence.add(user, "one-too-many")
    await first.presence.remove(user, "sid-0")
    await second.presence.add(user, "one-too-many")

    await second.presence.remove(user, "one-too-many")
    assert await first.presence.is_online(user) is True  # the refused attempt left nothing behind


async def test_a_socket_whose_session_was_recovered_elsewhere_is_disconnected_and_leaves_the_new_one_alone(
        open_replica: OpenReplica, user: str) -> None:
    """The old replica had not noticed the lost connection: the new one holds the socket id now."""
    old, session = await live_session(open_replica, user)
    new = await open_replica("new")
    kicked = kicks(old)
    claim = claimed(await sessions_of(new).claim(user, session.pid, None))
    await new.presence.add(user, "sid-1", claim.session)

    await old.presence.heartbeat()
    assert kicked == ["sid-1"]
    for keep in (True, False):
        await old.presence.remove(user, "sid-1", session, keep=keep)

    assert await old.presence.is_online(user) is True
    again = claimed(await sessions_of(await open_replica("third")).claim(user, session.pid, None))
    assert again.previous.startswith("new:") and again.vouched is True


async def test_a_claimed_session_joins_only_with_the_latest_claim_of_it(open_replica: OpenReplica, user: str) -> None:
    """One live socket per session: of two connections that claimed it in turn, the first is refused."""
    _, session = await live_session(open_replica, user)
    first, second = await open_replica("first"), await open_replica("second")
    earlier = claimed(await sessions_of(first).claim(user, session.pid, None))
    later = claimed(await sessions_of(second).claim(user, session.pid, None))

    with pytest.raises(SessionTakenError):
        await first.presence.add(user, "sid-1", earlier.session)
    await second.presence.add(user, "sid-1", later.session)

    assert await first.presence.is_online(user) is True


async def test_closing_a_replicas_presence_withdraws_its_sockets_and_keeps_their_sessions(
        open_replica: OpenReplica, user: str) -> None:
    closing, session = await live_session(open_replica, user)
    other = await open_replica("other")

    await closing.presence.close()

    assert await other.presence.is_online(user) is False
    assert claimed(await sessions_of(other).claim(user, session.pid, None)).sid == "sid-1"
