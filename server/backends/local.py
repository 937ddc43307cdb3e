"""The embedded default: one replica alone, no queue (no ``REDIS_URL``).

Its manager is ``LocalManager`` (``server.manager.client_manager``); its presence is
its own rooms.
"""

from __future__ import annotations

from socketio.base_manager import BaseManager

from ..errors import TooManyConnectionsError
from ..messages.rooms import user_room
from .base import Presence, Session

__all__ = ["LocalPresence"]


class LocalPresence(Presence):
    """Single replica: a user is online when their room here is not empty.

    :param max_sockets: most sockets of one user (0: no cap).
    """

    def __init__(self, manager: BaseManager, namespace: str = "/", *, max_sockets: int = 0) -> None:
        self._manager = manager
        self._namespace = namespace
        self._max_sockets = max_sockets

    async def add(self, user_id: str, sid: str, session: Session | None = None) -> None:
        """Room membership already records it (the socket has joined): only the cap is checked."""
        joined = sum(1 for _ in self._manager.get_participants(self._namespace, user_room(user_id)))
        if self._max_sockets and joined > self._max_sockets:
            raise TooManyConnectionsError(f"this user already holds {self._max_sockets} connections "
                                          "(MAX_SOCKETS_PER_USER); close one first")

    async def remove(self, user_id: str, sid: str, session: Session | None = None, *, keep: bool = False) -> None:
        """Room membership already records it."""

    async def is_online(self, user_id: str) -> bool:
        return any(True for _ in self._manager.get_participants(self._namespace, user_room(user_id)))
