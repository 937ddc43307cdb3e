"""The contract of ``SessionStore``: sessions opened, kept, ended and claimed (each refusal for its
reason), and histories read a page at a time."""

from __future__ import annotations

import asyncio

import pytest

from kindmap_realtime.backends import Backend
from kindmap_realtime.backends.base import HistoryGone, Session
from kindmap_realtime.backends.claims import CLAIM_BURST, HISTORY_PAGE
from tests.helpers.backends import (
    OpenReplica,
    claimed,
    live_session,
    lost_session,
    offset_after,
    read_history,
    send,
    sessions_of,
    stored,
    stored_while_online,
)
from tests.integration.backends.conftest import MAX_MESSAGES, MAX_SESSIONS

# --- opening, keeping and ending a session ---------------------------------------------------


async def test_a_session_opened_on_a_history_starts_after_its_last_element(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    replica, _ = await lost_session(open_replica, user)
    offsets = await stored(sender, channel, user, 3)

    later = await sessions_of(replica).open(user, "sid-2")

    assert later.start == offsets[-1]


async def test_a_session_can_be_claimed_only_once_its_socket_joined(open_replica: OpenReplica, user: str) -> None:
    replica = await open_replica()
    session = await sessions_of(replica).open(user, "sid-1")
    assert await sessions_of(replica).claim(user, session.pid, None) == "unknown"

    await replica.presence.add(user, "sid-1", session)

    assert claimed(await sessions_of(replica).claim(user, session.pid, None)).sid == "sid-1"


async def test_a_lost_connection_keeps_its_session_and_the_user_is_offline(
        open_replica: OpenReplica, user: str) -> None:
    replica, session = await lost_session(open_replica, user)

    assert await replica.presence.is_online(user) is False
    assert claimed(await sessions_of(replica).claim(user, session.pid, None)).vouched is False


async def test_a_connection_that_ends_on_purpose_ends_its_session(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    replica, session = await live_session(open_replica, user)

    await replica.presence.remove(user, "sid-1", session, keep=False)

    assert await sessions_of(replica).claim(user, session.pid, None) == "unknown"
    assert (await send(sender, channel, user, b"nobody to keep it for")).status is None


async def test_a_claim_the_connection_does_not_use_is_ended(open_replica: OpenReplica, user: str) -> None:
    replica, session = await lost_session(open_replica, user)
    claim = claimed(await sessions_of(replica).claim(user, session.pid, None))

    await sessions_of(replica).end(user, claim.session)

    assert await sessions_of(replica).claim(user, session.pid, None) == "unknown"


async def test_leaving_or_ending_with_a_stale_epoch_changes_nothing(open_replica: OpenReplica, user: str) -> None:
    replica, session = await live_session(open_replica, user)
    stale = Session(session.pid, "0" * 16, session.start)

    await sessions_of(replica).end(user, stale)
    for keep in (True, False):
        await replica.presence.remove(user, "sid-2", stale, keep=keep)

    assert claimed(await sessions_of(replica).claim(user, session.pid, None)).vouched is True


async def test_a_user_has_at_most_max_sessions_the_oldest_dropped_when_one_more_opens(
        open_replica: OpenReplica, user: str) -> None:
    """One token's connections lost in a loop leave at most that many sessions behind."""
    replica = await open_replica()
    sessions = [(await lost_session(open_replica, user, f"sid-{n}", replica))[1] for n in range(MAX_SESSIONS + 2)]

    answers = [await sessions_of(replica).claim(user, session.pid, None) for session in sessions]

    assert answers[:2] == ["unknown", "unknown"] and all(not isinstance(a, str) for a in answers[2:])


async def test_a_live_sockets_session_is_dropped_for_the_cap_only_after_every_lost_ones(
        open_replica: OpenReplica, user: str) -> None:
    """Churn beside a rider's live socket drops the churn's sessions, not the rider's (the oldest)."""
    replica, live = await live_session(open_replica, user, "sid-live")
    for n in range(MAX_SESSIONS + 3):
        await lost_session(open_replica, user, f"sid-{n}", replica)

    assert claimed(await sessions_of(replica).claim(user, live.pid, None)).sid == "sid-live"


async def test_a_session_past_its_window_says_expired_and_keeps_nothing_more(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    window = 0.2
    replica, session = await lost_session(open_replica, user, replica=await open_replica(recovery_window=window))

    await asyncio.sleep(2 * window)  # the window passing is what is tested

    assert (await send(sender, channel, user, b"too late")).status is None
    assert await sessions_of(replica).claim(user, session.pid, None) == "expired"


# --- claiming: who gets the session, and each refusal ----------------------------------------


async def test_claiming_an_unknown_session_says_unknown(open_replica: OpenReplica, user: str) -> None:
    replica, session = await lost_session(open_replica, user)

    assert await sessions_of(replica).claim(user, "no-such-pid", None) == "unknown"
    assert await sessions_of(replica).claim("another-user", session.pid, None) == "unknown"


async def test_a_claim_returns_the_old_socket_id_and_replica_and_takes_the_session_over(
        open_replica: OpenReplica, user: str) -> None:
    old, session = await lost_session(open_replica, user, replica=await open_replica("old"))
    new = await open_replica("new")

    claim = claimed(await sessions_of(new).claim(user, session.pid, None))

    assert claim.sid == "sid-1" and claim.previous.startswith("old:")
    assert claim.session.pid == session.pid and claim.session.start == session.start
    assert claim.session.epoch != session.epoch and claim.session.claimed
    await new.presence.add(user, "sid-1", claim.session)
    assert claimed(await sessions_of(old).claim(user, session.pid, None)).previous.startswith("new:")


async def test_a_claim_of_a_session_whose_socket_is_still_recorded_is_vouched_for(
        open_replica: OpenReplica, user: str) -> None:
    _old, session = await live_session(open_replica, user)

    claim = claimed(await sessions_of(await open_replica("new")).claim(user, session.pid, None))

    assert claim.vouched is True and claim.sid == "sid-1"


async def test_a_session_claimed_in_a_loop_is_refused_as_too_frequent_past_its_burst(
        open_replica: OpenReplica, user: str) -> None:
    """A client reconnecting with one pid again and again cannot make the store read the history each time."""
    replica, session = await lost_session(open_replica, user)
    for _ in range(CLAIM_BURST):
        claimed(await sessions_of(replica).claim(user, session.pid, None))

    assert await sessions_of(replica).claim(user, session.pid, None) == "too_frequent"


async def test_claiming_from_an_offset_the_history_never_held_says_gone(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    replica, session = await lost_session(open_replica, user)
    [offset] = await stored(sender, channel, user, 1)

    assert await sessions_of(replica).claim(user, session.pid, offset_after(offset)) == "gone"


async def test_claiming_a_session_that_missed_more_than_max_messages_says_gone(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    replica, session = await lost_session(open_replica, user)
    offsets = await stored(sender, channel, user, MAX_MESSAGES + 1)

    assert await sessions_of(replica).claim(user, session.pid, None) == "gone"
    claimed(await sessions_of(replica).claim(user, session.pid, offsets[0]))  # missed MAX_MESSAGES: recovers


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
    assert await read_history(replica, user, claim.session.start) == [[(offsets[2], b"m2")]]


# --- reading a history ---------------------------------------------------------------------


async def test_a_history_is_read_in_order_a_page_at_a_time_after_its_start(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    count = 2 * HISTORY_PAGE + 30
    replica = await open_replica(recovery_max_messages=count)
    _, session = await lost_session(open_replica, user, replica=replica)
    offsets = await stored(sender, channel, user, count)

    pages = await read_history(replica, user, session.start)

    assert len(pages) == 3 and all(len(page) <= HISTORY_PAGE for page in pages)
    assert [entry for page in pages for entry in page] == [(offset, b"m%d" % n) for n, offset in enumerate(offsets)]


async def test_a_history_keeps_the_last_max_messages_under_their_offsets(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    replica, _session = await live_session(open_replica, user)
    offsets = await stored_while_online(sender, channel, user, MAX_MESSAGES + 4)

    await replica.presence.heartbeat()  # on Redis, what trims (a sender cannot)

    kept = await read_history(replica, user, offsets[3])
    assert [offset for page in kept for offset, _ in page] == offsets[4:]
    with pytest.raises(HistoryGone):
        await read_history(replica, user, offsets[2])


async def test_a_history_trimmed_past_a_replays_start_since_the_claim_raises_history_gone(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    replica, session = await live_session(open_replica, user)
    claim = claimed(await sessions_of(replica).claim(user, session.pid, None))
    await stored_while_online(sender, channel, user, MAX_MESSAGES + 2)
    await replica.presence.heartbeat()

    with pytest.raises(HistoryGone):
        await read_history(replica, user, claim.session.start)


async def test_a_history_of_another_generation_raises_history_gone(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    """Offsets carry their history's generation: one of a history gone never reads a new one."""
    replica, session = await lost_session(open_replica, user)
    generation, _, sequence = session.start.partition("-")

    with pytest.raises(HistoryGone):
        await read_history(replica, user, f"{int(generation) + 1}-{sequence}")
