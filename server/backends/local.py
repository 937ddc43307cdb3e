"""The embedded default: one replica alone, no queue (no ``REDIS_URL``).

Its manager is ``LocalManager`` (``server.queue.manager``); its presence is
its own rooms.
"""

from __future__ import annotations

from socketio.base_manager import BaseManager

from ..queue.rooms import user_room
from .base import Presence, Session

__all__ = ["LocalPresence"]


class LocalPresence(Presence):
    """Single replica: a user is online when their room here is not empty."""

    def __init__(self, manager: BaseManager, namespace: str = "/") -> None:
        self._manager = manager
        self._namespace = namespace

    async def add(self, user_id: str, sid: str, session: Session | None = None) -> None:
        """Room membership already records it."""

    async def remove(self, user_id: str, sid: str, session: Session | None = None, *, keep: bool = False) -> None:
        """Room membership already records it."""

    async def is_online(self, user_id: str) -> bool:
        return any(True for _ in self._manager.get_participants(self._namespace, user_room(user_id)))
