"""Typed keys under which the app keeps its parts (aiohttp ``AppKey``)."""

from __future__ import annotations

import socketio
from aiohttp import web
from socketio.async_manager import AsyncManager

from kindmap_realtime.backends.base import Presence

from ..config import Settings
from ..eio.connections import OpenConnections
from ..manager.client_manager import QueueManager
from ..metrics import Metrics
from ..sio.auth import Authenticator
from ..sio.gateway import Gateway

__all__ = ["AUTHENTICATOR", "CONNECTIONS", "GATEWAY", "MANAGER", "METRICS", "PRESENCE", "SETTINGS", "SIO"]

SETTINGS = web.AppKey("settings", Settings)
AUTHENTICATOR = web.AppKey("authenticator", Authenticator)
SIO = web.AppKey("sio", socketio.AsyncServer)
# QueueManager; any python-socketio manager when create_app was given one.
MANAGER: web.AppKey[QueueManager | AsyncManager] = web.AppKey("manager")
GATEWAY = web.AppKey("gateway", Gateway)
METRICS = web.AppKey("metrics", Metrics)
PRESENCE = web.AppKey("presence", Presence)
CONNECTIONS = web.AppKey("connections", OpenConnections)
