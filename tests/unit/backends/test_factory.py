"""server/backends: one factory picks the backend from its URL and returns matched parts."""

from __future__ import annotations

import pytest

from server.backends import open_backend
from server.backends.redis.key_check import RedisKeyCheck
from server.backends.redis.presence import RedisPresence
from server.backends.redis.transport import RedisTransport
from server.errors import ConfigError

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
