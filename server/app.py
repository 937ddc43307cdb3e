"""The app factory: one replica's aiohttp application, built from ``Settings``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import socketio
from aiohttp import web
from socketio.async_manager import AsyncManager

from .app_keys import AUTHENTICATOR, GATEWAY, MANAGER, METRICS, PRESENCE, SETTINGS, SIO
from .auth import Authenticator
from .config import Settings
from .demo_page import demo_routes
from .dev_api import dev_routes
from .engine_http import HandshakeLimiter, engine_middleware
from .gateway import Gateway
from .http_api import error_middleware, routes
from .metrics import Metrics
from .packet_guard import HARD_CAP_FACTOR, drop_transport
from .presence import LocalPresence, MemoryPresence, Presence, RedisPresence
from .queue import signing
from .queue.backends.base import QueueBackend
from .queue.backends.memory import MemoryBackend
from .queue.backends.redis import RedisBackend
from .queue.manager import LocalManager, QueueManager

__all__ = ["create_app"]

logger = logging.getLogger(__name__)


def create_app(settings: Settings, *, backend: QueueBackend | None = None,
               client_manager: AsyncManager | None = None) -> web.Application:
    """Build a replica. With ``REDIS_URL`` (or an explicit ``backend``) it shares
    users with other replicas; without, it runs alone on the in-memory manager.

    :param backend: the queue transport to use instead of one built from ``REDIS_URL``.
    :param client_manager: a python-socketio client manager to run on, as it is,
        instead of ours: the benchmarks pass the stock ``AsyncRedisManager`` to
        measure what our manager costs. Such a replica knows only its own sockets
        (presence is its rooms), ``/readyz`` answers for the process alone, and the
        ``replace`` duplicate policy is refused because it needs our manager.
    """
    if client_manager is not None and (backend is not None or settings.duplicate_connection_policy == "replace"):
        raise ValueError("client_manager excludes backend and DUPLICATE_CONNECTION_POLICY=replace")
    metrics = Metrics()
    if backend is None and settings.redis_url is not None and client_manager is None:
        backend = RedisBackend(settings.redis_url)
    manager: AsyncManager
    if client_manager is not None:
        manager = client_manager
    elif backend is not None:
        manager = QueueManager(backend, channel=settings.channel, metrics=metrics, signing_key=settings.signing_key)
    else:
        manager = LocalManager()
    presence: Presence
    if isinstance(backend, RedisBackend):
        presence = RedisPresence(backend.client, channel=settings.channel, instance_id=settings.instance_id)
    elif isinstance(backend, MemoryBackend):
        presence = MemoryPresence(backend.broker.presence)
    else:
        presence = LocalPresence(manager)

    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        client_manager=manager,
        cors_allowed_origins=list(settings.cors_allowed_origins) or None,
        max_http_buffer_size=settings.max_payload_bytes * HARD_CAP_FACTOR,
        logger=False,
        engineio_logger=False,
    )
    authenticator = Authenticator(settings)
    gateway = Gateway(sio, settings=settings, authenticator=authenticator, presence=presence, metrics=metrics)

    limiter = HandshakeLimiter(sio, settings=settings, metrics=metrics)
    app = web.Application(client_max_size=settings.max_payload_bytes,
                          middlewares=[error_middleware, engine_middleware(limiter)])
    app[SETTINGS] = settings
    app[AUTHENTICATOR] = authenticator
    app[SIO] = sio
    app[MANAGER] = manager
    app[GATEWAY] = gateway
    app[METRICS] = metrics
    app[PRESENCE] = presence
    sio.attach(app)
    app.add_routes(routes)
    if settings.dev_mode:
        app.add_routes(dev_routes)
    app.add_routes(demo_routes())
    app.cleanup_ctx.append(_queue_ctx)
    app.on_shutdown.append(_drain)
    return app


async def _queue_ctx(app: web.Application) -> AsyncIterator[None]:
    """Subscribe before the first client arrives; on exit unsubscribe and close."""
    manager, presence, settings = app[MANAGER], app[PRESENCE], app[SETTINGS]
    if isinstance(manager, QueueManager):
        if isinstance(manager.backend, RedisBackend):
            client = manager.backend.client
            manager.on_subscribed(lambda: signing.announce(client, settings.channel, settings.signing_key))
        if isinstance(presence, RedisPresence):
            manager.on_subscribed(presence.heartbeat)
        await manager.start()
    await presence.start()
    logger.info("replica started", extra={
        "instance_id": settings.instance_id,
        "mode": "redis" if isinstance(manager, QueueManager) else "single-replica",
        "auth_mode": settings.auth_mode,
        "signed_queue": settings.signing_key is not None,
    })
    yield
    await presence.close()
    if isinstance(manager, QueueManager):
        await manager.close()
    await app[SIO].shutdown()


async def _drain(app: web.Application) -> None:
    """On shutdown: refuse new handshakes and drop every transport without a
    goodbye, so clients treat it as a lost connection and reconnect elsewhere."""
    app[GATEWAY].draining = True
    eio = app[SIO].eio
    sockets = list(eio.sockets.values())

    # Concurrently: each close runs the disconnect handler, which waits on Redis.
    await asyncio.gather(*(drop_transport(s, eio.reason.TRANSPORT_CLOSE) for s in sockets))
    logger.info("replica draining", extra={"sockets_closed": len(sockets)})
