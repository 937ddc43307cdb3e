"""Names of the Redis keys and shard channels the backend uses, all under the Socket.IO channel's name.

A user's keys and channel carry the user id as a hash tag (``{ana}``): on a Redis
Cluster they share one slot, so one script can look up a user's presence and
publish to the user's channel (user ids never hold braces, see ``auth``).
"""

from __future__ import annotations

__all__ = ["all_channel", "consumed_key", "history_key", "inbox_key", "presence_key", "probe_key", "registry_key",
           "sessions_key", "signing_key_name", "user_channel"]


def presence_key(channel: str, user_id: str) -> str:
    """Redis hash of a user's live sockets: field = sid, value = the replica process
    (``<INSTANCE_ID>:<random>``), with ``#<ms>#<HMAC>`` when the queue is signed."""
    return f"{channel}:presence:{{{user_id}}}"


def sessions_key(channel: str, user_id: str) -> str:
    """Redis hash of a user's recoverable sessions: field = private session id (``pid``),
    value = a signed ``entries.SessionEntry`` (deadline, holder, socket id, where its replay starts)."""
    return f"{channel}:sessions:{{{user_id}}}"


def history_key(channel: str, user_id: str) -> str:
    """Redis list of the messages sent to a user, kept for their sessions' recovery, after a
    header that numbers them: the offsets clients hold (``routing.lua``)."""
    return f"{channel}:history:{{{user_id}}}"


def user_channel(channel: str, user_id: str) -> str:
    """Redis Cluster: the shard channel of one user's messages, in the slot of their presence key."""
    return f"{channel}:user:{{{user_id}}}"


def all_channel(channel: str) -> str:
    """Redis Cluster: the shard channel every replica listens to, for messages to everyone."""
    return f"{channel}:all"


def registry_key(channel: str) -> str:
    """Sorted set of the live replica processes, each scored with the time (Redis's clock,
    ms) its last heartbeat stops vouching for it."""
    return f"{channel}:replicas"


def inbox_key(channel: str, process: str) -> str:
    """Redis list of the envelopes addressed to one replica process, which reads it in order."""
    return f"{channel}:inbox:{process}"


def consumed_key(channel: str, process: str) -> str:
    """How many elements of its inbox a replica process has read in all (``routing.lua``'s ``advance``);
    outside the inbox pattern, which emitters may append to."""
    return f"{channel}:consumed:{process}"


def signing_key_name(channel: str) -> str:
    """Redis key holding the fingerprint of the replicas' queue signing key."""
    return f"{channel}:signing"


def probe_key(channel: str, nonce: str) -> str:
    """Redis key where replicas answer an emitter's signing-key probe (see ``key_check``)."""
    return f"{channel}:signing:probe:{nonce}"
