"""``python -m server``: run one replica until SIGTERM or Ctrl-C."""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Callable

from aiohttp import web

from kindmap_realtime.environment import load_environ
from kindmap_realtime.errors import ConfigError
from kindmap_realtime.event_loop import loop_name, new_event_loop

from .app import create_app
from .config import Settings
from .logs import configure_logging

logger = logging.getLogger("server")

EXIT_CONFIG = 2


def main(build: Callable[[Settings], web.Application] = create_app) -> int:
    """Run one replica; ``build`` makes its app (the benchmarks' baseline passes its own)."""
    try:
        settings = Settings.from_env(load_environ())
        # Before the app: python-socketio and python-engineio choose their handlers when built.
        configure_logging(settings.log_level)
        app = build(settings)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        sockets = listening_sockets(settings.host, settings.port)
    except OSError as exc:
        print(f"configuration error: cannot listen on HOST={settings.host} PORT={settings.port}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return EXIT_CONFIG
    if settings.dev_mode:
        logger.warning("AUTH_MODE=dev: clients may connect as any user id; never use this in production")
    if settings.redis_url is None:
        logger.warning("REDIS_URL is not set: single replica on the memory backend (memory://)")
    loop = new_event_loop()
    logger.info("event loop: %s", loop_name(loop), extra={"event_loop": loop_name(loop)})
    web.run_app(
        app,
        loop=loop,
        sock=sockets,
        shutdown_timeout=settings.shutdown_timeout,
        access_log=None,
        print=None,
    )
    return 0


def listening_sockets(host: str, port: int) -> list[socket.socket]:
    """Bound sockets for every address of ``host``, as asyncio would bind them.

    Bound here, before the app starts, so a host name that does not resolve, an
    address this machine lacks or a port in use stops start-up with one line,
    before anything connects to Redis or logs that the replica started.
    """
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _name, address in socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


if __name__ == "__main__":
    sys.exit(main())
