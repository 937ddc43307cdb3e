"""kindmap_realtime/backends/redis/client.py: Redis replies are parsed by hiredis.

redis-py falls back to its pure-Python parser, silently, when hiredis is missing or
too old for it; that parser costs two to five times the CPU per message received.
"""

from __future__ import annotations

from redis._parsers import _AsyncHiredisParser

from kindmap_realtime.backends.redis.client import connect_redis


async def test_connections_of_the_command_client_parse_replies_with_hiredis() -> None:
    client = connect_redis("redis://127.0.0.1:1/0")  # never connected: the parser is chosen when built
    try:
        connection = client.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        assert type(connection._parser) is _AsyncHiredisParser
    finally:
        await client.aclose()
