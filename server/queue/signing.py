"""Keeping emitters and replicas on the same ``QUEUE_SIGNING_KEY``.

Replicas drop envelopes that are not signed with their key, so an emitter with
a different key (or none) would lose every message without hearing of it. The
replicas therefore publish a fingerprint of their key in Redis, and an emitter
refuses to start when its own fingerprint differs.
"""

from __future__ import annotations

import hashlib
import hmac

from redis import asyncio as aioredis

from ..errors import ConfigError
from .keys import signing_key_name

__all__ = ["announce", "check", "fingerprint"]

UNSIGNED = b"unsigned"


def fingerprint(key: bytes | None) -> bytes:
    """Names the key without revealing it (an HMAC of a fixed text)."""
    if key is None:
        return UNSIGNED
    return hmac.new(key, b"kindmap-queue-signing-fingerprint", hashlib.sha256).hexdigest()[:32].encode()


async def announce(client: aioredis.Redis, channel: str, key: bytes | None) -> None:
    """Record the replicas' fingerprint; called by every replica on (re)subscription."""
    await client.set(signing_key_name(channel), fingerprint(key))


async def check(client: aioredis.Redis, channel: str, key: bytes | None) -> None:
    """Raise ``ConfigError`` when the replicas on ``channel`` sign with another key."""
    announced = await client.get(signing_key_name(channel))
    if announced is not None and announced != fingerprint(key):
        raise ConfigError(f"QUEUE_SIGNING_KEY differs from the one the replicas on channel {channel!r} use; "
                          "they would drop every message")
