"""The contract of ``QueueTransport``: messages for all and for one user, sent, stored or refused,
and stored ones written by each replica in the order of their offsets."""

from __future__ import annotations

import asyncio
import contextlib

from kindmap_realtime.backends import Backend
from kindmap_realtime.backends.base import Received, Routed
from tests.helpers.backends import (
    OpenReplica,
    live_session,
    lost_session,
    next_received,
    read_history,
    send,
)
from tests.integration.backends.conftest import MAX_MESSAGES


async def received_until(replica: Backend, marker: bytes, timeout: float = 5.0) -> list[Received]:
    """What ``replica`` reads up to ``marker`` (a later message, so that what never came is seen)."""
    got: list[Received] = []
    async with asyncio.timeout(timeout), contextlib.aclosing(replica.transport.messages()) as messages:
        async for received in messages:
            if received[0] == marker:
                return got
            got.append(received)
    raise AssertionError("the stream of messages ended")


async def test_a_message_for_all_reaches_every_other_replica_once(
        open_replica: OpenReplica, sender: Backend, channel: str) -> None:
    first, second = await open_replica("one"), await open_replica("two")

    assert await sender.transport.publish(channel, "환승 ✓".encode()) == 2
    assert await first.transport.publish(channel, b"from one") == 1  # never to itself

    assert await next_received(first) == ("환승 ✓".encode(), None)
    assert [await next_received(second) for _ in range(2)] == [("환승 ✓".encode(), None), (b"from one", None)]


async def test_a_message_for_a_user_reaches_only_the_replicas_holding_the_user(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    holder, other = await open_replica("holder"), await open_replica("other")
    await holder.presence.add(user, "sid-1")
    await other.presence.add("someone-else", "sid-2")

    assert await send(sender, channel, user, b"for the user", volatile=True) == Routed(True)
    assert await send(sender, channel, "nobody", b"for nobody", volatile=True) == Routed(False)
    assert await send(holder, channel, user, b"from the holder", volatile=True) == Routed(True)  # not to itself
    await send(sender, channel, "someone-else", b"marker", volatile=True)

    assert await next_received(holder) == (b"for the user", None)
    assert await received_until(other, b"marker") == []


async def test_a_send_to_a_user_without_socket_or_session_is_refused_and_not_stored(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    replica = await open_replica()

    await replica.presence.add("someone-else", "sid-1")

    routed = await send(sender, channel, user, b"nobody")

    assert routed == Routed(False, None) and routed.status is None


async def test_a_send_to_a_user_offline_within_a_sessions_window_is_stored_under_its_offset(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    replica, session = await lost_session(open_replica, user)

    routed = await send(sender, channel, user, b"transfer here")

    assert routed.online is False and routed.status == "stored" and routed.offset is not None
    assert await read_history(replica, user, session.start) == [[(routed.offset, b"transfer here")]]


async def test_a_send_to_an_online_user_is_sent_with_its_offset_to_the_holding_replica(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    holder, session = await live_session(open_replica, user)

    routed = await send(sender, channel, user, b"arrival")

    assert routed.status == "sent" and routed.offset is not None
    assert await next_received(holder) == (b"arrival", routed.offset)
    assert await read_history(holder, user, session.start) == [[(routed.offset, b"arrival")]]


async def test_a_sender_gets_back_what_it_stored_for_a_user_it_holds(
        open_replica: OpenReplica, channel: str, user: str) -> None:
    """So that each replica writes a user's stored messages in the order of their offsets."""
    holder, _ = await live_session(open_replica, user)

    routed = await send(holder, channel, user, b"step")

    assert routed.status == "sent" and routed.offset is not None
    assert await next_received(holder) == (b"step", routed.offset)


async def test_a_volatile_send_is_never_stored(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    holder, session = await lost_session(open_replica, user)

    assert await send(sender, channel, user, b"position", volatile=True) == Routed(False, None)  # offline: refused
    await live_session(open_replica, user, "sid-2", holder)
    assert await send(sender, channel, user, b"position", volatile=True) == Routed(True, None)
    assert await next_received(holder) == (b"position", None)
    assert await read_history(holder, user, session.start) == []


async def test_stored_messages_reach_every_holding_replica_in_the_order_of_their_offsets(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    """Sends from several senders at once: each replica reads them as the history numbers them."""
    first, _ = await live_session(open_replica, user, "sid-1", await open_replica("first"))
    second, _ = await live_session(open_replica, user, "sid-2", await open_replica("second"))
    count = MAX_MESSAGES // 2  # all stored: none is trimmed or left unstored

    routed = await asyncio.gather(*(send(source, channel, user, b"%s-%d" % (name, n))
                                    for n in range(count)
                                    for name, source in ((b"emitter", sender), (b"first", first))))

    assert {r.status for r in routed} == {"sent"}
    for replica in (first, second):
        got = [await next_received(replica) for _ in range(2 * count)]
        sequences = [int(offset.partition("-")[2]) for _, offset in got if offset is not None]
        assert len(sequences) == 2 * count and sequences == sorted(sequences)


async def test_a_batch_is_sent_at_once_and_each_message_reported(
        open_replica: OpenReplica, sender: Backend, channel: str, user: str) -> None:
    holder, _ = await live_session(open_replica, user)
    await lost_session(open_replica, "in-a-tunnel", replica=holder)

    results = await sender.transport.publish_many_to_user(
        channel, [(user, b"a"), ("in-a-tunnel", b"b"), ("nobody", b"c"), (user, b"d")])

    assert [r.status if isinstance(r, Routed) else r for r in results] == ["sent", "stored", None, "sent"]
    assert sorted([(await next_received(holder))[0] for _ in range(2)]) == [b"a", b"d"]  # a cluster sends at once
