"""``python -m server``: run one replica until SIGTERM or Ctrl-C."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from aiohttp import web

from .app import create_app
from .config import Settings, load_environ
from .errors import ConfigError
from .logs import configure_logging

logger = logging.getLogger("server")


def main(build: Callable[[Settings], web.Application] = create_app) -> int:
    """Run one replica; ``build`` makes its app (the benchmarks' baseline passes its own)."""
    try:
        settings = Settings.from_env(load_environ())
        # Before the app: python-socketio and python-engineio choose their handlers when built.
        configure_logging(settings.log_level)
        app = build(settings)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    if settings.dev_mode:
        logger.warning("AUTH_MODE=dev: clients may connect as any user id; never use this in production")
    if settings.redis_url is None:
        logger.warning("REDIS_URL is not set: single replica with the in-memory manager")
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        shutdown_timeout=settings.shutdown_timeout,
        access_log=None,
        print=None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
