"""The app factory: one replica's aiohttp application, built from ``Settings``."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Middleware
from socketio.async_manager import AsyncManager

from kindmap_realtime.backends import MEMORY_URL, Backend, Presence, open_backend

from .compat import check_libraries
from .config import Settings
from .eio.connections import OpenConnections
from .eio.handshake import HandshakeLimiter, engine_middleware
from .http.app_keys import AUTHENTICATOR, CONNECTIONS, GATEWAY, MANAGER, METRICS, PRESENCE, SETTINGS, SIO
from .http.demo_page import demo_routes
from .http.dev_api import dev_host_middleware, dev_routes
from .http.emit_api import ErrorMiddleware, routes
from .manager.client_manager import QueueManager
from .manager.recovery import Recovery
from .metrics import Metrics
from .sio.auth import Authenticator
from .sio.gateway import Gateway
from .sio.packet_guard import HARD_CAP_FACTOR, drop_transport
from .sio.server import SocketServer

__all__ = ["create_app", "socket_cap"]

logger = logging.getLogger(__name__)


def create_app(settings: Settings, *, backend: Backend | None = None,
               client_manager: AsyncManager | None = None) -> web.Application:
    """Build a replica. With ``REDIS_URL`` (or an explicit ``backend``) it shares
    users with other replicas; without, it runs alone on the memory backend, with
    the same promises (recovery, "stored", the same refusals).

    :param backend: the backend to use instead of one opened from ``REDIS_URL``
        (the unit tests pass in-memory ones sharing a broker).
    :param client_manager: a python-socketio client manager to run on, as it is,
        instead of ours: the benchmarks pass the stock ``AsyncRedisManager`` to
        measure what our manager costs. Such a replica knows only its own sockets
        (presence is this process's), ``/readyz`` answers for the process alone, the
        ``replace`` duplicate policy is refused because it needs our manager, and
        nothing is recovered.
    """
    if client_manager is not None and (backend is not None or settings.duplicate_connection_policy == "replace"):
        raise ValueError("client_manager excludes backend and DUPLICATE_CONNECTION_POLICY=replace")
    check_libraries()  # an upgraded library fails here, in one line, not at the first message
    metrics = Metrics()
    manager: AsyncManager
    presence: Presence
    if client_manager is None:
        backend = backend or open_backend(
            settings.redis_url or MEMORY_URL, channel=settings.channel, signing_key=settings.signing_key,
            instance_id=settings.instance_id, clock_skew=settings.queue_replay_window,
            recovery_window=settings.recovery_window, recovery_max_messages=settings.recovery_max_messages,
            recovery_max_replay_bytes=settings.recovery_max_replay_bytes, max_sockets=socket_cap(settings),
            max_sessions=settings.recovery_max_sessions,
            on_anomaly=lambda kind: metrics.redis_anomalies.labels(anomaly=kind).inc())
        manager = QueueManager(backend.transport, channel=settings.channel, metrics=metrics,
                               signing_key=settings.signing_key, max_message_bytes=settings.max_queue_message_bytes,
                               replay_window=settings.queue_replay_window)
        presence = backend.presence
        manager.on_subscribed(backend.key_check.announce)
        manager.on_subscribed(presence.heartbeat)
        manager.on_key_probe(backend.key_check.answer)
    else:
        manager = client_manager
        presence = open_backend(MEMORY_URL, channel=settings.channel, instance_id=settings.instance_id,
                                max_sockets=socket_cap(settings)).presence

    sio = SocketServer(
        async_mode="aiohttp",
        client_manager=manager,
        cors_allowed_origins=list(settings.cors_allowed_origins) or None,
        max_http_buffer_size=settings.max_payload_bytes * HARD_CAP_FACTOR,
        max_outgoing_bytes=settings.max_outgoing_buffer_bytes,
        websocket_compression=settings.websocket_compression,
        metrics=metrics,
        # Loggers given, not True/False: the libraries then add no plain-text handler of their own.
        logger=logging.getLogger("socketio"),
        engineio_logger=logging.getLogger("engineio"),
    )
    metrics.engineio_sessions.set_function(lambda: len(sio.eio.sockets))
    authenticator = Authenticator(settings)
    recovery = None
    if isinstance(manager, QueueManager) and backend is not None and backend.sessions is not None \
            and settings.recovery_window > 0:
        recovery = Recovery(backend.sessions, metrics=metrics, open_envelope=manager.open_envelope,
                            send=manager.send_event, kick=manager.kick,
                            max_age=backend.sessions.lifetime + settings.queue_replay_window,
                            max_replay_bytes=settings.recovery_max_replay_bytes)
        manager.recovery = recovery
        backend.transport.on_listening_again(recovery)
        sio.session_id_of = recovery.pid_of
    gateway = Gateway(sio, settings=settings, authenticator=authenticator, presence=presence, metrics=metrics,
                      recovery=recovery)
    presence.on_taken(lambda sid: sio.disconnect(sid, ignore_queue=True))

    connections = OpenConnections()
    limiter = HandshakeLimiter(sio, settings=settings, metrics=metrics)
    middlewares: list[Middleware] = [ErrorMiddleware(), engine_middleware(limiter, connections)]
    if settings.dev_mode:
        middlewares.insert(1, dev_host_middleware)
    app = web.Application(client_max_size=settings.max_payload_bytes, middlewares=middlewares)
    app[SETTINGS] = settings
    app[AUTHENTICATOR] = authenticator
    app[SIO] = sio
    app[MANAGER] = manager
    app[GATEWAY] = gateway
    app[METRICS] = metrics
    app[PRESENCE] = presence
    app[CONNECTIONS] = connections
    sio.attach(app)
    app.add_routes(routes)
    if settings.dev_mode:
        app.add_routes(dev_routes)
    app.add_routes(demo_routes())
    # Started in this order, closed in reverse: each resource on its own, so one
    # that fails to close leaves the others to close all the same.
    app.cleanup_ctx.extend([_socketio_ctx, _queue_ctx, _presence_ctx])
    app.on_startup.append(functools.partial(_log_started, mode=backend.name if backend else type(manager).__name__,
                                            recovery=recovery is not None))
    app.on_shutdown.append(_drain)
    return app


def socket_cap(settings: Settings) -> int:
    """The most live sockets of one user (``MAX_SOCKETS_PER_USER``); none with the replace policy,
    under which a user's new connection replaces the older ones."""
    return 0 if settings.duplicate_connection_policy == "replace" else settings.max_sockets_per_user


async def _socketio_ctx(app: web.Application) -> AsyncIterator[None]:
    """Closed last: python-socketio's own background tasks."""
    yield
    await app[SIO].shutdown()


async def _queue_ctx(app: web.Application) -> AsyncIterator[None]:
    """Subscribe before the first client arrives; on exit unsubscribe and close the transport."""
    manager = app[MANAGER]
    if not isinstance(manager, QueueManager):
        yield
        return
    await manager.start()
    yield
    await manager.close()


async def _presence_ctx(app: web.Application) -> AsyncIterator[None]:
    """Presence upkeep; closed first, while the connection it writes through is still open."""
    presence = app[PRESENCE]
    await presence.start()
    yield
    await presence.close()


async def _log_started(app: web.Application, *, mode: str, recovery: bool) -> None:
    settings = app[SETTINGS]
    base = settings.public_url
    logger.info("replica started: demo page at %s/, emit API at %s/api/v1/emit, health at %s/healthz",
                base, base, base, extra={
        "instance_id": settings.instance_id,
        "mode": mode,
        "auth_mode": settings.auth_mode,
        "signed_queue": settings.signing_key is not None,
        "recovery_window_s": settings.recovery_window if recovery else 0,
    })


async def _drain(app: web.Application) -> None:
    """On shutdown: refuse new handshakes and drop every transport without a
    goodbye, so clients treat it as a lost connection and reconnect elsewhere.

    The Engine.IO sockets are closed first, so each runs its disconnect handler
    (presence withdrawn); then every Socket.IO connection still open, such as a
    WebSocket in mid-upgrade, is aborted so that no handler holds up the exit."""
    app[GATEWAY].draining = True
    eio = app[SIO].eio
    sockets = list(eio.sockets.values())

    # Concurrently: each close runs the disconnect handler, which waits on Redis.
    await asyncio.gather(*(drop_transport(s, eio.reason.TRANSPORT_CLOSE) for s in sockets))
    aborted = app[CONNECTIONS].abort_all()
    logger.info("replica draining", extra={"sockets_closed": len(sockets), "connections_aborted": aborted})
