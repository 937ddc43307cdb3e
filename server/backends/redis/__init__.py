"""Redis as the backend: plain pub/sub, presence hashes, the key fingerprint and probes.

The three parts share one command client, owned by the transport.
"""

from __future__ import annotations

from ..base import Backend
from .key_check import RedisKeyCheck
from .presence import RedisPresence
from .transport import RedisTransport
from .url import SCHEMES, check_url

__all__ = ["SCHEMES", "check_url", "open_redis_backend"]


def open_redis_backend(url: str, *, channel: str, signing_key: bytes | None, instance_id: str,
                       clock_skew: float) -> Backend:
    transport = RedisTransport(url)
    client = transport.client
    presence = RedisPresence(client, channel=channel, instance_id=instance_id, signing_key=signing_key,
                             clock_skew=clock_skew)
    key_check = RedisKeyCheck(client, transport, channel=channel, key=signing_key)
    return Backend(name="redis", transport=transport, presence=presence, key_check=key_check)
