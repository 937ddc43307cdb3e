"""python-socketio's server on ``server.eio.server.EngineServer``: packets through orjson,
the ``pid`` in the CONNECT reply, and server-side disconnects that end the Engine.IO session.

python-socketio's ``disconnect`` leaves the Engine.IO session open; ``SocketServer.disconnect``
ends it. The Engine.IO server and the ``pid`` come through the hooks of
``server.compat.socketio.HookedSocketServer``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import socketio

from kindmap_realtime.messages.json_codec import is_json

from ..compat.socketio import HookedSocketServer
from ..eio.server import EngineServer
from .packet_json import SocketIOJson

__all__ = ["CodecPacket", "SocketServer"]


class CodecPacket(socketio.packet.Packet):  # type: ignore[misc]
    """python-socketio's packet, encoded and decoded through orjson (``packet_json``).

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


class SocketServer(HookedSocketServer):
    """python-socketio's ``AsyncServer`` on ``EngineServer`` with ``CodecPacket``; takes its options too.

    ``session_id_of`` (a socket id to its private session id, ``server.manager.recovery``) adds the
    ``pid`` to the CONNECT reply, as Node's server does: ``40{"sid":…,"pid":…}`` (the recovery
    tests check the reply).
    """

    session_id_of: Callable[[str], str | None] | None = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{"serializer": CodecPacket, **kwargs})

    async def disconnect(self, sid: str, namespace: str | None = None, ignore_queue: bool = False) -> None:
        """python-socketio's, which sends DISCONNECT and forgets the namespace, then the end of the
        socket's Engine.IO session and its connection. Every server-side disconnect comes here: an
        expired token, a kick, a replaced connection, rate-limit strikes.

        The library leaves the session open: socket.io-client closes it itself on "io server
        disconnect" (when no other namespace of it is active), but a client that goes on answering
        pings keeps it as long as it likes, and sessions count against ``MAX_CONNECTIONS``. ``/`` is
        the only namespace, so nothing else lives on the session; it ends once the DISCONNECT, and
        an ``error`` saying why queued before it, have had their chance to leave. Sockets that the
        library does not disconnect here keep theirs: one of another replica (it publishes the
        disconnect for that replica), one still connecting, one already leaving.
        """
        namespace = namespace or "/"
        eio_sid = self.manager.eio_sid_from_sid(sid, namespace) if self.manager.is_connected(sid, namespace) else None
        await super().disconnect(sid, namespace=namespace, ignore_queue=ignore_queue)
        if eio_sid is not None:
            self.eio.end_session(eio_sid)

    def prepare_packet(self, pkt: socketio.packet.Packet) -> None:
        """The CONNECT reply of a socket with a session gets the session's ``pid``."""
        if pkt.packet_type == socketio.packet.CONNECT and self.session_id_of is not None \
                and isinstance(pkt.data, dict) and isinstance(pkt.data.get("sid"), str):
            pid = self.session_id_of(pkt.data["sid"])
            if pid is not None:
                pkt.data = {**pkt.data, "pid": pid}

    def engine_server_class(self) -> type[EngineServer]:
        return EngineServer
