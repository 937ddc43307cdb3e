"""Delivering an emit to this replica's sockets without a task per recipient.

python-socketio's ``AsyncManager.emit`` encodes the packet once, then starts one
asyncio task per recipient and waits for them all. Handing a packet to a socket
only puts it on that socket's outgoing queue (``server.outgoing``), which never
waits, so the tasks buy nothing: measured, they are 21 of the 27 µs a targeted
emit costs (``python -m bench.micro emit``), about a fifth of a replica's CPU per
delivered message. Emits with a callback (each recipient gets its own ack id)
keep python-socketio's way.

A text packet is framed once for all recipients (``server.fanout``) and written
straight into each idle WebSocket connection of ours (``GuardedSocket.write_frame``):
a broadcast used to wake 500 writer tasks, each encoding and framing the packet
again; that was two thirds of a replica's CPU in the broadcast benchmark.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from engineio import packet as eio_packet
from engineio.exceptions import EngineIOError
from socketio import packet as sio_packet
from socketio.async_manager import AsyncManager

from ..engine_socket import GuardedSocket
from ..fanout import Frame, text_frame

__all__ = ["LocalDelivery"]

logger = logging.getLogger(__name__)


class LocalDelivery(AsyncManager):  # type: ignore[misc]
    """``emit`` as python-socketio's, each recipient's send awaited in turn."""

    async def emit(self, event: str, data: Any, namespace: str, room: Any = None, skip_sid: Any = None,
                   callback: Any = None, to: Any = None, **kwargs: Any) -> None:
        if callback is not None:
            await super().emit(event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, to=to,
                               **kwargs)
            return
        room = to or room
        if namespace not in self.rooms:
            return
        args = list(data) if isinstance(data, tuple) else [] if data is None else [data]
        skip = skip_sid if isinstance(skip_sid, list) else [skip_sid]
        encoded = self.server.packet_class(sio_packet.EVENT, namespace=namespace, data=[event, *args]).encode()
        packets = [eio_packet.Packet(eio_packet.MESSAGE, part)
                   for part in (encoded if isinstance(encoded, list) else [encoded])]
        frame: Frame | None = text_frame(encoded) if isinstance(encoded, str) else None  # no attachments
        sockets = self.server.eio.sockets
        now = time.time()
        for sid, eio_sid in list(self.get_participants(namespace, room)):
            if sid in skip:
                continue
            if frame is not None:
                socket = sockets.get(eio_sid)
                if isinstance(socket, GuardedSocket) and socket.write_frame(frame, now):
                    continue
            for pkt in packets:
                try:
                    await self.server._send_eio_packet(eio_sid, pkt)
                except EngineIOError as exc:  # closed meanwhile: the others still get theirs
                    logger.debug("not sent to a closing socket: %r", exc)
                    break
