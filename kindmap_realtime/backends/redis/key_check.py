"""Keeping emitters and replicas on the same ``QUEUE_SIGNING_KEY``.

Replicas drop envelopes that are not signed with their key, so an emitter with
a different key (or none) would lose every message without hearing of it. The
replicas therefore publish a fingerprint of their key in Redis, and an emitter
compares its own before it starts.

The fingerprint lives in Redis, where a neighbour can rewrite it. So the rule an
emitter with a key follows is (``RedisKeyCheck.check``):

1. the fingerprint is its own key's: start;
2. otherwise ask the replicas: publish a signed ``key_probe`` with a random nonce;
   a replica that verifies it answers by writing ``HMAC(key, nonce)`` under
   ``probe_key`` (``answer``). A valid answer proves a listening replica shares the
   key -- the fingerprint was tampered with: log a warning, do not trust it, start;
3. no replica listens (the probe reached nobody): start unverified, with a warning, as
   before any replica ever announced (replicas that come up with another key will find
   its messages unsigned for them, and its presence checks will find every rider offline);
4. replicas listen and none proves the key within ``PROBE_TIMEOUT``: they use
   another key (or none) and would drop every message: ``ConfigError``.

A neighbour can thus delay an emitter's start by ``PROBE_TIMEOUT`` but cannot
make a correctly keyed emitter refuse (short of deleting answers as they are
written), nor make a wrongly keyed one start against listening replicas.
An emitter without a key cannot verify anything: it starts only when the
fingerprint says the replicas are unsigned too (or there is none).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import time

from redis import asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from ...errors import ConfigError, QueueUnavailableError
from ...messages import envelope
from ..base import KeyCheck
from .keys import probe_key, signing_key_name
from .transport import RedisTransport

__all__ = ["PROBE_TIMEOUT", "RedisKeyCheck", "fingerprint"]

logger = logging.getLogger(__name__)

UNSIGNED = b"unsigned"
PROBE_TIMEOUT = 2.0
PROBE_ANSWER_TTL_MS = 10_000
_POLL_INTERVAL = 0.02


def fingerprint(key: bytes | None) -> bytes:
    """Names the key without revealing it (an HMAC of a fixed text)."""
    if key is None:
        return UNSIGNED
    return hmac.new(key, b"kindmap-queue-signing-fingerprint", hashlib.sha256).hexdigest()[:32].encode()


def _proof(key: bytes, nonce: str) -> bytes:
    return hmac.new(key, b"kindmap-queue-key-probe:" + nonce.encode(), hashlib.sha256).hexdigest().encode()


class RedisKeyCheck(KeyCheck):
    """The rule of the module docstring, for the replicas and emitters on ``channel``."""

    def __init__(self, transport: RedisTransport, *, channel: str, key: bytes | None) -> None:
        self._transport = transport  # publishes the probe, and owns the command client
        self._channel = channel
        self._key = key

    async def announce(self) -> None:
        """Record the replicas' fingerprint; called by every replica on (re)subscription."""
        await (await self._transport.redis()).set(signing_key_name(self._channel), fingerprint(self._key))

    async def answer(self, nonce: str) -> None:
        """A replica's answer to a ``key_probe`` it verified: proof that it holds the key."""
        if self._key is not None:
            await (await self._transport.redis()).set(probe_key(self._channel, nonce), _proof(self._key, nonce),
                                                      px=PROBE_ANSWER_TTL_MS)

    async def check(self) -> None:
        """Raise ``ConfigError`` when the replicas on the channel would drop this key's envelopes,
        ``QueueUnavailableError`` when Redis does not answer."""
        try:
            await self._check()
        except (RedisError, OSError) as exc:
            if isinstance(exc, QueueUnavailableError):
                raise
            raise QueueUnavailableError(f"Redis unreachable: {exc}") from exc

    async def _check(self) -> None:
        channel, key = self._channel, self._key
        client = await self._transport.redis()
        announced = await client.get(signing_key_name(channel))
        if announced == fingerprint(key) or (announced is None and key is None):
            return
        if key is None:
            raise ConfigError(f"the replicas on channel {channel!r} sign their queue: set QUEUE_SIGNING_KEY")
        shared = await self._replicas_share(client, key)
        if shared is None:
            logger.warning("the signing fingerprint in Redis is not this key's, and no replica listens to say "
                           "which is right: starting unverified (a wrong key makes every rider look offline)",
                           extra={"channel": channel})
            return
        if shared:
            logger.warning("the signing fingerprint in Redis is not this key's, yet a replica proved it holds "
                           "the key: the fingerprint was rewritten by someone else; ignoring it",
                           extra={"channel": channel})
            return
        raise ConfigError(f"QUEUE_SIGNING_KEY differs from the one the replicas on channel {channel!r} use; "
                          "they would drop every message")

    async def _replicas_share(self, client: aioredis.Redis | RedisCluster, key: bytes) -> bool | None:
        """Whether a listening replica proves it holds ``key``; ``None`` when none listens."""
        nonce = os.urandom(16).hex()
        probe = {"method": "key_probe", "nonce": nonce, "host_id": f"emitter-{nonce[:8]}"}
        if await self._transport.publish(self._channel, envelope.encode(probe, key)) == 0:
            return None
        deadline = time.monotonic() + PROBE_TIMEOUT
        expected = _proof(key, nonce)
        while time.monotonic() < deadline:
            proof = await client.get(probe_key(self._channel, nonce))
            if proof is not None:
                return isinstance(proof, bytes) and hmac.compare_digest(proof, expected)
            await asyncio.sleep(_POLL_INTERVAL)
        return False
