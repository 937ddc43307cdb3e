"""The room every socket of a user joins, named in one place."""

from __future__ import annotations

__all__ = ["user_room"]

USER_ROOM_PREFIX = "user:"


def user_room(user_id: str) -> str:
    """The Socket.IO room every socket of ``user_id`` joins, on every replica."""
    return f"{USER_ROOM_PREFIX}{user_id}"
