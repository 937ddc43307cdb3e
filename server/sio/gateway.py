"""The Socket.IO side: handshake, user rooms, ``ping``, and errors for the rest."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, NoReturn

import socketio

from kindmap_realtime.backends.base import Presence
from kindmap_realtime.errors import (
    ErrorCode,
    PublishError,
    QueueUnavailableError,
    RealtimeError,
    SessionTakenError,
    TooManyConnectionsError,
    error_payload,
    utc_now_iso,
)
from kindmap_realtime.log_throttle import LogThrottle
from kindmap_realtime.messages.rooms import user_room

from .. import __version__
from ..config import Settings
from ..manager.recovery import Recovery
from ..metrics import Metrics
from .auth import Authenticator, AuthError
from .packet_guard import PacketGuard
from .token_expiry import TokenExpiry

__all__ = ["Gateway"]

logger = logging.getLogger(__name__)

_LIFECYCLE_EVENTS = frozenset({"connect", "disconnect"})


class Gateway:
    """Registers the client-facing event handlers on an ``AsyncServer``.

    Every authenticated socket joins ``user:<id>``; anything a client sends that
    is not a known event with a well-formed payload gets an ``error`` event and
    changes nothing else (the packet guard answers whatever no handler here takes,
    before python-socketio sees it). With ``recovery``, a socket has a recoverable
    session: claimed before python-socketio sees the CONNECT, replayed after its reply.
    """

    def __init__(self, sio: socketio.AsyncServer, *, settings: Settings, authenticator: Authenticator,
                 presence: Presence, metrics: Metrics, recovery: Recovery | None = None) -> None:
        self.sio = sio
        self.settings = settings
        self.authenticator = authenticator
        self.presence = presence
        self.metrics = metrics
        self.recovery = recovery
        self.draining = False
        self._refusals = LogThrottle()
        self.token_expiry = TokenExpiry(sio, authenticator)
        sio.on("connect", self.on_connect)
        sio.on("disconnect", self.on_disconnect)
        sio.on("ping", self.on_ping)
        self._welcomes: dict[str, dict[str, Any]] = {}
        self.guard = PacketGuard(sio, settings=settings, metrics=metrics,
                                 events=frozenset(sio.handlers["/"]) - _LIFECYCLE_EVENTS, on_joined=self._welcome,
                                 before_connect=self._claim_session if recovery else None,
                                 on_closed=recovery.abandon if recovery else None)

    def _transport_gone(self, sid: str) -> bool:
        eio_socket = self.sio.eio.sockets.get(self.sio.manager.eio_sid_from_sid(sid, "/"))
        return eio_socket is None or eio_socket.closed or eio_socket.closing

    async def _claim_session(self, eio_sid: str, auth: Any) -> None:
        """A CONNECT naming a session to recover (``pid``): claim it before python-socketio
        gives the connection a socket id, which must be the session's."""
        environ = self.sio.environ.get(eio_sid)
        if self.recovery is None or self.draining or environ is None:
            return
        def identify(credentials: Mapping[str, Any]) -> str:
            return self.authenticator.identify(credentials, environ).user_id

        await self.recovery.before_connect(eio_sid, auth, identify)

    async def on_connect(self, sid: str, environ: Mapping[str, Any], auth: Any = None) -> None:
        eio_sid = self.sio.manager.eio_sid_from_sid(sid, "/")
        try:
            await self._connect(sid, eio_sid, auth, environ)
        finally:
            if self.recovery is not None:  # the session it claimed may be claimed again, now that it is here
                self.recovery.abandon(eio_sid)

    async def _connect(self, sid: str, eio_sid: str, auth: Any, environ: Mapping[str, Any]) -> None:
        try:
            if self.draining:
                raise AuthError("this replica is shutting down; reconnect", code=ErrorCode.SERVER_SHUTTING_DOWN)
            identity = self.authenticator.identify(auth, environ)
        except AuthError as exc:
            self._refuse(exc)  # the metric counts each; the log a line a second
        user_id = identity.user_id
        room = user_room(user_id)
        replacing = self.settings.duplicate_connection_policy == "replace"
        if not replacing and self._sockets_here(room) >= self.settings.max_sockets_per_user:
            self._refuse(TooManyConnectionsError(f"this user already holds {self.settings.max_sockets_per_user} "
                                                 "connections (MAX_SOCKETS_PER_USER); close one first"))
        await self.sio.save_session(sid, {"user_id": user_id})
        tracked = None
        if self.recovery is not None:  # before the room: its live events are held until the replay
            tracked = await self.recovery.start(sid, eio_sid, user_id, auth)
        session = tracked.session if tracked else None
        if replacing:
            await self._replace_older_sockets(room, sid)
        await self.sio.enter_room(sid, room)
        try:
            await self.presence.add(user_id, sid, session)
        except (TooManyConnectionsError, SessionTakenError, QueueUnavailableError) as exc:
            if session is not None and isinstance(exc, TooManyConnectionsError):
                await self.presence.remove(user_id, sid, session, keep=False)  # a claimed session ends here
            self._refuse(exc)
        if self._transport_gone(sid):
            # The client left while we awaited Redis; python-socketio would still finish
            # the handshake and never call on_disconnect, leaving a socket that is "online".
            await self.presence.remove(user_id, sid, session, keep=True)
            logger.info("client left during the handshake", extra={"user_id": user_id, "sid": sid})
            raise socketio.exceptions.ConnectionRefusedError("the transport closed during the handshake")
        self.token_expiry.watch(sid, identity)
        self.metrics.connections.inc()
        logger.info("client connected", extra={"user_id": user_id, "sid": sid,
                                               "recovered": bool(tracked and tracked.recovered)})
        self._welcomes[sid] = {
            "user_id": user_id,
            "sid": sid,
            "instance_id": self.settings.instance_id,
            "server_version": __version__,
            "recovered": bool(tracked and tracked.recovered),
        }

    def _sockets_here(self, room: str) -> int:
        return sum(1 for _ in self.sio.manager.get_participants("/", room))

    def _refuse(self, error: RealtimeError) -> NoReturn:
        """Refuse the connection with ``error``'s payload (``connect_error``), counted and logged."""
        self.metrics.connects_rejected.labels(code=error.code.value).inc()
        held = self._refusals.allow(error.code.value)
        if held is not None:
            logger.info("connection refused", extra={"code": error.code.value, "reason": error.message,
                                                     "suppressed": held})
        raise socketio.exceptions.ConnectionRefusedError(error.message, error.payload()) from None

    async def _welcome(self, sid: str) -> None:
        """``connected``, sent once python-socketio has sent the connect reply: a client
        that emits from its ``connected`` handler is then already connected. A socket
        with a session first gets what it missed; ``replayed`` says how many."""
        welcome = self._welcomes.pop(sid, None)
        if welcome is None:
            return
        if self.recovery is not None and sid in self.recovery.sockets:
            welcome["replayed"] = await self.recovery.replay(sid)
        await self.sio.emit("connected", welcome, to=sid)

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        self.token_expiry.forget(sid)
        self._welcomes.pop(sid, None)
        session = await self.sio.get_session(sid)
        user_id = session["user_id"]
        # Until python-socketio takes it out of its room, nothing more is written to it: a stored
        # message would go without its offset, and come again with the replay on reconnecting.
        tracked = self.recovery.silence(sid) if self.recovery is not None else None
        await self.presence.remove(user_id, sid, tracked.session if tracked else None,
                                   keep=self._connection_lost(sid, reason))
        self.metrics.connections.dec()
        logger.info("client disconnected", extra={"user_id": user_id, "sid": sid, "reason": str(reason)})

    def _connection_lost(self, sid: str, reason: Any) -> bool:
        """Whether the socket lost its connection, so its session is kept for recovery: not when its
        client left on purpose (a DISCONNECT, an Engine.IO close) or the server closed it (a kick,
        an expired token, a replaced connection)."""
        if reason in (self.sio.reason.CLIENT_DISCONNECT, self.sio.reason.SERVER_DISCONNECT):
            return False
        eio_socket = self.sio.eio.sockets.get(self.sio.manager.eio_sid_from_sid(sid, "/"))
        return not getattr(eio_socket, "leaving", False)

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

    async def send_error(self, sid: str, code: ErrorCode, message: str) -> None:
        await self.sio.emit("error", error_payload(code, message), to=sid)

    async def _replace_older_sockets(self, room: str, sid: str) -> None:
        notice = error_payload(ErrorCode.DUPLICATE_CONNECTION, "replaced by a newer connection of the same user")
        try:
            await self.sio.manager.disconnect_room(room, skip_sid=sid, notice=notice)
        except PublishError:
            # Older sockets here are gone; those on other replicas stay until the queue is back.
            logger.warning("could not replace sockets on other replicas", extra={"room": room})
