"""The Engine.IO server, hardened: bounded outgoing buffers, whole long-poll bodies,
protocol violations closed as such, and sessions ended on request.

python-engineio keeps every packet for a socket in an unbounded queue, reads a
long-poll body only partly, leaves an oversized POST unanswered with its session
held, and lets a malformed WebSocket frame escape as an exception (the error
middleware then writes an HTTP 500 into the WebSocket stream). ``EngineServer``
fixes these through the library's ``create_queue``, the options
``server.compat.engineio.HookedEngineServer`` adds (the environ builder, the socket
class) and a socket subclass (``socket.GuardedSocket``), which also serves
WebSockets and pings at a fraction of the library's memory per idle connection.
``server.sio.server`` puts python-socketio on it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from engineio import packet as eio_packet
from engineio import payload as eio_payload

from kindmap_realtime.errors import ErrorCode, error_payload
from kindmap_realtime.log_throttle import LogThrottle

from ..compat.engineio import HookedEngineServer
from ..metrics import Metrics
from .deadlines import Deadlines
from .environ import RequestEnviron, engineio_query
from .outgoing import OutgoingBuffer
from .socket import POLLING_PACKETS, WEBSOCKET_TYPES, GuardedSocket, OpenWebSocket

__all__ = ["EngineServer"]

logger = logging.getLogger(__name__)

# Packets a client may send over long-polling: those of a WebSocket but PING (only an upgrade probe).
_POLLING_TYPES = WEBSOCKET_TYPES - {eio_packet.PING}


def _decode_polling_body(body: bytes) -> list[eio_packet.Packet] | None:
    """The packets of a long-poll POST body, or ``None`` when it is not a valid payload."""
    try:
        packets: list[eio_packet.Packet] = eio_payload.Payload(encoded_payload=body.decode()).packets
    except (ValueError, RecursionError):  # also UnicodeDecodeError and binascii.Error; JSON nested too deep
        return None
    if not packets or any(p.packet_type not in _POLLING_TYPES for p in packets):
        return None
    return packets


class EngineServer(HookedEngineServer):
    """python-engineio's server with ``GuardedSocket`` sockets and checked long-poll bodies.

    :param max_outgoing_bytes: a socket's outgoing buffer limit (``MAX_OUTGOING_BUFFER_BYTES``).
    :param websocket_compression: accept ``permessage-deflate`` (``WEBSOCKET_COMPRESSION``).
    :param metrics: where slow consumers and protocol violations are counted.
    """

    socket_class = GuardedSocket

    def __init__(self, *, max_outgoing_bytes: int, websocket_compression: bool = False,
                 metrics: Metrics | None = None, **kwargs: Any) -> None:
        super().__init__(translate_request=RequestEnviron, **kwargs)
        self.max_outgoing_bytes = max_outgoing_bytes
        self.websocket_compression = websocket_compression
        self.metrics = metrics
        self.throttle = LogThrottle()
        self.deadlines: Deadlines[GuardedSocket] = Deadlines(GuardedSocket.on_deadline)
        self._next_id: str | None = None
        self._ending: set[asyncio.Task[None]] = set()  # end_session's, each a ping timeout at most

    async def shutdown(self) -> None:
        await super().shutdown()
        self.deadlines.close()
        for task in self._ending:
            task.cancel()
        await asyncio.gather(*self._ending, return_exceptions=True)

    def end_session(self, sid: str) -> None:
        """Close session ``sid`` once what is queued for it has left, at most a ping timeout from
        now, then its connection. The caller does not wait: a kick goes through a room's sockets
        one by one, and a replacement runs in the new socket's handshake."""
        task = asyncio.get_running_loop().create_task(self._end_session(sid), name="engineio-end-session")
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)

    async def _end_session(self, sid: str) -> None:
        socket = self.sockets.get(sid)
        if isinstance(socket, GuardedSocket) and not socket.upgraded:
            # Long-polling: a closed session answers a poll 400, so its last packets must be
            # fetched first. A WebSocket session sends them before its close (``GuardedSocket.close``).
            await socket.sent(self.ping_timeout)
        await self.disconnect(sid)

    def issue_next_id(self, sid: str) -> None:
        """Make ``sid`` the next id this server generates. python-socketio asks Engine.IO for
        every new Socket.IO socket id (``BaseManager.pre_connect``), with no way to pass one in;
        a recovered session's connection must get its old id back (``LocalDelivery.pre_connect``)."""
        self._next_id = sid

    def generate_id(self) -> str:
        sid, self._next_id = self._next_id, None
        return sid or str(super().generate_id())

    def create_queue(self, *args: Any, **kwargs: Any) -> OutgoingBuffer:
        """Every socket's queue (the library's hook; sockets are its only user)."""
        return OutgoingBuffer()

    def socket_built(self, socket: GuardedSocket, environ: Mapping[str, Any]) -> None:
        """A new socket serves its first request on that request's connection (only its OPEN
        packet is queued yet, and counted by ``OutgoingBuffer``)."""
        socket.transport = environ["aiohttp.request"].transport

    async def handle_request(self, request: web.Request) -> Any:
        """Read a long-poll POST body whole, or refuse it: 413 past ``max_http_buffer_size``,
        400 when it is not an Engine.IO payload; either way the session is closed and freed.

        The library reads ``Content-Length`` bytes with one ``read()``, which returns what
        has arrived so far (the rest is lost), and answers an oversized body never. It also
        takes a request without ``transport`` for polling; Engine.IO 4 answers it 400. A body
        for no session is not read at all, and one that trickles in for longer than a ping
        timeout is refused, so a body cannot hold memory without a session or for long.

        The library's route takes the request alone: no ``*args``/``**kwargs`` to keep alive
        under every WebSocket.
        """
        has_transport, sid = _transport_and_sid(request)
        if not has_transport:  # python-engineio would take it for polling
            return _refusal(400, ErrorCode.INVALID_PARAMETERS, "the transport query parameter is required")
        if request.method != "POST":
            answer = await super().handle_request(request)
            if isinstance(answer, OpenWebSocket):  # served here, the library's handler done with it
                socket, answer = answer.socket, answer.ws
                await socket.serve_websocket(answer)
            return answer
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
        request[POLLING_PACKETS] = packets
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


def _transport_and_sid(request: web.Request) -> tuple[bool, str]:
    """Whether python-engineio finds a ``transport``, and the ``sid`` it finds ('' for none): the
    parsed query itself is not kept in ``handle_request``, which waits under every WebSocket."""
    query = engineio_query(request)
    return "transport" in query, query.get("sid", [""])[0]


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
