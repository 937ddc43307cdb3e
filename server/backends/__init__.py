"""The one place that picks the backend linking replicas, from its URL.

``open_backend("redis://…", …)`` returns a matched ``Backend``: queue transport,
presence and key check. The replica (``create_app``) and the emitter both build
from here. Without a URL a replica runs alone (``backends.local``), and needs none.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ConfigError
from ..messages.replay import DEFAULT_WINDOW
from .base import Backend, KeyCheck, Presence, QueueTransport, SessionStore
from .redis import SCHEMES as REDIS_SCHEMES
from .redis import check_url as check_redis_url
from .redis import open_redis_backend

__all__ = ["Backend", "KeyCheck", "Presence", "QueueTransport", "SessionStore", "check_backend_url", "open_backend"]

_KNOWN = ", ".join(f"{scheme}://" for scheme in REDIS_SCHEMES[:-1]) + f" or {REDIS_SCHEMES[-1]}://"


def check_backend_url(name: str, url: str) -> None:
    """Refuse, naming the setting ``name``, a URL no backend would open or its backend would misread."""
    scheme = url.split("://", 1)[0] if "://" in url else "no scheme"
    if scheme not in REDIS_SCHEMES:
        raise ConfigError(f"{name} must start with {_KNOWN} (got {scheme})")
    check_redis_url(name, url)


def open_backend(url: str, *, channel: str, instance_id: str, signing_key: bytes | None = None,
                 clock_skew: float = DEFAULT_WINDOW, recovery_window: float = 0.0,
                 recovery_max_messages: int = 0, max_sockets: int = 0, max_sessions: int = 0,
                 on_anomaly: Callable[[str], None] | None = None, replica: bool = True) -> Backend:
    """The backend ``url`` names, its parts set up for ``channel``.

    :param signing_key: the queue signing key every replica and emitter on ``channel`` shares.
    :param instance_id: names this replica's presence entries (an emitter writes none).
    :param clock_skew: how far other hosts' clocks may be off, in seconds (signed presence entries).
    :param recovery_window: a replica's ``RECOVERY_WINDOW_SECONDS``; 0 (an emitter): no session store.
    :param recovery_max_messages: a replica's ``RECOVERY_MAX_MESSAGES``.
    :param max_sockets: a replica's ``MAX_SOCKETS_PER_USER`` (0: no cap, as with the replace policy).
    :param max_sessions: a replica's ``RECOVERY_MAX_SESSIONS``.
    :param on_anomaly: called with the kind of each piece of foreign data found in the backend.
    :param replica: ``False`` for an emitter, which only sends: it calls the routing code the
        replicas install in the backend, and may not install it (its Redis user cannot).
    """
    check_backend_url("the backend URL", url)
    return open_redis_backend(url, channel=channel, signing_key=signing_key, instance_id=instance_id,
                              clock_skew=clock_skew, recovery_window=recovery_window,
                              recovery_max_messages=recovery_max_messages, max_sockets=max_sockets,
                              max_sessions=max_sessions, on_anomaly=on_anomaly, replica=replica)
