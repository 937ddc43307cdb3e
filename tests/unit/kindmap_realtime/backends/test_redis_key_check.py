"""kindmap_realtime/backends/redis/key_check.py: the key fingerprint replicas and emitters compare."""

import pytest

from kindmap_realtime.backends import open_backend
from kindmap_realtime.backends.redis.key_check import UNSIGNED, fingerprint
from kindmap_realtime.errors import QueueUnavailableError

KEY = b"queue-signing-key-for-unit-tests-0123456789"


def test_fingerprint_of_no_key_says_unsigned() -> None:
    assert fingerprint(None) == UNSIGNED


def test_fingerprint_is_stable_per_key_and_differs_between_keys() -> None:
    assert fingerprint(KEY) == fingerprint(bytes(KEY))
    assert fingerprint(KEY) != fingerprint(KEY + b"!")
    assert fingerprint(KEY) != UNSIGNED


def test_fingerprint_does_not_reveal_the_key() -> None:
    assert KEY not in fingerprint(KEY) and KEY.hex().encode()[:16] not in fingerprint(KEY)


async def test_check_says_queue_unavailable_when_redis_does_not_answer() -> None:
    backend = open_backend("redis://127.0.0.1:1/0", channel="kindmap_unit", instance_id="emitter", signing_key=KEY)
    try:
        with pytest.raises(QueueUnavailableError, match="Redis unreachable"):
            await backend.key_check.check()
    finally:
        await backend.transport.close()
