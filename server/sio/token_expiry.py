"""Closing a socket when its token expires, unless the client sent a fresh one.

``exp`` is checked at the handshake; without more, a socket would outlive its
token for ever (a revoked rider account, a stolen token). Each socket with an
expiring token has a deadline under one shared timer (``Deadlines``) -- no task
or timer per socket -- that sends ``error`` ``TOKEN_EXPIRED`` and disconnects. A client that emits
``refresh_token {token}`` first, with a valid token for the same ``sub``, moves
its deadline to the new token's expiry and gets ``token_refreshed``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

import socketio

from kindmap_realtime.errors import ErrorCode, error_payload

from ..eio.deadlines import Deadlines
from .auth import Authenticator, AuthError, Identity

__all__ = ["TokenExpiry"]

logger = logging.getLogger(__name__)

# Forgotten deadlines the heap may hold beyond twice the live ones before it is pruned.
_PRUNE_PAST = 1024


class TokenExpiry:
    """Per-socket expiry deadlines, and the ``refresh_token`` event that moves them.

    The deadlines share one event-loop timer (``Deadlines``): a ``call_later`` per socket
    cost about half a kilobyte of every connection whose token expires.
    """

    def __init__(self, sio: socketio.AsyncServer, authenticator: Authenticator) -> None:
        self._sio = sio
        self._authenticator = authenticator
        self._expiries: dict[str, float] = {}  # sid -> its live deadline's ``when``
        self._deadlines: Deadlines[str] = Deadlines(self._due)
        self._closing: set[asyncio.Task[None]] = set()
        sio.on("refresh_token", self.on_refresh_token)

    def __len__(self) -> int:
        return len(self._expiries)

    def watch(self, sid: str, identity: Identity) -> None:
        """Close ``sid`` when ``identity`` expires (replacing any earlier deadline)."""
        self.forget(sid)
        if identity.expires_at is None:
            return
        delay = max(0.0, identity.expires_at - time.time())
        self._expiries[sid] = self._deadlines.add(delay, sid)

    def forget(self, sid: str) -> None:
        """The socket is gone (or has a new deadline): its old deadline no longer counts."""
        if self._expiries.pop(sid, None) is not None and len(self._deadlines) > _PRUNE_PAST + 2 * len(self._expiries):
            # Forgotten deadlines wait in the heap until their time, hours for a long-lived token.
            self._deadlines.prune(self._is_live)

    async def on_refresh_token(self, sid: str, *args: Any) -> dict[str, Any] | None:
        """``refresh_token {token}``: the answer is also the ack value.

        The handler runs as a task of its own, so the socket may close before or
        while it runs (a long-poll body can carry the refresh and the close):
        then ``on_disconnect`` has already forgotten the socket, and a timer set
        here would outlive it.
        """
        data = args[0] if len(args) == 1 else None
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token or set(data or {}) - {"token"}:
            return await self._refuse(sid, ErrorCode.INVALID_PARAMETERS, 'refresh_token takes {"token": "<JWT>"}')
        try:
            identity = self._authenticator.verify_identity(token)
        except AuthError as exc:
            return await self._refuse(sid, ErrorCode.INVALID_TOKEN, f"token not refreshed: {exc.message}")
        if not self._connected(sid):
            return None
        session = await self._sio.get_session(sid)
        if identity.user_id != session["user_id"]:
            return await self._refuse(sid, ErrorCode.INVALID_TOKEN, "token not refreshed: it is for another user")
        if not self._connected(sid):
            return None
        self.watch(sid, identity)
        expires_at = identity.expires_at
        answer = {"expires_at": None if expires_at is None else datetime.fromtimestamp(expires_at, UTC).isoformat()}
        await self._sio.emit("token_refreshed", answer, to=sid)
        return answer

    def _connected(self, sid: str) -> bool:
        """False once the socket is closing (its disconnect handler may be running) or gone."""
        return bool(self._sio.manager.is_connected(sid, "/"))

    async def _refuse(self, sid: str, code: ErrorCode, message: str) -> dict[str, Any]:
        payload = error_payload(code, message)
        await self._sio.emit("error", payload, to=sid)
        return payload

    def _is_live(self, sid: str, when: float) -> bool:
        return self._expiries.get(sid) == when

    def _due(self, sid: str, when: float) -> None:
        if not self._is_live(sid, when):
            return  # forgotten or moved since
        del self._expiries[sid]
        task = asyncio.create_task(self._close(sid), name="token-expired")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close(self, sid: str) -> None:
        try:
            await self._sio.emit("error", error_payload(ErrorCode.TOKEN_EXPIRED, "the token has expired; "
                                                        "reconnect with a fresh one"), to=sid)
            await self._sio.disconnect(sid)
        except Exception:
            logger.exception("could not close a socket whose token expired", extra={"sid": sid})
            return
        logger.info("token expired; socket closed", extra={"sid": sid})
