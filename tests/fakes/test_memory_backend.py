"""The controls the unit tests' memory backend adds to the shipped one: outages, forged input, records.

(The shipped backend's own behaviour is tested in tests/unit/kindmap_realtime/backends/memory/ and, beside
Redis and Redis Cluster, by the contract suite in tests/integration/backends/.)
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from kindmap_realtime.errors import PublishError, QueueUnavailableError
from tests.fakes.memory_backend import FlakyBroker, FlakyTransport, flaky_transport

CHANNEL = "events"


async def next_message(transport: FlakyTransport, timeout: float = 2.0) -> bytes:
    async with contextlib.aclosing(transport.messages()) as messages:
        data, _ = await asyncio.wait_for(anext(messages), timeout)
    return data


async def subscribed(broker: FlakyBroker, count: int, channel: str = CHANNEL) -> list[FlakyTransport]:
    transports = [flaky_transport(broker, f"replica-{n}") for n in range(count)]
    for transport in transports:
        await transport.subscribe(channel)
    return transports


async def test_go_down_ends_messages_with_queue_unavailable(broker: FlakyBroker) -> None:
    (transport,) = await subscribed(broker, 1)
    messages = transport.messages()
    waiting = asyncio.create_task(anext(messages))
    await asyncio.sleep(0)  # the reader is waiting on its inbox when the outage comes
    broker.go_down()
    with pytest.raises(QueueUnavailableError):
        await asyncio.wait_for(waiting, 2)
    assert transport.channels == set()


async def test_go_down_delivers_messages_queued_before_the_outage_first(broker: FlakyBroker) -> None:
    (transport,) = await subscribed(broker, 1)
    await flaky_transport(broker).publish(CHANNEL, b"before")
    broker.go_down()
    messages = transport.messages()
    assert await asyncio.wait_for(anext(messages), 2) == (b"before", None)
    with pytest.raises(QueueUnavailableError):
        await asyncio.wait_for(anext(messages), 2)


@pytest.mark.parametrize("volatile", [True, False])
async def test_publishes_raise_publish_error_while_down_and_record_nothing(broker: FlakyBroker,
                                                                         volatile: bool) -> None:
    broker.go_down()
    with pytest.raises(PublishError):
        await flaky_transport(broker).publish(CHANNEL, b"lost")
    with pytest.raises(PublishError):
        await flaky_transport(broker).publish_to_user(CHANNEL, "ana", b"lost", volatile=volatile)
    assert broker.published == []


@pytest.mark.parametrize("operation", ["connect", "subscribe"])
async def test_connect_and_subscribe_raise_queue_unavailable_while_down(broker: FlakyBroker,
                                                                        operation: str) -> None:
    transport = flaky_transport(broker)
    broker.go_down()
    with pytest.raises(QueueUnavailableError):
        if operation == "connect":
            await transport.connect()
        else:
            await transport.subscribe(CHANNEL)


async def test_ping_follows_the_broker_state(broker: FlakyBroker) -> None:
    transport = flaky_transport(broker)
    assert await transport.ping() is True
    broker.go_down()
    assert await transport.ping() is False
    broker.come_back()
    assert await transport.ping() is True


async def test_after_come_back_subscribe_and_publish_work_again(broker: FlakyBroker) -> None:
    (transport,) = await subscribed(broker, 1)
    broker.go_down()
    with pytest.raises(QueueUnavailableError):
        await next_message(transport)
    broker.come_back()
    await transport.subscribe(CHANNEL)
    assert await flaky_transport(broker).publish(CHANNEL, b"again") == 1
    assert await next_message(transport) == b"again"


async def test_publishes_are_recorded_on_the_broker_in_order(broker: FlakyBroker) -> None:
    await flaky_transport(broker).publish(CHANNEL, b"one")
    await flaky_transport(broker).publish_to_user("other", "ana", b"two")
    assert broker.published == [(CHANNEL, b"one"), ("other", b"two")]


async def test_inject_delivers_raw_bytes_to_every_listener_without_recording_a_publish(broker: FlakyBroker) -> None:
    first, second = await subscribed(broker, 2)
    await subscribed(broker, 1, channel="other")
    assert broker.inject(CHANNEL, b"\x00forged") == 2
    assert broker.published == []
    assert [await next_message(transport) for transport in (first, second)] == [b"\x00forged"] * 2


async def test_waiting_counts_what_listeners_have_not_read(broker: FlakyBroker) -> None:
    (transport,) = await subscribed(broker, 1)
    broker.inject(CHANNEL, b"a")
    broker.inject(CHANNEL, b"b")
    assert broker.waiting() == 2
    await next_message(transport)
    assert broker.waiting() == 1
