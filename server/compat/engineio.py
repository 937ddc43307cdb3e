"""python-engineio's server and socket, taken over where they have no hook: the class of the sockets
the server builds, the environ each request gets, a socket's WebSocket upgrade, and the session state
a socket that serves its own WebSocket and pings writes.

``HookedEngineServer`` and ``HookedSocket`` override the library's private methods and hand each call
to a method or option of their own (``socket_class``, ``socket_built``, ``translate_request``,
``upgrade_to_websocket``), which ``server.eio``'s ``EngineServer`` and ``GuardedSocket`` fill; the
functions write the library's session state for them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from importlib.metadata import version
from typing import Any

import engineio
from engineio.async_socket import AsyncSocket

from kindmap_realtime.compat import Internal, assigned, check

__all__ = ["INTERNALS", "HookedEngineServer", "HookedSocket", "check_engineio", "mark_upgraded", "set_last_ping",
           "set_upgrading"]

_SOCKET = "engineio.async_socket:AsyncSocket"
_SERVER = "engineio.async_server:AsyncServer"
_PIN = "python-engineio 4.15.1"

INTERNALS = (
    Internal(_SOCKET, "_upgrade_websocket", "GuardedSocket serves its WebSocket without the library's "
             "task per socket, from where the upgrade starts (HookedSocket.upgrade_to_websocket)", _PIN,
             "an option for the socket class or its WebSocket loop"),
    Internal(_SOCKET, "__dict__", "a socket the library built becomes a GuardedSocket in place (its state "
             "lives in its __dict__: no __slots__)", _PIN, "an option for the socket class",
             use=r"__class__\s*=(?!=)"),
    Internal(_SOCKET, "last_ping", "one timer for every socket's pings (server.eio.deadlines) reads and resets it",
             _PIN, "a pluggable ping scheduler", use=assigned("last_ping")),
    Internal(_SOCKET, "upgraded", "a WebSocket opened directly, or upgraded by GuardedSocket, is marked so",
             _PIN, "the same", use=assigned("upgraded")),
    Internal(_SOCKET, "upgrading", "GuardedSocket's upgrade sets it during the probe, and clears it when the "
             "probe fails or completes", _PIN, "the same", use=assigned("upgrading")),
    Internal(_SOCKET, "connected", "a WebSocket opened without long-polling first connects the socket", _PIN,
             "the same", use=assigned("connected")),
    Internal(_SERVER, "_trigger_event", "'connect' is the first moment a new socket can become a GuardedSocket "
             "(the library builds AsyncSocket by name in _handle_connect)", _PIN, "an option for the socket class"),
    Internal(_SERVER, "_async", "each request's environ is a view of the aiohttp request (server.eio.environ): "
             "the driver table's translate_request is replaced, in a copy for the one server", _PIN,
             "an option for the environ builder"),
    # Public (documented for applications); relied on for what the library does with it.
    Internal(_SERVER, "create_queue", "each socket's packets go to a bounded OutgoingBuffer (the library's "
             "sockets take their queue from it)", _PIN, "the same", use=None),
    # Read by python-socketio's admin instrumentation too, and here as a table of sessions by id.
    Internal(_SERVER, "sockets", "a socket whose WebSocket ended is removed as the library's handler would", _PIN,
             "the same", use=None),
)


def check_engineio() -> None:
    check(INTERNALS, "python-engineio", version("python-engineio"))


class HookedSocket(AsyncSocket):  # type: ignore[misc]
    """python-engineio's socket, its WebSocket upgrade handed to ``upgrade_to_websocket``, and the
    session state the library keeps typed (written through this module's functions)."""

    last_ping: float | None  # when the ping awaiting its PONG went out; None while none awaits one
    connected: bool
    upgrading: bool  # a WebSocket is taking the session over: long-polls answer NOOP
    upgraded: bool

    def _upgrade_websocket(self, environ: Mapping[str, Any]) -> Awaitable[Any]:
        # The library's handle_get_request calls it by name ("_upgrade_" + the transport).
        return self.upgrade_to_websocket(environ)

    def upgrade_to_websocket(self, environ: Mapping[str, Any]) -> Awaitable[Any]:
        """The upgrade request of this session to a WebSocket: the library's, unless a subclass serves it."""
        upgrade: Awaitable[Any] = super()._upgrade_websocket(environ)
        return upgrade


class HookedEngineServer(engineio.AsyncServer):  # type: ignore[misc]
    """python-engineio's server with the options it lacks: the class its sockets become
    (``socket_class``, a subclass of ``HookedSocket``), a hook for each new socket (``socket_built``),
    and what builds a request's environ (``translate_request``, replacing the driver's)."""

    socket_class: type[HookedSocket] = HookedSocket

    def __init__(self, *, translate_request: Callable[..., Mapping[str, Any]] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if translate_request is not None:
            # The driver table is shared by every server of the process: this one gets a copy.
            self._async: dict[str, Any] = {**self._async, "translate_request": translate_request}

    def socket_built(self, socket: Any, environ: Mapping[str, Any]) -> None:
        """Called with each new socket, a ``socket_class`` now, before the application's connect handler."""

    async def _trigger_event(self, event: str, *args: Any, **kwargs: Any) -> Any:
        # python-engineio builds ``AsyncSocket`` by name in ``_handle_connect``, with no option for
        # the class; "connect" is the first moment the new socket can become another. Only the OPEN
        # packet has been queued by then.
        if event == "connect":
            socket = self.sockets[args[0]]
            socket.__class__ = self.socket_class
            self.socket_built(socket, args[1])
        return await super()._trigger_event(event, *args, **kwargs)


def set_last_ping(socket: HookedSocket, when: float | None) -> None:
    """The ping awaiting its PONG went out at ``when`` (``time.time()``); ``None``: none awaits one."""
    socket.last_ping = when


def set_upgrading(socket: HookedSocket, upgrading: bool) -> None:
    """Whether a WebSocket is taking the session over (the library then answers long-polls NOOP)."""
    socket.upgrading = upgrading


def mark_upgraded(socket: HookedSocket, *, connected: bool = False) -> None:
    """The session runs on a WebSocket now: upgraded from long-polling, or opened on it (``connected``)."""
    if connected:
        socket.connected = True
    socket.upgraded = True
