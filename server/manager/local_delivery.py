"""Delivering an emit to this replica's sockets without a task per recipient.

python-socketio's ``AsyncManager.emit`` encodes the packet once, then starts one
asyncio task per recipient and waits for them all. Handing a packet to a socket
only puts it in that socket's outgoing buffer (``server.eio.outgoing``), which never
waits, so the tasks buy nothing: measured, they are 21 of the 27 µs a targeted
emit costs (``python -m bench.micro emit``), about a fifth of a replica's CPU per
delivered message. Emits with a callback (each recipient gets its own ack id)
keep python-socketio's way.

A text packet is framed once for all recipients (``server.eio.fanout``) and written
straight into each idle WebSocket connection of ours (``GuardedSocket.write_frame``):
a broadcast used to wake 500 writer tasks, each encoding and framing the packet
again; that was two thirds of a replica's CPU in the broadcast benchmark.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from engineio import packet as eio_packet
from engineio.exceptions import EngineIOError
from socketio import packet as sio_packet
from socketio.async_manager import AsyncManager

from ..eio.fanout import Frame, text_frame
from ..eio.socket import GuardedSocket

if TYPE_CHECKING:
    from .recovery import Recovery, Tracked

__all__ = ["LocalDelivery"]

logger = logging.getLogger(__name__)


class LocalDelivery(AsyncManager):  # type: ignore[misc]
    """``emit`` as python-socketio's, each recipient's send awaited in turn.

    With connection state recovery (``recovery``), an event stored for recovery goes to
    the sockets that have a session with its offset as last argument, and is held
    for a socket whose replay has not finished (``server.manager.recovery``).
    """

    recovery: Recovery | None = None

    async def emit(self, event: str, data: Any, namespace: str, room: Any = None, skip_sid: Any = None,
                   callback: Any = None, to: Any = None, *, offset: str | None = None, **kwargs: Any) -> None:
        if callback is not None:
            await super().emit(event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, to=to,
                               **kwargs)
            return
        room = to or room
        if namespace not in self.rooms:
            return
        args = list(data) if isinstance(data, tuple) else [] if data is None else [data]
        skip = skip_sid if isinstance(skip_sid, list) else [skip_sid]
        outgoing = _Outgoing(self.server.packet_class, namespace, event, args, offset)
        tracked = self.recovery.sockets if self.recovery is not None else {}
        now = time.time()
        for sid, eio_sid in list(self.get_participants(namespace, room)):
            if sid in skip:
                continue
            session = tracked.get(sid)
            if session is None:
                await self._write(eio_sid, outgoing.plain(), now)
            elif session.held is not None:
                session.held.append((offset, event, args))
            elif offset in session.replayed:
                session.replayed.discard(offset)  # replayed already; this one was on its way meanwhile
            elif offset is not None and self.recovery is not None and self.recovery.fills_gap(sid, offset, event, args):
                continue  # stored messages before it never came: read from the history first
            else:
                await self._write(eio_sid, outgoing.to(session), now)

    async def pre_connect(self, eio_sid: str, namespace: str) -> str | None:
        """A connection that claimed a recovered session gets its socket id back."""
        sid = self.recovery.claimed_sid(eio_sid) if self.recovery is not None else None
        if sid is not None:
            self.server.eio.issue_next_id(sid)  # taken by the call below, with nothing awaited between
        result: str | None = await super().pre_connect(eio_sid, namespace)
        return result

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        if self.recovery is not None and namespace == "/":
            self.recovery.forget(sid)
        super().basic_disconnect(sid, namespace, **kwargs)

    async def send_event(self, sid: str, event: str, args: list[Any], offset: str | None) -> None:
        """One event to one socket of namespace ``/``, with ``offset``, held or not (replays)."""
        eio_sid = self.eio_sid_from_sid(sid, "/")
        session = self.recovery.sockets.get(sid) if self.recovery is not None else None
        if eio_sid is None or session is None:
            return
        await self._write(eio_sid, _Outgoing(self.server.packet_class, "/", event, args, offset).to(session),
                          time.time())

    async def _write(self, eio_sid: str, encoded: _Encoded, now: float) -> None:
        packets, frame = encoded
        if frame is not None:
            socket = self.server.eio.sockets.get(eio_sid)
            if isinstance(socket, GuardedSocket) and socket.write_frame(frame, now):
                return
        for pkt in packets:
            try:
                await self.server.eio.send_packet(eio_sid, pkt)
            except EngineIOError as exc:  # closed meanwhile: the others still get theirs
                logger.debug("not sent to a closing socket: %r", exc)
                break


_Encoded = tuple[list[eio_packet.Packet], Frame | None]  # the Engine.IO packets, and the frame of a text packet


class _Outgoing:
    """One event's encodings, each made once, on first use: without an offset, and with it.

    A socket that has a session takes the event with its ``offset`` when it was stored. Any
    other event whose last argument is a string gets the socket's last offset appended:
    socket.io-client takes a trailing string for an offset, and would resume from the wrong
    place (socket.io/socket.io#5539).
    """

    __slots__ = ("_args", "_event", "_namespace", "_offset", "_packet_class", "_plain", "_stored")

    def __init__(self, packet_class: Any, namespace: str, event: str, args: list[Any], offset: str | None) -> None:
        self._packet_class = packet_class
        self._namespace = namespace
        self._event = event
        self._args = args
        self._offset = offset
        self._plain: _Encoded | None = None
        self._stored: _Encoded | None = None

    def plain(self) -> _Encoded:
        if self._plain is None:
            self._plain = self._encode(self._args)
        return self._plain

    def to(self, session: Tracked) -> _Encoded:
        if self._offset is not None:
            session.last_offset = self._offset
            if self._stored is None:
                self._stored = self._encode([*self._args, self._offset])
            return self._stored
        if self._args and isinstance(self._args[-1], str):
            return self._encode([*self._args, session.last_offset])
        return self.plain()

    def _encode(self, args: list[Any]) -> _Encoded:
        encoded = self._packet_class(sio_packet.EVENT, namespace=self._namespace, data=[self._event, *args]).encode()
        packets = [eio_packet.Packet(eio_packet.MESSAGE, part)
                   for part in (encoded if isinstance(encoded, list) else [encoded])]
        return packets, text_frame(encoded) if isinstance(encoded, str) else None  # no attachments
