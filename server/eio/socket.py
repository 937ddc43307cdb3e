"""An Engine.IO socket with a bounded outgoing buffer, and the WebSocket session and ping
clock it runs at a fraction of python-engineio's memory per idle connection.

python-engineio builds ``AsyncSocket`` itself; ``EngineServer`` makes each one a
``GuardedSocket`` as it connects (``server.compat.engineio.HookedEngineServer.socket_class``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any

import engineio
from aiohttp import WSCloseCode, web
from engineio import packet as eio_packet

from kindmap_realtime.errors import ErrorCode

from ..compat.aiohttp import write_compressed_text_now, writer_busy, writer_of
from ..compat.engineio import HookedSocket, mark_upgraded, set_last_ping, set_upgrading
from .environ import engineio_query
from .fanout import Frame
from .outgoing import OutgoingBuffer, packet_size

if TYPE_CHECKING:
    from .server import EngineServer

__all__ = ["POLLING_PACKETS", "WEBSOCKET_TYPES", "GuardedSocket", "OpenWebSocket"]

# Packets a client may send. A client never sends OPEN; PING only as the upgrade probe; NOOP never.
WEBSOCKET_TYPES = frozenset({eio_packet.CLOSE, eio_packet.PING, eio_packet.PONG, eio_packet.MESSAGE,
                             eio_packet.UPGRADE})
# Closes after which the peer is not reading: its TCP connection is aborted, not drained.
_HARD_REASONS = frozenset({ErrorCode.SLOW_CONSUMER.value, engineio.AsyncServer.reason.PING_TIMEOUT})
# The packets of a long-poll POST body, once read whole (see EngineServer.handle_request).
POLLING_PACKETS = web.RequestKey("engineio_packets", list)


class GuardedSocket(HookedSocket):
    """An Engine.IO socket whose outgoing buffer is bounded and freed on every close.

    The outgoing buffer is what the queue holds plus what sits unsent in the
    transport's write buffer. Past ``EngineServer.max_outgoing_bytes`` the client is
    a slow consumer: it is disconnected (reason ``SLOW_CONSUMER``) and its TCP
    connection aborted, since a goodbye would wait behind everything it did not read.
    """

    server: EngineServer
    queue: OutgoingBuffer
    transport: asyncio.Transport | None = None
    _polling = False  # a long-poll of this session is waiting for packets
    _deadline = 0.0  # the ``when`` of this socket's live entry in ``server.deadlines``
    _websocket: web.WebSocketResponse | None = None  # the session's WebSocket, once it serves packets
    _write_task: asyncio.Task[None] | None = None  # sending what the queue holds to the WebSocket
    _unsent: frozenset[asyncio.Transport] = frozenset()  # earlier connections, see buffered()
    _last_words = eio_packet.NOOP  # what that poll answers if the session closes under it
    leaving = False  # its client sent a Socket.IO DISCONNECT: whatever closes it next, it left on purpose
    _closed_event: asyncio.Event | None = None  # set on close, for whoever waits in ``sent``

    async def receive(self, pkt: eio_packet.Packet) -> None:
        """python-engineio hands a MESSAGE to a task of its own and handles a close at once, so a
        client's DISCONNECT followed by the close of its transport can reach the disconnect handler
        as a lost transport: the DISCONNECT is noted here, before either (connection state recovery
        keeps the session of a lost connection, not of one its client closed)."""
        if pkt.packet_type == eio_packet.MESSAGE and isinstance(pkt.data, str) and pkt.data[:1] in ("0", "1"):
            self.leaving = pkt.data[:1] == "1"  # a CONNECT again (the same session) undoes it
        await super().receive(pkt)

    def buffered(self) -> int:
        """Bytes queued for this client and not yet taken by the kernel, on every
        connection of the session: answers to earlier long-polls may still sit unsent."""
        current = self.transport
        unsent = 0 if current is None or current.is_closing() else current.get_write_buffer_size()
        if not self._unsent:  # a WebSocket session's only connection: nothing to add or prune
            return self.queue.nbytes + unsent
        self._unsent = frozenset(t for t in self._unsent if not t.is_closing() and t.get_write_buffer_size())
        return self.queue.nbytes + unsent + sum(t.get_write_buffer_size() for t in self._unsent if t is not current)

    def schedule_ping(self) -> None:
        """As python-engineio's (at the handshake, and on every PONG that answers a ping), but
        the wait for the next ping is an entry in the server's ``deadlines``, not a task."""
        if self.last_ping:
            set_last_ping(self, None)
            self._deadline = self.server.deadlines.add(self.server.ping_interval, self)

    def on_deadline(self, when: float) -> None:
        """The ping is due, or (sent ``ping_timeout`` ago) still unanswered: the library's
        WebSocket read timeout and service-task check, at the moment they are due."""
        if when != self._deadline or self.closing or self.closed:
            return  # answered since, or gone
        if self.last_ping is None:
            set_last_ping(self, time.time())
            self._deadline = self.server.deadlines.add(self.server.ping_timeout, self)
            self.server.start_background_task(self.send, eio_packet.Packet(eio_packet.PING))
        else:
            self.server.start_background_task(self.close, wait=False, abort=False,
                                              reason=self.server.reason.PING_TIMEOUT)

    def _use_transport(self, transport: asyncio.Transport | None) -> None:
        """Serve the next request on ``transport``; the previous one stays counted while it holds unsent bytes."""
        if self.transport is not None and self.transport is not transport:
            self._unsent = self._unsent | {self.transport}
        self.transport = transport

    async def send(self, pkt: eio_packet.Packet) -> None:
        if not self.closed and self.buffered() + packet_size(pkt) > self.server.max_outgoing_bytes:
            if not self.closing:  # emits racing the close (its disconnect handler awaits Redis) go with it
                await self._drop_slow_consumer()
            return
        await super().send(pkt)

    def idle(self) -> bool:
        """Whether a WebSocket serves this socket and nothing is queued for it or being sent."""
        return self._websocket is not None and self._write_task is None and self.queue.empty()

    def write_frame(self, frame: Frame, now: float) -> bool:
        """Write ``frame`` into the WebSocket connection at once, as the writer task would, when
        the socket is idle (so no packet is ahead of this one); ``now`` is ``time.time()``.

        ``False``, having done nothing, when the packet must go through ``send``: no
        WebSocket, packets queued or being sent, a closing socket, an overdue ping, or a
        full outgoing buffer (``send`` drops the slow consumer); with permessage-deflate
        also a frame too large to compress in the event loop, or the compressor busy with
        one that was.
        """
        if not self.idle() or self.closing or self.closed:
            return False
        websocket = self._websocket
        assert websocket is not None  # idle
        # The WebSocket's own writer and connection: ``self.transport`` may be a long-poll's
        # that arrived while the session was upgrading.
        writer = writer_of(websocket)
        if writer is None or websocket.closed or writer.transport.is_closing():
            return False
        last_ping = self.last_ping
        if last_ping and now - last_ping > self.server.ping_timeout:
            return False
        if self.buffered() + frame.size > self.server.max_outgoing_bytes:
            return False
        if not websocket.compress:
            writer.transport.write(frame.data)
            return True
        # What aiohttp's send_frame does for a small frame, under the lock it finds free.
        if writer_busy(writer, frame.size):
            return False
        write_compressed_text_now(writer, frame.payload)
        return True

    async def _drop_slow_consumer(self) -> None:
        buffered = self.buffered()
        self.server.report("slow_consumer", logging.WARNING, "slow consumer disconnected",
                           sid=self.sid, buffered_bytes=buffered, limit=self.server.max_outgoing_bytes)
        if self.server.metrics is not None:
            self.server.metrics.slow_consumers.inc()
        await self.close(wait=False, abort=True, reason=ErrorCode.SLOW_CONSUMER.value)

    async def close(self, wait: bool = True, abort: bool = False, reason: str | None = None) -> None:
        """Close as python-engineio does, but never wait longer than a ping timeout for the
        client to take its last packets, end the connection once it has them, and free the
        queue whenever nothing more will be sent.

        The library's ``wait`` joins the queue, which a client that never polls or reads
        again leaves hanging forever (with the request or task that called it); and once it
        has, the library leaves the WebSocket open for the client to close, which a client
        that wants to keep its connection never does.
        """
        if self.closed or self.closing:
            return
        await super().close(wait=False, abort=abort, reason=reason)
        if self._closed_event is not None:
            self._closed_event.set()
        hard = reason in _HARD_REASONS
        if wait and not hard:
            try:
                await asyncio.wait_for(self.queue.join(), self.server.ping_timeout)
            except TimeoutError:
                hard = True
        if wait or abort or hard:
            self.release(abort_transport=hard)

    async def sent(self, timeout: float) -> None:
        """Until what is queued has left, the socket has closed, or ``timeout`` has passed."""
        if self.closed or self.closing:
            return
        self._closed_event = self._closed_event or asyncio.Event()
        waits = {asyncio.ensure_future(self.queue.join()), asyncio.ensure_future(self._closed_event.wait())}
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()

    def release(self, *, abort_transport: bool) -> None:
        """Wake the websocket writer or pending poll, so the connection ends after what is
        queued (a closing Socket.IO DISCONNECT, say); with ``abort_transport`` nothing more
        reaches the client, so the queue is freed and the TCP connection dropped at once."""
        if abort_transport:
            self.queue.discard()
            for transport in self._unsent | ({self.transport} if self.transport is not None else set()):
                transport.abort()
        self.queue.put_nowait(None)

    def handle_get_request(self, environ: Mapping[str, Any]) -> Awaitable[Any]:
        """A long-poll (or the WebSocket upgrade request), as Engine.IO 4 specifies it:

        - a second poll while one waits is a protocol violation (each would hold a
          request, without limit): it gets 400, the session closes, and the waiting
          poll answers a CLOSE packet;
        - a poll waiting when the session closes under it (the client's own CLOSE
          packet, a drain) answers a NOOP at once, not after a ping timeout.

        Not a coroutine itself, and a WebSocket upgrade goes straight to ``upgrade_to_websocket``
        (the library's test, inlined): a coroutine here or the library's would otherwise
        stay suspended for as long as the connection lives.
        """
        request: web.Request = environ["aiohttp.request"]
        self._use_transport(request.transport)
        if engineio_query(request).get("transport", [""])[0] == "polling":
            return self._long_poll(environ)
        connection = [token.strip() for token in environ.get("HTTP_CONNECTION", "").lower().split(",")]
        if "upgrade" in connection and environ.get("HTTP_UPGRADE", "").lower() == "websocket":
            return self.upgrade_to_websocket(environ)
        return super().handle_get_request(environ)  # type: ignore[no-any-return]

    async def _long_poll(self, environ: Mapping[str, Any]) -> Any:
        if self._polling:
            self._last_words = eio_packet.CLOSE
            self.server.protocol_violation("duplicate_poll")
            await self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_ERROR)
            raise engineio.exceptions.EngineIOError("a second long-poll while one waits")
        self._polling = True
        try:
            packets = await super().handle_get_request(environ)
        finally:
            self._polling = False
        return packets or [eio_packet.Packet(self._last_words)]

    async def handle_post_request(self, environ: Mapping[str, Any]) -> None:
        """Handle the packets ``EngineServer.handle_request`` read and checked."""
        for pkt in environ["aiohttp.request"][POLLING_PACKETS]:
            await self.receive(pkt)

    def upgrade_to_websocket(self, environ: Mapping[str, Any]) -> Awaitable[web.WebSocketResponse | OpenWebSocket]:
        """Served here, not by python-engineio's WebSocket driver (see ``serve_websocket``)."""
        if self.upgraded:
            raise OSError("Socket has been upgraded already")  # as python-engineio's
        return self._open_websocket(environ["aiohttp.request"])

    async def _open_websocket(self, request: web.Request) -> web.WebSocketResponse | OpenWebSocket:
        """The WebSocket for this session, prepared (and the upgrade probe answered): as an
        ``OpenWebSocket`` for ``EngineServer.handle_request`` to serve, or, when the upgrade
        failed, as the answer to close."""
        server = self.server
        ws = web.WebSocketResponse(max_msg_size=server.max_http_buffer_size, compress=server.websocket_compression)
        await ws.prepare(request)
        if self.connected:
            if not await self._take_upgrade(ws):
                return ws
        else:
            mark_upgraded(self, connected=True)
        return OpenWebSocket(self, ws)

    async def serve_websocket(self, ws: web.WebSocketResponse) -> None:
        """python-engineio's WebSocket session (its driver's ``WebSocket`` and the socket's handler
        of it), in one coroutine and without a task of its own:

        - it runs once python-engineio's handler has returned (``OpenWebSocket``), so none of
          the library's coroutines, nor what they hold (the handshake's query, environ and
          OPEN packet), waits under the connection;
        - frames are read here, in the request's task; the library reads each in a new task
          under ``wait_for`` (a task, a future and a timer per idle connection), for a timeout
          that ``on_deadline`` enforces instead: a client that answers pings is never silent
          for ``ping_interval + ping_timeout``, and one that does not is closed then;
        - packets are written by a task that runs only while the queue holds some (the
          library's writer waits on the queue for as long as the connection lives);
        - a frame that is not an Engine.IO packet closes the WebSocket with 1002 (protocol
          error) and ends the session, also one on long-polling that was upgrading (the
          library decodes frames outside any ``try``: the error middleware would answer
          HTTP 500 inside the upgraded stream, and it logs a traceback for an unknown type);
        - ``permessage-deflate`` is accepted only when ``EngineServer.websocket_compression``
          says so (the library's driver takes aiohttp's default, which accepts every offer).
        """
        server = self.server
        self._websocket = ws
        self.queue.on_put = self._start_writing
        self._start_writing()
        while True:
            try:  # read here, not in _next_frame: its coroutine would wait under every idle connection
                data = (await ws.receive()).data
            except (Exception, asyncio.CancelledError):  # see _next_frame
                break
            if not await self._acceptable(ws, data):
                break
            try:
                await self.receive(eio_packet.Packet(encoded_packet=data))
            except engineio.exceptions.UnknownPacketError:
                pass
            except engineio.exceptions.SocketIsClosedError:
                break
            except Exception:
                server.logger.exception("Unknown receive error")
        self.queue.put_nowait(None)  # the writer closes the WebSocket after what is queued
        try:
            if self._write_task is not None:
                await asyncio.shield(self._write_task)
        except asyncio.CancelledError:
            pass  # the connection was lost (aiohttp cancels the handler): the session ends all the same
        await self.close(wait=False, abort=True, reason=server.reason.TRANSPORT_CLOSE)
        if self.closed and server.sockets.get(self.sid) is self:
            del server.sockets[self.sid]  # what python-engineio's handler does once its WebSocket ends

    async def _take_upgrade(self, ws: web.WebSocketResponse) -> bool:
        """The probe exchange that moves a long-polling session to this WebSocket (python-engineio's)."""
        set_upgrading(self, True)  # the queue is held for the WebSocket; polls answer NOOP
        probe = await self._next_frame(ws)
        if probe is None:
            return False
        pkt = eio_packet.Packet(encoded_packet=probe)
        if pkt.packet_type != eio_packet.PING or pkt.data != "probe":
            set_upgrading(self, False)
            return False
        await ws.send_str(eio_packet.Packet(eio_packet.PONG, data="probe").encode())
        self.queue.put_nowait(eio_packet.Packet(eio_packet.NOOP))  # ends the waiting poll
        upgrade = await self._next_frame(ws)
        set_upgrading(self, False)
        if upgrade is None or eio_packet.Packet(encoded_packet=upgrade).packet_type != eio_packet.UPGRADE:
            return False
        mark_upgraded(self)
        return True

    async def _next_frame(self, ws: web.WebSocketResponse) -> str | bytes | None:
        """The next frame's data; ``None`` once the WebSocket closed or broke the protocol."""
        try:
            data = (await ws.receive()).data
        except (Exception, asyncio.CancelledError):
            # Cancelled too, as the library's read: aiohttp cancels the handler when the
            # connection is lost, and the session must still end and be forgotten.
            return None
        return data if await self._acceptable(ws, data) else None

    async def _acceptable(self, ws: web.WebSocketResponse, data: Any) -> bool:
        """Whether ``data`` is an Engine.IO packet's frame; not when the WebSocket closed (its
        data is then no ``str`` or ``bytes``), nor after closing it for a protocol violation."""
        if not isinstance(data, str | bytes) or len(data) > self.server.max_http_buffer_size:
            return False
        cause = _websocket_violation(data)
        if cause is None:
            return True
        self.server.protocol_violation(cause)
        await self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_ERROR)
        await ws.close(code=WSCloseCode.PROTOCOL_ERROR, message=cause.encode())
        return False

    def _start_writing(self) -> None:
        """The queue's ``on_put`` while a WebSocket serves this socket."""
        if self._write_task is None and not self.queue.empty():
            self._write_task = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        ws = self._websocket
        assert ws is not None  # set before the queue's on_put
        try:
            ended = await self._send_queued(ws)
        finally:
            self._write_task = None
        if ended:
            self.queue.on_put = None  # nothing more is written: the library's writer task has ended
            await ws.close()

    async def _send_queued(self, ws: web.WebSocketResponse) -> bool:
        """Send packets until the queue is empty (``False``: the next put wakes a writer again),
        or it holds a ``None`` or a send fails (``True``: the WebSocket is to be closed)."""
        queue = self.queue
        while not queue.empty():
            pkt = queue.get_nowait()
            queue.task_done()
            if pkt is None:
                return True
            encoded = pkt.encode()
            try:
                await (ws.send_bytes(encoded) if isinstance(encoded, bytes) else ws.send_str(encoded))
            except Exception:
                return True
        return False


def _websocket_violation(data: str | bytes) -> str | None:
    if isinstance(data, bytes):
        return None  # a binary frame is always a MESSAGE
    if not data:
        return "empty_frame"
    try:
        pkt = eio_packet.Packet(encoded_packet=data)
    except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
        return "bad_packet"
    return None if pkt.packet_type in WEBSOCKET_TYPES else "bad_packet"


class OpenWebSocket:
    """A prepared WebSocket and its socket, passed up unchanged through python-engineio's
    request handler (it hands any answer but a dict back as it is) to
    ``EngineServer.handle_request``, which serves it with ``GuardedSocket.serve_websocket``."""

    __slots__ = ("socket", "ws")

    def __init__(self, socket: GuardedSocket, ws: web.WebSocketResponse) -> None:
        self.socket = socket
        self.ws = ws
