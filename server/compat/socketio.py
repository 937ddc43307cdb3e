"""python-socketio's server and pub/sub manager, taken over where they have no hook: the Engine.IO
server class, every packet before it is sent (the CONNECT reply gets the session's ``pid``), the
library's handling of each queue message, and its table of awaited acks.

``HookedSocketServer`` and ``HookedPubSubManager`` override or call the library's private methods
and name each for what it does (``engine_server_class``, ``prepare_packet``, ``handle_<method>``);
``server.sio.server.SocketServer`` and ``server.manager.client_manager.QueueManager`` fill or call
those. The functions read and write the ack table for ``server.sio.packet_guard`` and the manager.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import socketio
from socketio.async_pubsub_manager import AsyncPubSubManager

from kindmap_realtime.compat import Internal, check

__all__ = ["INTERNALS", "HookedPubSubManager", "HookedSocketServer", "acks_awaited", "check_socketio",
           "register_ack"]

_SERVER = "socketio.async_server:AsyncServer"
_MANAGER = "socketio.base_manager:BaseManager"
_PUBSUB = "socketio.async_pubsub_manager:AsyncPubSubManager"
_PIN = "python-socketio 5.18.1"
_HANDLED = "QueueManager listens itself (the library's listener is never started) and dispatches to it"

INTERNALS = (
    Internal(_SERVER, "_send_packet", "the CONNECT reply gets the session's pid, as Node's server sends it "
             "(the library builds it in _handle_connect): every packet goes through prepare_packet", _PIN,
             "a hook for the CONNECT reply's data"),
    Internal(_SERVER, "_engineio_server_class", "python-socketio runs on our EngineServer", _PIN,
             "none needed: it is the library's way to choose it"),
    Internal(_MANAGER, "callbacks", "an ack is accepted only for an id the server asked for (a table per sid "
             "whose key 0 holds the id counter)", _PIN, "a public 'is this ack awaited'"),
    Internal(_MANAGER, "_generate_ack_id", "an emit with a callback published to other replicas keeps its "
             "callback in the library's table, as the library's own emit does", _PIN,
             "a public way to await an ack of an emit"),
    Internal(_PUBSUB, "_handle_emit", "a queued emit with a callback or attachments is delivered the library's "
             f"way; {_HANDLED}", _PIN, "a hook between decode and delivery"),
    # The library's hook for its subclasses (its docstring asks them to implement it).
    Internal(_PUBSUB, "_publish", "the library's own queue messages (a disconnect, enter_room, leave_room or "
             "close_room of a socket elsewhere, an ack's answer) go out through QueueManager's transport", _PIN,
             "none needed", use=None),
    *(Internal(_PUBSUB, f"_handle_{method}", f"the library's handling of a queued '{method}'; {_HANDLED}", _PIN,
               "a public dispatch of a queue message")
      for method in ("callback", "disconnect", "enter_room", "leave_room", "close_room")),
)


def check_socketio() -> None:
    check(INTERNALS, "python-socketio", version("python-socketio"))


class HookedSocketServer(socketio.AsyncServer):  # type: ignore[misc]
    """python-socketio's server with the hooks it keeps private: the class of its Engine.IO server
    (``engine_server_class``) and every Socket.IO packet it sends (``prepare_packet``)."""

    def engine_server_class(self) -> type[Any]:
        """The Engine.IO server this one runs on (asked once, as it is built): the library's by default."""
        engine: type[Any] = super()._engineio_server_class()
        return engine

    def prepare_packet(self, pkt: socketio.packet.Packet) -> None:
        """Called with every Socket.IO packet just before it is sent, the replies the library builds
        without a hook too (CONNECT's in ``_handle_connect``): a subclass may change it."""

    def _engineio_server_class(self) -> type[Any]:
        return self.engine_server_class()

    async def _send_packet(self, eio_sid: str, pkt: socketio.packet.Packet) -> None:
        self.prepare_packet(pkt)
        await super()._send_packet(eio_sid, pkt)


class HookedPubSubManager(AsyncPubSubManager):  # type: ignore[misc]
    """python-socketio's pub/sub manager, its handling of each kind of queue message (private:
    ``_handle_<method>``, called only by the library's listener) named ``handle_<method>``, for a
    manager that listens and dispatches itself."""

    async def handle_emit(self, message: dict[str, Any]) -> None:
        """Deliver a queued emit to this replica's sockets as the library does: an ack returns to the
        replica that asked for it, binary attachments are put together again."""
        await self._handle_emit(message)

    async def handle_callback(self, message: dict[str, Any]) -> None:
        """Run the ack callback a queued ``callback`` answers, when this replica asked for it."""
        await self._handle_callback(message)

    async def handle_disconnect(self, message: dict[str, Any]) -> None:
        await self._handle_disconnect(message)

    async def handle_enter_room(self, message: dict[str, Any]) -> None:
        await self._handle_enter_room(message)

    async def handle_leave_room(self, message: dict[str, Any]) -> None:
        await self._handle_leave_room(message)

    async def handle_close_room(self, message: dict[str, Any]) -> None:
        await self._handle_close_room(message)


def acks_awaited(manager: Any, sid: str) -> dict[Any, Any]:
    """The ack ids ``manager`` waits for from socket ``sid`` (key 0 holds the id counter)."""
    pending: dict[Any, Any] = manager.callbacks.get(sid, {})
    return pending


def register_ack(manager: Any, sid: str, callback: Callable[..., Any]) -> int:
    """A new ack id of socket (or room) ``sid``, whose ack runs ``callback`` (``acks_awaited`` has it until then)."""
    ack_id: int = manager._generate_ack_id(sid, callback)
    return ack_id
