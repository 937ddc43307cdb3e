"""Redis as the backend: per-replica inbox streams addressed from presence hashes on one
Redis, per-user sharded pub/sub on a Redis Cluster; the key fingerprint and probes;
recoverable sessions and per-user histories.

The parts share one command client, owned by the transport, and one name
for this replica process: its presence entries say where its inbox is.

May import: ``kindmap_realtime.backends`` (the interfaces, the claim rules), ``kindmap_realtime.messages``,
the library's errors, log throttle and redis-py's compat (``kindmap_realtime.compat.redis``), and redis-py.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from ...compat.redis import check_redis
from ..base import Backend
from .anomalies import Anomalies
from .entries import SignedEntries
from .key_check import RedisKeyCheck
from .presence import RedisPresence
from .sessions import RedisSessions
from .transport import RedisTransport
from .url import SCHEMES, check_url

__all__ = ["SCHEMES", "check_url", "open_redis_backend"]


def open_redis_backend(url: str, *, channel: str, signing_key: bytes | None, instance_id: str,
                       clock_skew: float, recovery_window: float = 0.0, recovery_max_messages: int = 0,
                       max_sockets: int = 0, max_sessions: int = 0,
                       on_anomaly: Callable[[str], None] | None = None, replica: bool = True) -> Backend:
    # Before any connection: a redis-py without an internal these parts use fails here in one
    # line, an emitter's too (it runs no replica's start-up check).
    check_redis()
    # A replacement started under the same INSTANCE_ID never revives a dead process's sockets.
    process = f"{instance_id}:{uuid.uuid4().hex[:12]}"
    entries = SignedEntries(channel, signing_key, clock_skew)
    anomalies = Anomalies(on_anomaly)
    transport = RedisTransport(url, process=process, entries=entries, anomalies=anomalies, replica=replica)
    presence = RedisPresence(transport, channel=channel, process=process, entries=entries, anomalies=anomalies,
                             recovery_window=recovery_window, max_sockets=max_sockets, max_sessions=max_sessions)
    key_check = RedisKeyCheck(transport, channel=channel, key=signing_key)
    transport.on_shard_back(presence.heartbeat)
    sessions = None
    if recovery_window > 0:
        sessions = RedisSessions(transport, channel=channel, process=process, window=recovery_window,
                                 max_messages=recovery_max_messages, entries=entries, anomalies=anomalies)
    return Backend(name="redis", transport=transport, presence=presence, key_check=key_check, sessions=sessions)
