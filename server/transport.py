"""The Engine.IO transport, hardened: bounded outgoing buffers, whole long-poll bodies,
protocol violations closed as such.

python-engineio keeps every packet for a socket in an unbounded queue, reads a
long-poll body only partly, leaves an oversized POST unanswered with its session
held, and lets a malformed WebSocket frame escape as an exception (the error
middleware then writes an HTTP 500 into the WebSocket stream). ``SocketServer``
is python-socketio's ``AsyncServer`` on an Engine.IO server of ours that fixes
these through the library's hooks (``_engineio_server_class``, ``create_queue``,
the async driver's WebSocket class) and a socket subclass.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any

import engineio
import socketio
from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp._websocket.writer import WEBSOCKET_MAX_SYNC_CHUNK_SIZE
from engineio import packet as eio_packet
from engineio import payload as eio_payload
from engineio.async_drivers import aiohttp as eio_aiohttp
from engineio.async_socket import AsyncSocket

from .errors import ErrorCode, error_payload
from .fanout import Frame
from .json_codec import SocketIOJson, is_json
from .logs import LogThrottle
from .metrics import Metrics
from .outgoing import OutgoingQueue, packet_size

__all__ = ["CodecPacket", "EngineServer", "GuardedSocket", "GuardedWebSocket", "SocketServer"]

logger = logging.getLogger(__name__)

# Packets a client may send. A client never sends OPEN; PING only as the upgrade probe; NOOP never.
_WEBSOCKET_TYPES = frozenset({eio_packet.CLOSE, eio_packet.PING, eio_packet.PONG, eio_packet.MESSAGE,
                              eio_packet.UPGRADE})
_POLLING_TYPES = _WEBSOCKET_TYPES - {eio_packet.PING}
# Closes after which the peer is not reading: its TCP connection is aborted, not drained.
_HARD_REASONS = frozenset({ErrorCode.SLOW_CONSUMER.value, engineio.AsyncServer.reason.PING_TIMEOUT})
# The packets of a long-poll POST body, once read whole (see EngineServer.handle_request).
_POLLING_PACKETS = web.RequestKey("engineio_packets", list)


class GuardedSocket(AsyncSocket):  # type: ignore[misc]
    """An Engine.IO socket whose outgoing buffer is bounded and freed on every close.

    The outgoing buffer is what the queue holds plus what sits unsent in the
    transport's write buffer. Past ``EngineServer.max_outgoing_bytes`` the client is
    a slow consumer: it is disconnected (reason ``SLOW_CONSUMER``) and its TCP
    connection aborted, since a goodbye would wait behind everything it did not read.
    """

    server: EngineServer
    queue: OutgoingQueue
    transport: asyncio.Transport | None = None
    websocket: web.WebSocketResponse | None = None  # the session's WebSocket while its handler runs
    last_ping: float | None  # python-engineio's: when the last ping went out; None while none is due
    _polling = False  # a long-poll of this session is waiting for packets
    _unsent: frozenset[asyncio.Transport] = frozenset()  # earlier connections, see buffered()
    _last_words = eio_packet.NOOP  # what that poll answers if the session closes under it

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
        """As python-engineio's, but the wait for the next ping is a timer: the library starts a
        task per socket that sleeps ``ping_interval`` (a task, its coroutine and a future, for
        every idle connection); here a task runs only to send the ping."""
        if self.last_ping:
            self.last_ping = None
            asyncio.get_running_loop().call_later(self.server.ping_interval, self._ping_due)

    def _ping_due(self) -> None:
        if not self.closing and not self.closed:
            self.last_ping = time.time()
            self.server.start_background_task(self.send, eio_packet.Packet(eio_packet.PING))

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

    def write_frame(self, frame: Frame, now: float) -> bool:
        """Write ``frame`` into the WebSocket connection at once, as the writer task would, when
        that task awaits packets (so none is ahead of this one); ``now`` is ``time.time()``.

        ``False``, having done nothing, when the packet must go through ``send``: no
        WebSocket, a busy writer, a closing socket, an overdue ping (``send`` closes the
        socket), or a full outgoing buffer (``send`` drops the slow consumer); with
        permessage-deflate also a frame too large to compress in the event loop, or the
        compressor busy with one that was.
        """
        websocket = self.websocket
        if websocket is None:
            return False
        # The WebSocket's own writer and connection: ``self.transport`` may be a long-poll's
        # that arrived while the session was upgrading.
        writer = websocket._writer
        if (writer is None or not self.upgraded or not self.queue.waiting() or self.closing or self.closed
                or websocket.closed or writer.transport.is_closing()):
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
        if writer._send_lock.locked() or frame.size > WEBSOCKET_MAX_SYNC_CHUNK_SIZE:
            return False
        writer._send_compressed_frame_sync(frame.payload, WSMsgType.TEXT, None)
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
        client to take its last packets, and free the queue whenever nothing more will be sent.

        The library's ``wait`` joins the queue, which a client that never polls or reads
        again leaves hanging forever (with the request or task that called it).
        """
        if self.closed or self.closing:
            return
        await super().close(wait=False, abort=abort, reason=reason)
        hard = reason in _HARD_REASONS
        if wait and not hard:
            try:
                await asyncio.wait_for(self.queue.join(), self.server.ping_timeout)
            except TimeoutError:
                hard = True
        if abort or hard:
            self.release(abort_transport=hard)

    def release(self, *, abort_transport: bool) -> None:
        """Wake the websocket writer or pending poll, so the connection ends after what is
        queued (a closing Socket.IO DISCONNECT, say); with ``abort_transport`` nothing more
        reaches the client, so the queue is freed and the TCP connection dropped at once."""
        if abort_transport:
            self.queue.discard()
            for transport in self._unsent | ({self.transport} if self.transport is not None else set()):
                transport.abort()
        self.queue.put_nowait(None)

    def handle_get_request(self, environ: dict[str, Any]) -> Awaitable[Any]:
        """A long-poll (or the WebSocket upgrade request), as Engine.IO 4 specifies it:

        - a second poll while one waits is a protocol violation (each would hold a
          request, without limit): it gets 400, the session closes, and the waiting
          poll answers a CLOSE packet;
        - a poll waiting when the session closes under it (the client's own CLOSE
          packet, a drain) answers a NOOP at once, not after a ping timeout.

        Not a coroutine itself: for a WebSocket it hands back the library's, which would
        otherwise keep one of ours suspended as long as the connection lives.
        """
        request: web.Request = environ["aiohttp.request"]
        self._use_transport(request.transport)
        if request.query.get("transport") != "polling":
            return super().handle_get_request(environ)  # type: ignore[no-any-return]
        return self._long_poll(environ)

    async def _long_poll(self, environ: dict[str, Any]) -> Any:
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

    async def handle_post_request(self, environ: dict[str, Any]) -> None:
        """Handle the packets ``EngineServer.handle_request`` read and checked."""
        for pkt in environ["aiohttp.request"][_POLLING_PACKETS]:
            await self.receive(pkt)


class GuardedWebSocket(eio_aiohttp.WebSocket):  # type: ignore[misc]
    """The aiohttp driver's WebSocket wrapper, closing on a frame that is not an Engine.IO packet,
    and accepting ``permessage-deflate`` only when ``EngineServer.websocket_compression`` says so.

    python-engineio decodes frames outside any ``try`` (a bad one escapes as an
    exception into aiohttp, whose middleware answers HTTP 500 inside the upgraded
    stream) and logs a traceback for a packet type it does not know. Here such a
    frame closes the WebSocket with 1002 (protocol error) and ends the session, also
    one still on long-polling that was upgrading (the library would keep it).
    """

    server: EngineServer

    async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
        # The library's own body, but for ``compress``: it builds the response with aiohttp's
        # default, which accepts every client's offer of permessage-deflate, and has no option.
        request: web.Request = environ["aiohttp.request"]
        self._sock = web.WebSocketResponse(max_msg_size=self.server.max_http_buffer_size,
                                           compress=self.server.websocket_compression)
        await self._sock.prepare(request)
        self.environ = environ
        socket = self._socket()
        if socket is not None:
            socket.websocket = self._sock  # for GuardedSocket.write_frame
        try:
            await self.handler(self)
        finally:
            if socket is not None:
                socket.websocket = None
        return self._sock

    async def wait(self) -> Any:
        # The library's ``wait``, inlined: awaiting it from here would keep one more
        # coroutine suspended for every idle connection.
        data = (await self._sock.receive()).data
        if not isinstance(data, str | bytes):
            raise OSError()
        cause = _websocket_violation(data)
        if cause is not None:
            self.server.protocol_violation(cause)
            socket = self._socket()
            if socket is not None:
                await socket.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_ERROR)
            await self._sock.close(code=WSCloseCode.PROTOCOL_ERROR, message=cause.encode())
            raise OSError(f"protocol violation: {cause}")
        return data

    def _socket(self) -> GuardedSocket | None:
        # The library passes the socket's bound ``_websocket_handler`` as ``handler``.
        socket = getattr(self.handler, "__self__", None)
        return socket if isinstance(socket, GuardedSocket) else None


def _websocket_violation(data: str | bytes) -> str | None:
    if isinstance(data, bytes):
        return None  # a binary frame is always a MESSAGE
    if not data:
        return "empty_frame"
    try:
        pkt = eio_packet.Packet(encoded_packet=data)
    except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
        return "bad_packet"
    return None if pkt.packet_type in _WEBSOCKET_TYPES else "bad_packet"


def _decode_polling_body(body: bytes) -> list[eio_packet.Packet] | None:
    """The packets of a long-poll POST body, or ``None`` when it is not a valid payload."""
    try:
        packets: list[eio_packet.Packet] = eio_payload.Payload(encoded_payload=body.decode()).packets
    except (ValueError, RecursionError):  # also UnicodeDecodeError and binascii.Error; JSON nested too deep
        return None
    if not packets or any(p.packet_type not in _POLLING_TYPES for p in packets):
        return None
    return packets


class EngineServer(engineio.AsyncServer):  # type: ignore[misc]
    """python-engineio's server with ``GuardedSocket`` sockets and checked long-poll bodies.

    :param max_outgoing_bytes: a socket's outgoing buffer limit (``MAX_OUTGOING_BUFFER_BYTES``).
    :param websocket_compression: accept ``permessage-deflate`` (``WEBSOCKET_COMPRESSION``).
    :param metrics: where slow consumers and protocol violations are counted.
    """

    def __init__(self, *, max_outgoing_bytes: int, websocket_compression: bool = False,
                 metrics: Metrics | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_outgoing_bytes = max_outgoing_bytes
        self.websocket_compression = websocket_compression
        self.metrics = metrics
        self.throttle = LogThrottle()
        # The driver table is shared by every server of the process: copy, then swap the
        # WebSocket class (python-engineio has no option for it).
        self._async: dict[str, Any] = {**self._async, "websocket": GuardedWebSocket}

    def create_queue(self, *args: Any, **kwargs: Any) -> OutgoingQueue:
        """Every socket's queue (the library's hook; sockets are its only user)."""
        return OutgoingQueue()

    async def _trigger_event(self, event: str, *args: Any, **kwargs: Any) -> Any:
        # python-engineio builds ``AsyncSocket`` by name in ``_handle_connect`` and offers
        # no option for the class; "connect" is the first moment the new socket is ours.
        # Only the OPEN packet has been queued by then (and counted, by OutgoingQueue).
        if event == "connect":
            adopt(self.sockets[args[0]], args[1])
        return await super()._trigger_event(event, *args, **kwargs)

    async def handle_request(self, *args: Any, **kwargs: Any) -> Any:
        """Read a long-poll POST body whole, or refuse it: 413 past ``max_http_buffer_size``,
        400 when it is not an Engine.IO payload; either way the session is closed and freed.

        The library reads ``Content-Length`` bytes with one ``read()``, which returns what
        has arrived so far (the rest is lost), and answers an oversized body never. It also
        takes a request without ``transport`` for polling; Engine.IO 4 answers it 400. A body
        for no session is not read at all, and one that trickles in for longer than a ping
        timeout is refused, so a body cannot hold memory without a session or for long.
        """
        request: web.Request = args[0]
        if "transport" not in request.query:  # python-engineio would take it for polling
            return _refusal(400, ErrorCode.INVALID_PARAMETERS, "the transport query parameter is required")
        if request.method != "POST":
            return await super().handle_request(request)
        sid = request.query.get("sid", "")
        if sid not in self.sockets:
            return await super().handle_request(request)  # refused unread: no session to deliver to
        try:
            async with asyncio.timeout(self.ping_timeout):
                body = await _read_limited(request, self.max_http_buffer_size)
        except TimeoutError:
            await self._drop(sid, self.reason.TRANSPORT_ERROR, request)
            self.protocol_violation("slow_body")
            return _refusal(400, ErrorCode.INVALID_PARAMETERS, "the body did not arrive within the ping timeout")
        if body is None:
            await self._drop(sid, ErrorCode.PAYLOAD_TOO_LARGE.value, request)
            self.protocol_violation("oversized_body")
            return _refusal(413, ErrorCode.PAYLOAD_TOO_LARGE,
                            f"a long-polling body may hold at most {self.max_http_buffer_size} bytes")
        packets = _decode_polling_body(body)
        if packets is None:
            await self._drop(sid, self.reason.TRANSPORT_ERROR, request)
            self.protocol_violation("bad_polling_body")
            return _refusal(400, ErrorCode.INVALID_PARAMETERS, "the body is not a valid Engine.IO payload")
        request[_POLLING_PACKETS] = packets
        return await super().handle_request(request)

    async def _drop(self, sid: str, reason: str, request: web.Request) -> None:
        """Close and forget session ``sid`` (if any) for a refused POST; its pending GET
        is dropped too, unless it shares the POST's connection, which carries the refusal."""
        socket = self.sockets.get(sid)
        if isinstance(socket, GuardedSocket):
            # Closed while still known, so its disconnect handler finds the session (presence withdrawn).
            await socket.close(wait=False, abort=True, reason=reason)
            socket.release(abort_transport=socket.transport is not request.transport)
        self.sockets.pop(sid, None)

    def protocol_violation(self, cause: str) -> None:
        if self.metrics is not None:
            self.metrics.protocol_violations.labels(cause=cause).inc()
        self.report(cause, logging.INFO, "engine.io protocol violation", cause=cause)

    def report(self, key: str, level: int, message: str, **fields: Any) -> None:
        """Log ``message`` at most once a second per ``key``, saying how many were held back."""
        held = self.throttle.allow(key)
        if held is not None:
            logger.log(level, message, extra={**fields, "suppressed": held})


def adopt(socket: AsyncSocket, environ: dict[str, Any]) -> None:
    """Make a socket python-engineio just built a ``GuardedSocket`` (same state, more behaviour)."""
    socket.__class__ = GuardedSocket
    socket.transport = environ["aiohttp.request"].transport


async def _read_limited(request: web.Request, limit: int) -> bytes | None:
    """The whole body, or ``None`` as soon as it is known to exceed ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _refusal(status: int, code: ErrorCode, message: str) -> web.Response:
    response = web.json_response(error_payload(code, message), status=status)
    response.force_close()  # never read the rest of a refused body
    return response


class CodecPacket(socketio.packet.Packet):  # type: ignore[misc]
    """python-socketio's packet, encoded and decoded through orjson (``json_codec``).

    A subclass given as the server's ``serializer``: the library's ``json=`` option would set
    ``json`` on its own ``Packet`` class, for every server and client of the process.
    """

    json = SocketIOJson

    @classmethod
    def data_is_binary(cls, data: Any) -> bool:
        """python-socketio's check for ``bytes`` anywhere in ``data``, asked of every packet built,
        answered at once when orjson can write ``data`` (it refuses ``bytes``), else by the library's
        walk through every item (a third of the cost of building a navigation packet)."""
        if not is_json(data):
            return bool(super().data_is_binary(data))
        return False


class SocketServer(socketio.AsyncServer):  # type: ignore[misc]
    """python-socketio's ``AsyncServer`` on ``EngineServer`` with ``CodecPacket``; takes its options too."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{"serializer": CodecPacket, **kwargs})

    def _engineio_server_class(self) -> type[EngineServer]:
        return EngineServer
