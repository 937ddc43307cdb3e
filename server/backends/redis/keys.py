"""Names of the Redis keys the backend writes, all under the Socket.IO channel's name."""

from __future__ import annotations

__all__ = ["instance_key", "presence_key", "probe_key", "signing_key_name"]


def presence_key(channel: str, user_id: str) -> str:
    """Redis hash of a user's live sockets: field = sid, value = the replica process
    (``<INSTANCE_ID>:<random>``), with ``#<ms>#<HMAC>`` when the queue is signed."""
    return f"{channel}:presence:{user_id}"


def instance_key(channel: str, instance_id: str) -> str:
    """Redis key that exists while a replica is alive (refreshed by its heartbeat)."""
    return f"{channel}:instance:{instance_id}"


def signing_key_name(channel: str) -> str:
    """Redis key holding the fingerprint of the replicas' queue signing key."""
    return f"{channel}:signing"


def probe_key(channel: str, nonce: str) -> str:
    """Redis key where replicas answer an emitter's signing-key probe (see ``key_check``)."""
    return f"{channel}:signing:probe:{nonce}"
