"""python-engineio's socket and server, extended by subclassing where it has no hook
(``server.eio.socket.GuardedSocket``, ``server.eio.server.EngineServer``). The overrides and the
state they write live in those classes; what they rely on is listed and checked here."""

from __future__ import annotations

from importlib.metadata import version

from . import Internal, check

__all__ = ["INTERNALS", "check_engineio"]

_SOCKET = "engineio.async_socket:AsyncSocket"
_SERVER = "engineio.async_server:AsyncServer"
_PIN = "python-engineio 4.15.1"

INTERNALS = (
    Internal(_SOCKET, "_upgrade_websocket", "GuardedSocket serves its WebSocket without the library's "
             "task per socket, from where the upgrade starts", _PIN,
             "an option for the socket class or its WebSocket loop"),
    Internal(_SOCKET, "last_ping", "one timer for every socket's pings (server.eio.deadlines) reads and resets it",
             _PIN, "a pluggable ping scheduler"),
    Internal(_SOCKET, "upgraded", "a WebSocket opened directly, or upgraded by GuardedSocket, is marked so",
             _PIN, "the same"),
    Internal(_SOCKET, "upgrading", "GuardedSocket's upgrade clears it when the probe fails or completes", _PIN,
             "the same"),
    Internal(_SOCKET, "connected", "a WebSocket opened without long-polling first connects the socket", _PIN,
             "the same"),
    Internal(_SERVER, "_trigger_event", "'connect' is the first moment a new socket can become a GuardedSocket "
             "(the library builds AsyncSocket by name in _handle_connect)", _PIN, "an option for the socket class"),
    Internal(_SERVER, "create_queue", "each socket's packets go to a bounded OutgoingBuffer", _PIN, "the same"),
    Internal(_SERVER, "sockets", "a socket whose WebSocket ended is removed as the library's handler would", _PIN,
             "the same"),
)


def check_engineio() -> None:
    check(INTERNALS, "python-engineio", version("python-engineio"))
