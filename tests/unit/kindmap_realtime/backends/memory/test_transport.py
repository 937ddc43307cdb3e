"""kindmap_realtime/backends/memory/transport.py: what only the memory transport does (the rest: the contract
suite, tests/integration/backends/): bounded inboxes, and how a reader stops."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from kindmap_realtime.backends.memory import MemoryBroker, MemoryTransport
from kindmap_realtime.backends.memory.broker import Inbox, Member
from kindmap_realtime.backends.memory.presence import MemoryPresence
from kindmap_realtime.errors import PublishError, QueueUnavailableError

from .conftest import CHANNEL


async def holding(broker: MemoryBroker, name: str, user: str, *, limit: int = 10) -> MemoryTransport:
    """A listening transport whose replica holds a socket of ``user``, its inbox ``limit`` long."""
    transport = MemoryTransport(broker, Member(name, Inbox(limit)))
    await transport.subscribe(CHANNEL)
    await MemoryPresence(broker, transport.member, channel=CHANNEL).add(user, f"sid-{name}")
    return transport


async def test_a_send_whose_only_holder_has_a_full_inbox_fails_instead_of_saying_sent(
        memory_broker: MemoryBroker, caplog: pytest.LogCaptureFixture) -> None:
    full = await holding(memory_broker, "full", "ana", limit=1)
    sender = MemoryTransport(memory_broker, Member("sender"))
    await sender.publish_to_user(CHANNEL, "ana", b"fills it", volatile=True)

    with pytest.raises(PublishError):
        await sender.publish_to_user(CHANNEL, "ana", b"lost", volatile=True)
    await holding(memory_broker, "other", "ana")
    assert (await sender.publish_to_user(CHANNEL, "ana", b"half", volatile=True)).online is True
    assert len(full.member.inbox) == 1
    assert [r.levelname for r in caplog.records if "inbox is full" in r.getMessage()] == ["ERROR"]


async def test_a_message_for_all_skips_a_full_inbox_and_counts_only_those_it_reached(
        memory_broker: MemoryBroker) -> None:
    await holding(memory_broker, "full", "ana", limit=0)
    await holding(memory_broker, "reading", "bo")

    assert await MemoryTransport(memory_broker, Member("sender")).publish(CHANNEL, b"notice") == 1


async def test_a_reader_that_stops_listening_gets_what_was_sent_before_then_queue_unavailable(
        memory_broker: MemoryBroker) -> None:
    reader = await holding(memory_broker, "reader", "ana")
    await MemoryTransport(memory_broker, Member("sender")).publish(CHANNEL, b"before")
    await reader.unsubscribe(CHANNEL)

    async with contextlib.aclosing(reader.messages()) as messages:
        assert await anext(messages) == (b"before", None)
        with pytest.raises(QueueUnavailableError):
            await anext(messages)


async def test_a_reader_waiting_for_news_wakes_when_its_transport_closes(memory_broker: MemoryBroker) -> None:
    reader = await holding(memory_broker, "reader", "ana")
    messages = reader.messages()
    waiting = asyncio.ensure_future(anext(messages))
    await asyncio.sleep(0)  # one step of the loop: the reader is now waiting on its inbox

    await reader.close()

    with pytest.raises(QueueUnavailableError):
        await asyncio.wait_for(waiting, 2)
    assert reader.channels == set() and memory_broker.listeners(CHANNEL) == set()


async def test_the_transport_answers_always_and_needs_no_connection(memory_broker: MemoryBroker) -> None:
    transport = MemoryTransport(memory_broker, Member("replica"))

    await transport.connect()

    assert await transport.ping() is True


async def test_a_sender_never_gets_back_what_it_did_not_store(memory_broker: MemoryBroker) -> None:
    holder = await holding(memory_broker, "holder", "ana")

    assert await holder.publish(CHANNEL, b"for all") == 0
    assert (await holder.publish_to_user(CHANNEL, "ana", b"position", volatile=True)).online is True
    assert (await holder.publish_to_user(CHANNEL, "ana", b"no session to store it for")).offset is None

    assert len(holder.member.inbox) == 0
