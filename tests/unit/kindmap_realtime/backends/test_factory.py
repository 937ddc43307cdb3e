"""kindmap_realtime/backends: one factory picks the backend from its URL (Redis, or memory for a replica alone)
and returns matched parts."""

from __future__ import annotations

import pytest

from kindmap_realtime.backends import MEMORY_URL, check_backend_url, open_backend
from kindmap_realtime.backends.memory import MemoryKeyCheck, MemoryTransport
from kindmap_realtime.backends.memory.presence import MemoryPresence
from kindmap_realtime.backends.memory.sessions import MemorySessions
from kindmap_realtime.backends.redis.key_check import RedisKeyCheck
from kindmap_realtime.backends.redis.presence import RedisPresence
from kindmap_realtime.backends.redis.transport import RedisTransport
from kindmap_realtime.errors import ConfigError

# Nothing listens there: building a backend connects to nothing.
UNREACHABLE = "redis://127.0.0.1:1/0"


@pytest.mark.parametrize("url", [UNREACHABLE, "rediss://127.0.0.1:1/0", "unix:///tmp/nothing-here.sock"])
async def test_a_redis_url_gives_redis_parts_sharing_one_transport(url: str) -> None:
    backend = open_backend(url, channel="kindmap_unit", signing_key=b"k" * 32, instance_id="replica-1")
    try:
        assert backend.name == "redis"
        assert isinstance(backend.transport, RedisTransport)
        assert isinstance(backend.presence, RedisPresence)
        assert isinstance(backend.key_check, RedisKeyCheck)
        assert backend.presence._transport is backend.transport
        assert backend.key_check._transport is backend.transport
        assert backend.transport.mode is None  # one Redis or a cluster: decided on first contact
    finally:
        await backend.transport.close()


@pytest.mark.parametrize("url", ["memcached://127.0.0.1:11211", "127.0.0.1:6379"])
def test_an_unknown_scheme_is_refused_naming_the_ones_there_are(url: str) -> None:
    with pytest.raises(ConfigError, match=r"must start with redis://, rediss:// or unix://"):
        open_backend(url, channel="kindmap_unit", instance_id="replica-1")


async def test_memory_gives_a_replica_alone_its_parts_sharing_one_broker_and_a_session_store() -> None:
    backend = open_backend(MEMORY_URL, channel="kindmap_unit", instance_id="replica-1", recovery_window=30.0,
                           recovery_max_messages=10)

    assert backend.name == "memory"
    assert isinstance(backend.transport, MemoryTransport)
    assert isinstance(backend.presence, MemoryPresence)
    assert isinstance(backend.key_check, MemoryKeyCheck)
    assert isinstance(backend.sessions, MemorySessions)
    assert backend.presence._broker is backend.transport.broker is backend.sessions._broker


def test_memory_without_a_recovery_window_has_no_session_store() -> None:
    assert open_backend(MEMORY_URL, channel="kindmap_unit", instance_id="replica-1").sessions is None


def test_memory_is_a_replicas_own_so_an_emitter_cannot_open_it() -> None:
    with pytest.raises(ConfigError, match=r"must name the Redis the replicas share"):
        open_backend(MEMORY_URL, channel="kindmap_unit", instance_id="emitter", replica=False)


@pytest.mark.parametrize("url", ["memory://", "memory://somewhere"])
def test_a_setting_naming_the_shared_redis_refuses_memory(url: str) -> None:
    with pytest.raises(ConfigError, match=r"^REDIS_URL must name the Redis the replicas share"):
        check_backend_url("REDIS_URL", url)


def test_memory_takes_nothing_after_its_scheme() -> None:
    with pytest.raises(ConfigError, match=r"memory:// takes nothing after it"):
        open_backend("memory://elsewhere", channel="kindmap_unit", instance_id="replica-1")
