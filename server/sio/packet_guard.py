"""The packet guard: every Engine.IO message of a client is checked here first.

python-socketio trusts its clients: it looks handlers up by the event name a
client chose (an event named ``"*"`` reaches the catch-all handler with the
client's first argument where the socket id belongs), buffers as many binary
attachments as a packet header announces, and answers a handshake on an unknown
namespace with a bare string. So the guard sits between Engine.IO and
python-socketio (through the Engine.IO ``message`` handler, a public hook) and
lets through only what a handler of ours takes: a CONNECT to ``/``, a DISCONNECT,
and events by a name we handle. Everything else is answered -- to the sender's
socket only -- in the error schema, and never reaches python-socketio.

Per Engine.IO session it also keeps a token bucket (``RATE_LIMIT_*``) and closes
sessions that have not joined ``/`` within ``CONNECT_TIMEOUT_SECONDS``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import socketio
from socketio import packet as sio_packet

from kindmap_realtime.errors import ErrorCode, error_payload
from kindmap_realtime.log_throttle import LogThrottle

from ..compat.socketio import acks_awaited
from ..config import Settings
from ..eio.rate_limit import FloodGuard, Verdict
from ..metrics import Metrics

__all__ = ["HARD_CAP_FACTOR", "MAX_ATTACHMENTS", "PacketGuard", "drop_transport"]

logger = logging.getLogger(__name__)

# Engine.IO's own limit, as a multiple of MAX_PAYLOAD_BYTES: past it the transport is closed.
HARD_CAP_FACTOR = 4
# Most binary attachments one packet may announce. No event of ours takes binary data;
# the attachments of a refused packet are read and dropped, never buffered.
MAX_ATTACHMENTS = 10
# Seconds a session over its rate limit is not read after each dropped packet.
OVER_LIMIT_PAUSE = 0.01
# Seconds a closed session's last packets (its DISCONNECT) have to leave before its TCP connection is cut.
GOODBYE_GRACE = 0.5

_PACKET_TYPES = frozenset(range(len(sio_packet.packet_names)))
_BINARY_TYPES = frozenset({sio_packet.BINARY_EVENT, sio_packet.BINARY_ACK})
_EVENT_TYPES = frozenset({sio_packet.EVENT, sio_packet.BINARY_EVENT})
# The packet types a client may send; anything else before the handshake closes the session.
_CLIENT_TYPES = _PACKET_TYPES - {sio_packet.CONNECT_ERROR}
_NAMESPACE = "/"

Refusal = tuple[ErrorCode, str]


@dataclass(slots=True)
class _Attachments:
    """Binary frames announced by a refused packet header: counted, then dropped."""

    expected: int
    received: int = 0
    size: int = 0
    answered: bool = False


@dataclass(slots=True)  # one per Engine.IO session: no __dict__
class _Session:
    flood: FloodGuard
    timeout: asyncio.TimerHandle | None = None
    attachments: _Attachments | None = None


class PacketGuard:
    """Wraps the Engine.IO handlers of an ``AsyncServer`` that python-socketio installed.

    :param events: the client event names a handler of ours takes; any other name is
        answered with ``UNKNOWN_EVENT`` here.
    :param on_joined: awaited with the socket id once python-socketio has answered a
        successful CONNECT, so what we send a new socket follows the connect reply.
    :param before_connect: awaited with the Engine.IO session id and the CONNECT packet's
        data before python-socketio handles an accepted CONNECT (session recovery).
    :param on_closed: called with the Engine.IO session id when the session ends.
    """

    def __init__(self, sio: socketio.AsyncServer, *, settings: Settings, metrics: Metrics,
                 events: frozenset[str], on_joined: Callable[[str], Awaitable[None]],
                 before_connect: Callable[[str, Any], Awaitable[None]] | None = None,
                 on_closed: Callable[[str], None] | None = None) -> None:
        self.sio = sio
        self.settings = settings
        self.metrics = metrics
        self.events = events
        self.on_joined = on_joined
        self.before_connect = before_connect
        self.on_closed = on_closed
        self._sessions: dict[str, _Session] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._log = LogThrottle(interval=10.0)
        self._connect = sio.eio.handlers["connect"]
        self._message = sio.eio.handlers["message"]
        self._disconnect = sio.eio.handlers["disconnect"]
        sio.eio.on("connect", self.on_engine_connect)
        sio.eio.on("message", self.on_engine_message)
        sio.eio.on("disconnect", self.on_engine_disconnect)

    async def on_engine_connect(self, eio_sid: str, environ: Mapping[str, Any]) -> Any:
        settings = self.settings
        session = _Session(FloodGuard(settings.rate_limit_events_per_second, settings.rate_limit_burst,
                                      settings.rate_limit_strikes))
        self._sessions[eio_sid] = session
        self._start_connect_timer(eio_sid, session)
        return await self._connect(eio_sid, environ)

    async def on_engine_disconnect(self, eio_sid: str, reason: Any) -> None:
        session = self._sessions.pop(eio_sid, None)
        if session is not None and session.timeout is not None:
            session.timeout.cancel()
        if self.on_closed is not None:
            self.on_closed(eio_sid)
        await self._disconnect(eio_sid, reason)

    async def on_engine_message(self, eio_sid: str, data: str | bytes) -> None:
        session = self._sessions.get(eio_sid)
        if session is None:  # already closed by us
            return
        sid = self.sio.manager.sid_from_eio_sid(eio_sid, _NAMESPACE)
        verdict = session.flood.check()
        if verdict is not Verdict.PASS:
            await self._rate_limited(eio_sid, sid, verdict)
            return
        if isinstance(data, bytes):
            await self._on_attachment(eio_sid, sid, session, len(data))
            return
        if session.attachments is not None:
            # The client broke the binary framing; start over from this packet.
            pending, session.attachments = session.attachments, None
            await self._refuse(eio_sid, sid, ErrorCode.INVALID_PARAMETERS,
                               f"{pending.expected - pending.received} announced binary attachments did not come")
        if not isinstance(data, str):  # python-engineio decodes a long-poll message that is JSON ("4true")
            await self._not_a_packet(eio_sid, sid)
            return
        size = len(data) if data.isascii() else len(data.encode())  # no copy for ASCII text
        limit = self.settings.max_payload_bytes
        if size > limit:
            await self._refuse(eio_sid, sid, ErrorCode.PAYLOAD_TOO_LARGE, f"message of {size} bytes exceeds {limit}")
            return
        try:
            pkt = self.sio.packet_class(encoded_packet=data)
        except (ValueError, TypeError, IndexError, RecursionError):
            await self._not_a_packet(eio_sid, sid)
            return
        namespace = pkt.namespace or _NAMESPACE
        refusal = self._refusal(pkt, namespace, sid, session)
        if refusal is not None:
            await self._refuse(eio_sid, sid, *refusal, namespace=namespace)
            if pkt.packet_type in _BINARY_TYPES and pkt.attachment_count > MAX_ATTACHMENTS:
                # Its frames cannot be told from later ones: answered, then closed.
                await self._close(eio_sid, sid, "too_many_attachments")
            elif sid is None and pkt.packet_type not in _CLIENT_TYPES:
                await self._close(eio_sid, None, "invalid_handshake")
            return
        if pkt.packet_type == sio_packet.CONNECT and self.before_connect is not None:
            await self.before_connect(eio_sid, pkt.data)
        await self._message(eio_sid, data)
        if pkt.packet_type == sio_packet.CONNECT:
            await self._after_connect(eio_sid, session)
        elif pkt.packet_type == sio_packet.DISCONNECT:
            self._start_connect_timer(eio_sid, session)  # a session without a namespace must join again in time

    async def _not_a_packet(self, eio_sid: str, sid: str | None) -> None:
        await self._refuse(eio_sid, sid, ErrorCode.INVALID_PARAMETERS, "not a valid Socket.IO packet")
        if sid is None:  # before the handshake, as Node's server: answered, then closed
            await self._close(eio_sid, None, "invalid_handshake")

    def _refusal(self, pkt: Any, namespace: str, sid: str | None, session: _Session) -> Refusal | None:
        """Why a decoded packet must not reach python-socketio, or None to let it through."""
        kind = pkt.packet_type
        if kind not in _CLIENT_TYPES:
            return ErrorCode.INVALID_PARAMETERS, "not a Socket.IO packet type a client may send"
        if kind in _BINARY_TYPES:
            return self._binary_refusal(pkt, session)
        if kind == sio_packet.CONNECT:
            if namespace != _NAMESPACE:
                return ErrorCode.NOT_FOUND, f"no namespace {namespace[:64]!r}; connect to '/'"
            if sid is not None:
                return ErrorCode.INVALID_PARAMETERS, "already connected to '/'"
            return None
        if sid is None:
            return ErrorCode.INVALID_PARAMETERS, "connect to namespace '/' first"
        if namespace != _NAMESPACE:
            return ErrorCode.INVALID_PARAMETERS, f"not connected to namespace {namespace[:64]!r}"
        if kind == sio_packet.ACK and not self._ack_awaited(sid, pkt.id):
            return ErrorCode.INVALID_PARAMETERS, "the server awaits no acknowledgement with this id"
        if kind in _EVENT_TYPES:
            return self._event_refusal(pkt.data)
        if kind == sio_packet.DISCONNECT and (pkt.data is not None or pkt.id is not None):
            return ErrorCode.INVALID_PARAMETERS, "a DISCONNECT packet carries no data"
        return None

    def _ack_awaited(self, sid: str, ack_id: Any) -> bool:
        """Whether the server asked this socket for an ack with this id (``emit(callback=...)``).

        ``callbacks`` is python-socketio's table of pending acks, per sid, whose key 0 holds
        the id counter; tests/unit/manager/test_client_manager.py's ack test breaks if it changes.
        """
        pending = acks_awaited(self.sio.manager, sid)
        return type(ack_id) is int and ack_id > 0 and ack_id in pending

    def _event_refusal(self, data: Any) -> Refusal | None:
        if not (isinstance(data, list) and data and isinstance(data[0], str)):
            return ErrorCode.INVALID_PARAMETERS, "an event must be [name, ...args] with a string name"
        if data[0] not in self.events:
            return ErrorCode.UNKNOWN_EVENT, f"unknown event {data[0][:64]!r}"
        return None

    def _binary_refusal(self, pkt: Any, session: _Session) -> Refusal:
        """Binary packets are always refused: no handler of ours takes binary data.

        Their announced attachments are then read and dropped (``_on_attachment``),
        so the frames that follow are not taken for anything else.
        """
        count = pkt.attachment_count
        if count > MAX_ATTACHMENTS:
            return ErrorCode.INVALID_PARAMETERS, f"{count} binary attachments announced; at most {MAX_ATTACHMENTS}"
        if count:
            session.attachments = _Attachments(expected=count)
        if not _placeholders_valid(pkt.data, count):
            return ErrorCode.INVALID_PARAMETERS, "binary placeholders must be {_placeholder: true, num: 0..count-1}"
        if pkt.packet_type == sio_packet.BINARY_ACK:
            return ErrorCode.INVALID_PARAMETERS, "acknowledgements take no binary data"
        refusal = self._event_refusal(pkt.data)
        return refusal or (ErrorCode.INVALID_PARAMETERS, f"{pkt.data[0]} takes no binary data")

    async def _on_attachment(self, eio_sid: str, sid: str | None, session: _Session, size: int) -> None:
        pending = session.attachments
        if pending is None:
            await self._refuse(eio_sid, sid, ErrorCode.INVALID_PARAMETERS, "binary frame that no packet announced")
            return
        pending.received += 1
        pending.size += size
        limit = self.settings.max_payload_bytes
        if pending.received >= pending.expected:
            session.attachments = None
        if pending.size > limit * HARD_CAP_FACTOR:
            await self._close(eio_sid, sid, "payload_hard_cap")
        elif pending.size > limit and not pending.answered:
            pending.answered = True
            await self._refuse(eio_sid, sid, ErrorCode.PAYLOAD_TOO_LARGE,
                               f"binary attachments of over {limit} bytes in one packet")

    async def _rate_limited(self, eio_sid: str, sid: str | None, verdict: Verdict) -> None:
        self.metrics.packets_refused.labels(code=ErrorCode.RATE_LIMITED.value).inc()
        if verdict is Verdict.DROP:
            # python-engineio reads a session's next message only when this handler returns:
            # pausing here makes a flooding client wait on TCP instead of making us read and
            # drop its packets as fast as it can write them.
            await asyncio.sleep(OVER_LIMIT_PAUSE)
            return
        settings = self.settings
        await self._answer(eio_sid, sid, ErrorCode.RATE_LIMITED,
                           f"over {settings.rate_limit_events_per_second:g} packets per second "
                           f"(bursts of {settings.rate_limit_burst}); packets are dropped, slow down")
        if verdict is Verdict.CLOSE:
            await self._close(eio_sid, sid, "rate_limited")

    async def _refuse(self, eio_sid: str, sid: str | None, code: ErrorCode, message: str,
                      namespace: str = _NAMESPACE) -> None:
        self.metrics.packets_refused.labels(code=code.value).inc()
        logger.debug("client packet refused", extra={"eio_sid": eio_sid, "code": code.value, "reason": message})
        await self._answer(eio_sid, sid, code, message, namespace)

    async def _answer(self, eio_sid: str, sid: str | None, code: ErrorCode, message: str,
                      namespace: str = _NAMESPACE) -> None:
        """An ``error`` event to the sender's socket; before it has one (or for another
        namespace), a CONNECT_ERROR packet, which clients show as ``connect_error``."""
        payload = error_payload(code, message)
        if sid is not None and namespace == _NAMESPACE:
            await self.sio.emit("error", payload, to=sid)
        else:
            # The shape of python-socketio's own refusals: clients expose ``data`` as connect_error's.
            refusal = self.sio.packet_class(sio_packet.CONNECT_ERROR, data={"message": message, "data": payload},
                                            namespace=namespace)
            await self.sio.eio.send(eio_sid, refusal.encode())

    async def _close(self, eio_sid: str, sid: str | None, reason: str) -> None:
        """Close the session; a DISCONNECT first, so Socket.IO clients do not reconnect at once.

        ``disconnect`` alone would end the session once its last packets have left, a ping
        timeout at most for a client that does not read them (``SocketServer.disconnect``);
        an abuser gets ``drop_transport``'s moment for its goodbye instead.
        """
        session = self._sessions.pop(eio_sid, None)
        if session is not None and session.timeout is not None:
            session.timeout.cancel()
        self.metrics.sessions_closed.labels(reason=reason).inc()
        held = self._log.allow(reason)
        if held is not None:
            logger.info("client session closed", extra={"reason": reason, "eio_sid": eio_sid, "held_back": held})
        if sid is not None:
            await self.sio.disconnect(sid)
        eio_socket = self.sio.eio.sockets.get(eio_sid)
        if eio_socket is not None:
            await drop_transport(eio_socket, self.sio.eio.reason.SERVER_DISCONNECT)

    async def _after_connect(self, eio_sid: str, session: _Session) -> None:
        sid = self.sio.manager.sid_from_eio_sid(eio_sid, _NAMESPACE)
        if sid is None:
            # Refused (its CONNECT_ERROR is queued): socket.io-client closes such a session itself,
            # one bent on holding connection slots does not; it ends once the refusal has left.
            self.sio.eio.end_session(eio_sid)
            return
        if session.timeout is not None:
            session.timeout.cancel()
            session.timeout = None
        await self.on_joined(sid)

    def _start_connect_timer(self, eio_sid: str, session: _Session) -> None:
        """python-engineio keeps a session that answers pings forever; Node's ``connectTimeout``
        closes one that has not joined a namespace in time, and so do we."""
        if session.timeout is not None:
            session.timeout.cancel()
        session.timeout = asyncio.get_running_loop().call_later(
            self.settings.connect_timeout, self._connect_timed_out, eio_sid)

    def _connect_timed_out(self, eio_sid: str) -> None:
        if eio_sid not in self._sessions or self.sio.manager.sid_from_eio_sid(eio_sid, _NAMESPACE) is not None:
            return
        task = asyncio.get_running_loop().create_task(self._close(eio_sid, None, "connect_timeout"))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def drop_transport(eio_socket: Any, reason: Any) -> None:
    """Close an Engine.IO session and its connection now, sending what is already queued.

    Engine.IO's own ``disconnect`` (``GuardedSocket.close``) gives the client up to a ping
    timeout to take its last packets, reading (and handing us) meanwhile every frame a
    flooding client had already sent. A ``None`` in the session's queue makes its writer
    close the socket (``GuardedSocket.serve_websocket``'s; for long-polling it ends the poll).
    """
    await eio_socket.close(wait=False, abort=True, reason=reason)
    eio_socket.queue.put_nowait(None)
    # The writer then closes the WebSocket politely, and aiohttp waits for the client's
    # close frame while it goes on reading (and we on parsing) whatever a flooding client
    # still sends. The goodbye gets a moment to leave; then the connection is cut.
    transport = getattr(eio_socket, "transport", None)
    if transport is not None:
        asyncio.get_running_loop().call_later(GOODBYE_GRACE, transport.abort)


def _placeholders_valid(data: Any, count: int) -> bool:
    """Every ``{"_placeholder": ...}`` object is ``{"_placeholder": true, "num": n}`` with
    ``0 <= n < count``; python-socketio would raise, or index out of range, on anything else."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            if "_placeholder" in item:
                num = item.get("num")
                if item != {"_placeholder": True, "num": num} or type(num) is not int or not 0 <= num < count:
                    return False
            else:
                stack.extend(item.values())
    return True
