"""python-socketio's server and managers, extended where it has no hook: the CONNECT reply's
``pid`` (``server.sio.server.SocketServer``), the Engine.IO server class, the acks it awaits
(``server.sio.packet_guard``) and how a queued emit is handled (``server.manager.client_manager``)."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from . import Internal, check

__all__ = ["INTERNALS", "acks_awaited", "check_socketio"]

_PIN = "python-socketio 5.18.1"

INTERNALS = (
    Internal("socketio.async_server:AsyncServer", "_send_packet", "the CONNECT reply gets the session's pid, "
             "as Node's server sends it (the library builds it in _handle_connect)", _PIN,
             "a hook for the CONNECT reply's data"),
    Internal("socketio.async_server:AsyncServer", "_engineio_server_class", "python-socketio runs on our "
             "EngineServer", _PIN, "none needed: it is the library's way to choose it"),
    Internal("socketio.base_manager:BaseManager", "callbacks", "an ack is accepted only for an id the server "
             "asked for (a table per sid whose key 0 holds the id counter)", _PIN, "a public 'is this ack awaited'"),
    Internal("socketio.async_pubsub_manager:AsyncPubSubManager", "_handle_emit", "a queued emit is checked "
             "(signature, room) before the library delivers it", _PIN, "a hook between decode and delivery"),
)


def check_socketio() -> None:
    check(INTERNALS, "python-socketio", version("python-socketio"))


def acks_awaited(manager: Any, sid: str) -> dict[Any, Any]:
    """The ack ids ``manager`` waits for from socket ``sid`` (key 0 holds the id counter)."""
    pending: dict[Any, Any] = manager.callbacks.get(sid, {})
    return pending
