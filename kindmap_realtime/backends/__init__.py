"""The one place that picks the backend linking replicas, from its URL.

``open_backend("redis://…", …)`` returns a matched ``Backend``: queue transport,
presence, key check and session store. The replica (``create_app``) and the emitter
both build from here. Without ``REDIS_URL`` a replica runs alone on ``memory://``
(``backends.memory``), which only a replica may open: it lives in the replica's process.

May import: ``kindmap_realtime.messages``, the library's errors, limits, log throttle and
compat, and redis-py. Nothing here knows Socket.IO or the web server.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ConfigError
from ..messages.replay import DEFAULT_WINDOW
from .base import Backend, KeyCheck, Presence, QueueTransport, SessionStore
from .memory import SCHEME as MEMORY_SCHEME
from .memory import URL as MEMORY_URL
from .memory import check_url as check_memory_url
from .memory import open_memory_backend
from .redis import SCHEMES as REDIS_SCHEMES
from .redis import check_url as check_redis_url
from .redis import open_redis_backend

__all__ = ["MEMORY_URL", "Backend", "KeyCheck", "Presence", "QueueTransport", "SessionStore", "check_backend_url",
           "open_backend"]

_KNOWN = ", ".join(f"{scheme}://" for scheme in REDIS_SCHEMES[:-1]) + f" or {REDIS_SCHEMES[-1]}://"


def check_backend_url(name: str, url: str, *, alone: bool = False) -> None:
    """Refuse, naming the setting ``name``, a URL no backend would open or its backend would misread.

    :param alone: for a replica's own backend, which may be ``memory://`` (it runs alone); every
        other URL names the Redis that replicas and emitters share.
    """
    scheme = url.split("://", 1)[0] if "://" in url else "no scheme"
    if scheme == MEMORY_SCHEME:
        if not alone:
            raise ConfigError(f"{name} must name the Redis the replicas share: {MEMORY_URL} is a replica's own, "
                              "in its process (a replica without REDIS_URL runs on it)")
        check_memory_url(name, url)
        return
    if scheme not in REDIS_SCHEMES:
        raise ConfigError(f"{name} must start with {_KNOWN} (got {scheme})")
    check_redis_url(name, url)


def open_backend(url: str, *, channel: str, instance_id: str, signing_key: bytes | None = None,
                 clock_skew: float = DEFAULT_WINDOW, recovery_window: float = 0.0,
                 recovery_max_messages: int = 0, recovery_max_replay_bytes: int = 0, max_sockets: int = 0,
                 max_sessions: int = 0, on_anomaly: Callable[[str], None] | None = None,
                 replica: bool = True) -> Backend:
    """The backend ``url`` names, its parts set up for ``channel``.

    :param signing_key: the queue signing key every replica and emitter on ``channel`` shares.
    :param instance_id: names this replica's presence entries (an emitter writes none).
    :param clock_skew: how far other hosts' clocks may be off, in seconds (signed presence entries).
    :param recovery_window: a replica's ``RECOVERY_WINDOW_SECONDS``; 0 (an emitter): no session store.
    :param recovery_max_messages: a replica's ``RECOVERY_MAX_MESSAGES``.
    :param recovery_max_replay_bytes: a replica's ``RECOVERY_MAX_REPLAY_BYTES``, which also bounds the
        memory backend's histories (0: by count and age only); a replay enforces it on Redis.
    :param max_sockets: a replica's ``MAX_SOCKETS_PER_USER`` (0: no cap, as with the replace policy).
    :param max_sessions: a replica's ``RECOVERY_MAX_SESSIONS``.
    :param on_anomaly: called with the kind of each piece of foreign data found in the backend.
    :param replica: ``False`` for an emitter, which only sends: it calls the routing code the
        replicas install in the backend, and may not install it (its Redis user cannot).
    """
    check_backend_url("the backend URL", url, alone=replica)
    if url == MEMORY_URL:
        return open_memory_backend(channel=channel, instance_id=instance_id, clock_skew=clock_skew,
                                   recovery_window=recovery_window, recovery_max_messages=recovery_max_messages,
                                   recovery_max_replay_bytes=recovery_max_replay_bytes, max_sockets=max_sockets,
                                   max_sessions=max_sessions)
    return open_redis_backend(url, channel=channel, signing_key=signing_key, instance_id=instance_id,
                              clock_skew=clock_skew, recovery_window=recovery_window,
                              recovery_max_messages=recovery_max_messages, max_sockets=max_sockets,
                              max_sessions=max_sessions, on_anomaly=on_anomaly, replica=replica)
