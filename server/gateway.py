"""The Socket.IO side: handshake, user rooms, ``ping``, and errors for the rest."""

from __future__ import annotations

import logging
from typing import Any

import socketio
from socketio import packet as sio_packet

from . import __version__
from .auth import Authenticator, AuthError
from .config import Settings
from .errors import ErrorCode, PublishError, error_payload, utc_now_iso
from .metrics import Metrics
from .presence import Presence
from .queue.keys import user_room
from .token_expiry import TokenExpiry

__all__ = ["HARD_CAP_FACTOR", "Gateway"]

logger = logging.getLogger(__name__)

# Engine.IO's own limit, as a multiple of MAX_PAYLOAD_BYTES: past it the transport is closed.
HARD_CAP_FACTOR = 4

_PACKET_TYPES = frozenset(range(len(sio_packet.packet_names)))
_LIFECYCLE_EVENTS = frozenset({"connect", "disconnect"})


class Gateway:
    """Registers the client-facing event handlers on an ``AsyncServer``.

    Every authenticated socket joins ``user:<id>``; anything a client sends that
    is not a known event with a well-formed payload gets an ``error`` event and
    changes nothing else.
    """

    def __init__(self, sio: socketio.AsyncServer, *, settings: Settings, authenticator: Authenticator,
                 presence: Presence, metrics: Metrics) -> None:
        self.sio = sio
        self.settings = settings
        self.authenticator = authenticator
        self.presence = presence
        self.metrics = metrics
        self.draining = False
        self.token_expiry = TokenExpiry(sio, authenticator)
        sio.on("connect", self.on_connect)
        sio.on("disconnect", self.on_disconnect)
        sio.on("ping", self.on_ping)
        sio.on("*", self.on_unknown_event)
        self._deliver_message = sio.eio.handlers["message"]
        sio.eio.on("message", self.on_engine_message)

    async def on_engine_message(self, eio_sid: str, data: str | bytes) -> None:
        """Refuse an oversized message with an error instead of handling it.

        Engine.IO closes the connection only past its hard cap (``HARD_CAP_FACTOR``
        times larger); below that the client hears what went wrong and stays connected.
        """
        limit = self.settings.max_payload_bytes
        size = len(data) if isinstance(data, bytes) else len(data.encode())
        sid = self.sio.manager.sid_from_eio_sid(eio_sid, "/")
        if size > limit:
            if isinstance(data, bytes) or sid is None:
                await self.sio.eio.disconnect(eio_sid)  # a binary part or a handshake: cannot skip it cleanly
            else:
                await self.send_error(sid, ErrorCode.PAYLOAD_TOO_LARGE, f"message of {size} bytes exceeds {limit}")
            return
        refusal = None if sid is None or isinstance(data, bytes) else self._refusal(data)
        if refusal is not None:
            await self.send_error(sid, *refusal)
            return
        await self._deliver_message(eio_sid, data)

    def _refusal(self, data: str) -> tuple[ErrorCode, str] | None:
        """Why a Socket.IO packet from a connected client must not be handled, or None.

        python-socketio assumes an event packet holds ``[name, *args]`` with a
        string name, and finds handlers by name, so an event called ``connect``
        or ``disconnect`` would reach the lifecycle handlers.
        """
        try:
            pkt = self.sio.packet_class(encoded_packet=data)
        except (ValueError, TypeError, IndexError, RecursionError):
            return ErrorCode.INVALID_PARAMETERS, "not a valid Socket.IO packet"
        if pkt.packet_type not in _PACKET_TYPES:
            return ErrorCode.INVALID_PARAMETERS, "unknown Socket.IO packet type"
        if pkt.packet_type not in (sio_packet.EVENT, sio_packet.BINARY_EVENT):
            return None
        if not (isinstance(pkt.data, list) and pkt.data and isinstance(pkt.data[0], str)):
            return ErrorCode.INVALID_PARAMETERS, "an event must be [name, ...args] with a string name"
        if pkt.data[0] in _LIFECYCLE_EVENTS:
            return ErrorCode.UNKNOWN_EVENT, f"unknown event {pkt.data[0]!r}"
        return None

    def _transport_gone(self, sid: str) -> bool:
        eio_socket = self.sio.eio.sockets.get(self.sio.manager.eio_sid_from_sid(sid, "/"))
        return eio_socket is None or eio_socket.closed or eio_socket.closing

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        try:
            if self.draining:
                raise AuthError("this replica is shutting down; reconnect", code=ErrorCode.SERVER_SHUTTING_DOWN)
            identity = self.authenticator.identify(auth, environ)
        except AuthError as exc:
            self.metrics.connects_rejected.labels(code=exc.code.value).inc()
            logger.info("connection refused", extra={"code": exc.code.value, "reason": exc.message})
            raise socketio.exceptions.ConnectionRefusedError(exc.message, exc.payload()) from None
        user_id = identity.user_id
        await self.sio.save_session(sid, {"user_id": user_id})
        room = user_room(user_id)
        if self.settings.duplicate_connection_policy == "replace":
            await self._replace_older_sockets(room, sid)
        await self.sio.enter_room(sid, room)
        await self.presence.add(user_id, sid)
        if self._transport_gone(sid):
            # The client left while we awaited Redis; python-socketio would still finish
            # the handshake and never call on_disconnect, leaving a socket that is "online".
            await self.presence.remove(user_id, sid)
            logger.info("client left during the handshake", extra={"user_id": user_id, "sid": sid})
            raise socketio.exceptions.ConnectionRefusedError("the transport closed during the handshake")
        self.token_expiry.watch(sid, identity)
        self.metrics.connections.inc()
        logger.info("client connected", extra={"user_id": user_id, "sid": sid})
        await self.sio.emit("connected", {
            "user_id": user_id,
            "sid": sid,
            "instance_id": self.settings.instance_id,
            "server_version": __version__,
        }, to=sid)

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        self.token_expiry.forget(sid)
        session = await self.sio.get_session(sid)
        user_id = session["user_id"]
        await self.presence.remove(user_id, sid)
        self.metrics.connections.dec()
        logger.info("client disconnected", extra={"user_id": user_id, "sid": sid, "reason": str(reason)})

    async def on_ping(self, sid: str, *args: Any) -> dict[str, Any] | None:
        """Answer with ``pong``; also as the ack value for clients that ask for one."""
        data = args[0] if args else None
        if len(args) > 1 or (data is not None and not isinstance(data, dict)):
            await self.send_error(sid, ErrorCode.INVALID_PARAMETERS, "ping takes no data or one object")
            return None
        pong: dict[str, Any] = {"timestamp": utc_now_iso()}
        if data and isinstance(data.get("id"), (str, int)) and not isinstance(data["id"], bool):
            pong["id"] = data["id"]
        await self.sio.emit("pong", pong, to=sid)
        return pong

    async def on_unknown_event(self, event: str, sid: str, *args: Any) -> None:
        await self.send_error(sid, ErrorCode.UNKNOWN_EVENT, f"unknown event {str(event)[:64]!r}")

    async def send_error(self, sid: str, code: ErrorCode, message: str) -> None:
        await self.sio.emit("error", error_payload(code, message), to=sid)

    async def _replace_older_sockets(self, room: str, sid: str) -> None:
        notice = error_payload(ErrorCode.DUPLICATE_CONNECTION, "replaced by a newer connection of the same user")
        try:
            await self.sio.manager.disconnect_room(room, skip_sid=sid, notice=notice)
        except PublishError:
            # Older sockets here are gone; those on other replicas stay until the queue is back.
            logger.warning("could not replace sockets on other replicas", extra={"room": room})
