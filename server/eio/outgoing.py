"""An Engine.IO socket's outgoing packets: a queue that counts its bytes and costs little when idle.

python-engineio makes every socket's queue through ``create_queue`` and uses only
``put``/``put_nowait``, ``get`` (awaited through ``asyncio.wait_for``),
``get_nowait`` (raising ``asyncio.QueueEmpty``), ``task_done`` and ``join``.
An ``asyncio.Queue`` holds three deques and an ``Event`` with a fourth, about
3 KB per socket before a packet is queued, and ``wait_for`` wraps its ``get()``
coroutine in a task of its own every time a socket waits for packets. This queue
keeps its packets in a deque that exists only while it holds some, and its
``get()`` returns a future, which ``wait_for`` awaits as it is. A WebSocket's
writer does not wait on it at all: ``on_put`` starts one when packets arrive.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TypeAlias

from engineio import packet as eio_packet

__all__ = ["OutgoingBuffer", "packet_size"]

Item: TypeAlias = "eio_packet.Packet | None"  # None: python-engineio's "stop sending" marker


def packet_size(pkt: Item) -> int:
    """Bytes ``pkt`` takes on the wire, without encoding a large text message twice."""
    if pkt is None:
        return 0
    data = pkt.data
    if isinstance(data, bytes):
        return len(data)
    if isinstance(data, str) and data.isascii():
        return 1 + len(data)
    encoded = pkt.encode()
    return len(encoded) if isinstance(encoded, bytes) else len(encoded.encode())


class OutgoingBuffer:
    """Unbounded FIFO of packets with ``asyncio.Queue``'s methods, and ``nbytes``: the bytes of
    packets put and not yet marked done. python-engineio marks each done as its writer takes
    it, so a packet counts until the writer has it in hand, as in an ``asyncio.Queue``.

    A waiting ``get()`` is handed the next packet by the ``put`` that brings it.
    Should the task awaiting that future be cancelled in the same loop iteration,
    the packet is dropped; Python 3.11's ``wait_for`` returns it instead, and later
    versions only cancel that wait when the socket is closing anyway.
    """

    __slots__ = ("_done", "_getters", "_items", "_sizes", "nbytes", "on_put")

    def __init__(self) -> None:
        self.nbytes = 0
        self.on_put: Callable[[], None] | None = None  # called after every put, once the item is queued
        # Each deque or list exists only while it holds something: an idle socket has none.
        self._items: deque[Item] | None = None
        self._sizes: deque[int] | None = None  # of the packets not yet done, oldest first
        self._getters: list[asyncio.Future[Item]] | None = None  # one at a time, in practice
        self._done: asyncio.Event | None = None  # made by the first join() that has to wait

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, item: Item) -> None:
        if self._done is not None:
            self._done.clear()
        size = packet_size(item)
        self.nbytes += size
        if self._sizes is None:
            self._sizes = deque()
        self._sizes.append(size)
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        self._hand_over()
        if self.on_put is not None:
            self.on_put()

    async def put(self, item: Item) -> None:
        self.put_nowait(item)

    def get(self) -> asyncio.Future[Item]:
        """The next packet, as a future (already done when one is queued)."""
        future: asyncio.Future[Item] = asyncio.get_running_loop().create_future()
        if self._getters is None:
            self._getters = []
        self._getters.append(future)
        self._hand_over()
        return future

    def get_nowait(self) -> Item:
        return self._pop()

    def task_done(self) -> None:
        sizes = self._sizes
        if not sizes:
            raise ValueError("task_done() called too many times")
        self.nbytes -= sizes.popleft()
        if not sizes:
            self._sizes = None
            if self._done is not None:
                self._done.set()

    async def join(self) -> None:
        if self._sizes:
            if self._done is None:
                self._done = asyncio.Event()
            await self._done.wait()

    def discard(self) -> int:
        """Drop every queued packet (marking each done, so ``join`` cannot hang); returns how many."""
        count = 0
        while self._items:
            self._pop()
            self.task_done()
            count += 1
        return count

    def _pop(self) -> Item:
        items = self._items
        if not items:
            raise asyncio.QueueEmpty
        item = items.popleft()
        if not items:
            self._items = None
        return item

    def _hand_over(self) -> None:
        """Give queued packets to waiting getters, oldest first; forget getters that gave up."""
        getters = self._getters
        while getters and self._items:
            getter = getters.pop(0)
            if not getter.done():
                getter.set_result(self._pop())
        while getters and getters[0].done():
            getters.pop(0)
        if not getters:
            self._getters = None
