"""Names of rooms, channels and Redis keys, kept in one place."""

from __future__ import annotations

__all__ = ["instance_key", "presence_key", "probe_key", "signing_key_name", "user_room"]

USER_ROOM_PREFIX = "user:"


def user_room(user_id: str) -> str:
    """The Socket.IO room every socket of ``user_id`` joins, on every replica."""
    return f"{USER_ROOM_PREFIX}{user_id}"


def presence_key(channel: str, user_id: str) -> str:
    """Redis hash of a user's live sockets: field = sid, value = instance id."""
    return f"{channel}:presence:{user_id}"


def instance_key(channel: str, instance_id: str) -> str:
    """Redis key that exists while a replica is alive (refreshed by its heartbeat)."""
    return f"{channel}:instance:{instance_id}"


def signing_key_name(channel: str) -> str:
    """Redis key holding the fingerprint of the replicas' queue signing key."""
    return f"{channel}:signing"


def probe_key(channel: str, nonce: str) -> str:
    """Redis key where replicas answer an emitter's signing-key probe (see ``signing``)."""
    return f"{channel}:signing:probe:{nonce}"
