"""``python -m bench.stock_replica``: the baseline replica.

The same app, settings and entry point as ``python -m server``, on
python-socketio's stock ``AsyncRedisManager`` instead of our queue manager and
Redis presence: no hardening, no tuning. It reads ``REDIS_URL`` and
``SOCKETIO_CHANNEL`` like a replica does.
"""

from __future__ import annotations

import sys

import socketio
from aiohttp import web

from kindmap_realtime.errors import ConfigError
from server.__main__ import main
from server.app import create_app
from server.config import Settings

__all__ = ["build"]


def build(settings: Settings) -> web.Application:
    if settings.redis_url is None:
        raise ConfigError("REDIS_URL is required: the baseline replica exists to share Redis with others")
    manager = socketio.AsyncRedisManager(settings.redis_url, channel=settings.channel)
    return create_app(settings, client_manager=manager)


if __name__ == "__main__":
    sys.exit(main(build))
