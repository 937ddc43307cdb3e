"""server/eio/outgoing.py: a socket's outgoing buffer, driven as python-engineio drives its queue."""

from __future__ import annotations

import asyncio

import pytest
from engineio import packet as eio_packet

from server.eio.outgoing import OutgoingBuffer, packet_size


def message(size: int) -> eio_packet.Packet:
    return eio_packet.Packet(eio_packet.MESSAGE, "x" * size)


def test_packet_size_is_what_the_packet_takes_on_the_wire() -> None:
    for pkt in (eio_packet.Packet(eio_packet.MESSAGE, "42[\"nav\",\"x\"]"),
                eio_packet.Packet(eio_packet.MESSAGE, "42[\"nav\",\"길\"]"),
                eio_packet.Packet(eio_packet.MESSAGE, b"\x00\x01\x02"),
                eio_packet.Packet(eio_packet.OPEN, {"sid": "abc", "pingInterval": 25000}),
                eio_packet.Packet(eio_packet.PING)):
        encoded = pkt.encode()
        assert packet_size(pkt) == len(encoded if isinstance(encoded, bytes) else encoded.encode())


async def test_outgoing_queue_counts_the_bytes_it_holds_and_discard_frees_them() -> None:
    queue = OutgoingBuffer()
    for size in (10, 1000, 100):
        await queue.put(message(size))
    assert queue.nbytes == 11 + 1001 + 101

    queue.get_nowait()
    assert queue.nbytes == 11 + 1001 + 101  # taken, but not yet marked done
    queue.task_done()
    assert queue.nbytes == 1001 + 101
    assert queue.discard() == 2
    assert (queue.nbytes, queue.empty(), queue.qsize()) == (0, True, 0)
    await queue.join()  # discarded packets count as done


async def test_packets_come_out_in_order_and_an_empty_queue_raises_queue_empty() -> None:
    queue = OutgoingBuffer()
    packets = [message(n) for n in range(3)]
    for pkt in packets:
        queue.put_nowait(pkt)
    queue.put_nowait(None)

    assert [await queue.get() for _ in range(3)] + [queue.get_nowait()] == [*packets, None]
    with pytest.raises(asyncio.QueueEmpty):
        queue.get_nowait()


async def test_a_waiting_get_receives_the_next_packet_put_which_counts_until_done() -> None:
    queue = OutgoingBuffer()
    waiting = queue.get()
    pkt = message(5)

    queue.put_nowait(pkt)

    assert await asyncio.wait_for(waiting, 5) is pkt
    assert (queue.empty(), queue.nbytes) == (True, 6)
    queue.task_done()
    assert queue.nbytes == 0


async def test_a_get_that_timed_out_takes_nothing_from_later_puts() -> None:
    queue = OutgoingBuffer()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(queue.get(), 0.01)
    pkt = message(5)

    queue.put_nowait(pkt)

    assert queue.qsize() == 1
    assert await asyncio.wait_for(queue.get(), 5) is pkt


async def test_join_waits_until_every_packet_is_done() -> None:
    queue = OutgoingBuffer()
    await queue.join()  # nothing put: at once
    queue.put_nowait(message(1))
    joining = queue.join()
    assert joining.send(None) is not None  # suspended: waiting, not finished
    joining.close()
    joined = asyncio.ensure_future(queue.join())

    queue.get_nowait()
    queue.task_done()

    await asyncio.wait_for(joined, 5)
    with pytest.raises(ValueError):
        queue.task_done()
