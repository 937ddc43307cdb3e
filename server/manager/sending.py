"""The replica's side of sending to a user (``kindmap_realtime.sending``): its client manager, whichever it is."""

from __future__ import annotations

from typing import Any

from socketio.async_manager import AsyncManager

from kindmap_realtime.backends.base import Presence, Routed
from kindmap_realtime.messages.rooms import user_room
from kindmap_realtime.sending import Sender

from .client_manager import QueueManager

__all__ = ["RoomSender", "sender_for"]


class RoomSender:
    """A ``Sender`` over a python-socketio manager that knows nothing of presence (the benchmark's
    stock manager): a user is online when ``presence`` says so, and a message for them is an emit
    to their room."""

    def __init__(self, manager: AsyncManager, presence: Presence) -> None:
        self._manager = manager
        self._presence = presence

    async def emit_to_user(self, user_id: str, event: str, data: Any, *, volatile: bool = False) -> Routed:
        if not await self._presence.is_online(user_id):
            return Routed(False)
        await self._manager.emit(event, data, namespace="/", room=user_room(user_id))
        return Routed(True)


def sender_for(manager: AsyncManager, presence: Presence) -> Sender:
    """``manager`` itself when it routes to users (presence, storing and publish at once)."""
    return manager if isinstance(manager, QueueManager) else RoomSender(manager, presence)
