"""The room every socket of a user joins, named in one place."""

from __future__ import annotations

__all__ = ["user_of_room", "user_room"]

USER_ROOM_PREFIX = "user:"


def user_room(user_id: str) -> str:
    """The Socket.IO room every socket of ``user_id`` joins, on every replica."""
    return f"{USER_ROOM_PREFIX}{user_id}"


def user_of_room(room: object) -> str | None:
    """The user whose room ``room`` is, or ``None`` for any other room (or a list of rooms):
    a message for one user's room goes only to the replicas holding that user."""
    if isinstance(room, str) and room.startswith(USER_ROOM_PREFIX) and len(room) > len(USER_ROOM_PREFIX):
        return room[len(USER_ROOM_PREFIX):]
    return None
