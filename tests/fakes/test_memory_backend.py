"""The in-memory queue transport and broker the unit tests run the manager on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from server.backends.base import QueueTransport, Received
from server.errors import PublishError, QueueUnavailableError
from tests.fakes.memory_backend import MemoryBroker, MemoryPresence, MemoryTransport

CHANNEL = "events"


async def next_message(backend: MemoryTransport, timeout: float = 2.0) -> bytes:
    iterator: AsyncIterator[Received] = backend.messages()
    data, offset = await asyncio.wait_for(anext(iterator), timeout)
    assert offset is None  # the memory broker stores nothing for recovery
    return data


async def subscribed(broker: MemoryBroker, count: int, channel: str = CHANNEL) -> list[MemoryTransport]:
    backends = [MemoryTransport(broker) for _ in range(count)]
    for backend in backends:
        await backend.subscribe(channel)
    return backends


def test_memory_backend_implements_the_queue_backend_interface() -> None:
    assert isinstance(MemoryTransport(), QueueTransport)


@pytest.mark.parametrize("subscribers", [0, 1, 3])
async def test_publish_returns_the_number_of_subscribers(broker: MemoryBroker, subscribers: int) -> None:
    await subscribed(broker, subscribers)
    await subscribed(broker, 2, channel="other-channel")
    assert await MemoryTransport(broker).publish(CHANNEL, b"x") == subscribers


async def test_publish_is_recorded_on_the_broker(broker: MemoryBroker) -> None:
    await MemoryTransport(broker).publish(CHANNEL, b"one")
    await MemoryTransport(broker).publish("other", b"two")
    assert broker.published == [(CHANNEL, b"one"), ("other", b"two")]


async def test_every_subscriber_receives_published_messages_in_order(broker: MemoryBroker) -> None:
    first, second = await subscribed(broker, 2)
    publisher = MemoryTransport(broker)
    for i in range(3):
        await publisher.publish(CHANNEL, str(i).encode())
    for backend in (first, second):
        iterator = backend.messages()
        got = [(await asyncio.wait_for(anext(iterator), 2))[0] for _ in range(3)]
        assert got == [b"0", b"1", b"2"]


async def test_publish_does_not_reach_subscribers_of_other_channels(broker: MemoryBroker) -> None:
    (other,) = await subscribed(broker, 1, channel="other")
    await MemoryTransport(broker).publish(CHANNEL, b"x")
    assert other.inbox.empty()


async def test_go_down_ends_messages_with_queue_unavailable(broker: MemoryBroker) -> None:
    (backend,) = await subscribed(broker, 1)
    iterator = backend.messages()
    waiting = asyncio.create_task(anext(iterator))
    broker.go_down()
    with pytest.raises(QueueUnavailableError):
        await asyncio.wait_for(waiting, 2)
    assert backend.channels == set()


async def test_go_down_delivers_messages_queued_before_the_outage_first(broker: MemoryBroker) -> None:
    (backend,) = await subscribed(broker, 1)
    await MemoryTransport(broker).publish(CHANNEL, b"before")
    broker.go_down()
    iterator = backend.messages()
    assert await asyncio.wait_for(anext(iterator), 2) == (b"before", None)
    with pytest.raises(QueueUnavailableError):
        await asyncio.wait_for(anext(iterator), 2)


async def test_publish_raises_publish_error_while_down_and_records_nothing(broker: MemoryBroker) -> None:
    broker.go_down()
    with pytest.raises(PublishError):
        await MemoryTransport(broker).publish(CHANNEL, b"lost")
    assert broker.published == []


@pytest.mark.parametrize("operation", ["connect", "subscribe"])
async def test_connect_and_subscribe_raise_queue_unavailable_while_down(broker: MemoryBroker,
                                                                        operation: str) -> None:
    backend = MemoryTransport(broker)
    broker.go_down()
    with pytest.raises(QueueUnavailableError):
        if operation == "connect":
            await backend.connect()
        else:
            await backend.subscribe(CHANNEL)


async def test_ping_follows_the_broker_state(broker: MemoryBroker) -> None:
    backend = MemoryTransport(broker)
    assert await backend.ping() is True
    broker.go_down()
    assert await backend.ping() is False
    broker.come_back()
    assert await backend.ping() is True


async def test_after_come_back_subscribe_and_publish_work_again(broker: MemoryBroker) -> None:
    (backend,) = await subscribed(broker, 1)
    broker.go_down()
    with pytest.raises(QueueUnavailableError):
        await next_message(backend)
    broker.come_back()
    await backend.subscribe(CHANNEL)
    assert await MemoryTransport(broker).publish(CHANNEL, b"again") == 1
    assert await next_message(backend) == b"again"


async def test_inject_delivers_raw_bytes_without_recording_a_publish(broker: MemoryBroker) -> None:
    first, second = await subscribed(broker, 2)
    assert broker.inject(CHANNEL, b"\x00forged") == 2
    assert broker.published == []
    for backend in (first, second):
        assert await next_message(backend) == b"\x00forged"


async def test_unsubscribe_stops_delivery(broker: MemoryBroker) -> None:
    (backend,) = await subscribed(broker, 1)
    await backend.unsubscribe(CHANNEL)
    assert await MemoryTransport(broker).publish(CHANNEL, b"x") == 0
    assert backend.inbox.empty()
    assert backend.channels == set()


async def test_close_unsubscribes_every_channel_and_is_safe_twice(broker: MemoryBroker) -> None:
    backend = MemoryTransport(broker)
    await backend.subscribe("a")
    await backend.subscribe("b")
    await backend.close()
    await backend.close()
    assert backend.channels == set()
    assert broker.inject("a", b"x") == 0
    assert broker.inject("b", b"x") == 0


async def test_backends_without_a_shared_broker_are_isolated() -> None:
    listener, publisher = MemoryTransport(), MemoryTransport()
    await listener.subscribe(CHANNEL)
    assert await publisher.publish(CHANNEL, b"x") == 0
    assert listener.inbox.empty()
    assert listener.broker is not publisher.broker


async def test_a_sender_never_gets_back_what_it_publishes(broker: MemoryBroker) -> None:
    first, second = await subscribed(broker, 2)
    assert await first.publish(CHANNEL, b"x") == 1
    assert await next_message(second) == b"x"
    assert first.inbox.empty()


async def test_publish_to_user_reaches_only_the_replicas_holding_the_user(broker: MemoryBroker) -> None:
    holder, other = await subscribed(broker, 2)
    await MemoryPresence(broker, holder).add("ana", "sid-1")
    assert (await MemoryTransport(broker).publish_to_user(CHANNEL, "ana", b"for ana")).online is True
    assert await next_message(holder) == b"for ana"
    assert other.inbox.empty()


async def test_publish_to_user_says_whether_the_user_is_online_also_when_only_the_sender_holds_them(
        broker: MemoryBroker) -> None:
    (holder,) = await subscribed(broker, 1)
    await MemoryPresence(broker, holder).add("ana", "sid-1")
    assert (await holder.publish_to_user(CHANNEL, "ana", b"x")).online is True
    assert (await holder.publish_to_user(CHANNEL, "bo", b"x")).online is False
    assert holder.inbox.empty()
