"""``python -m bench.micro_replica``: a replica for ``bench.micro delivery``.

Our replica (``python -m server``) on our fan-out alone (``LocalDelivery`` as its client
manager: no queue, no Redis, no recovery, so what is measured is the delivery to sockets)
plus one route, ``POST /bench/emit``, that emits benchmark messages to user rooms from
inside the process at a paced rate, as a backend's emits arrive at a replica. Two variables
of the benchmark's own choose what is compared: ``MICRO_LOOP=asyncio`` hides uvloop
(the replica then runs on asyncio's loop, as where uvloop is not installed), and
``MICRO_CODEC=json`` puts python-socketio's own packet class (and JSON module) back;
``MICRO_EMIT=tasks`` puts python-socketio's own emit back, which makes a task per
recipient where ours (``server/manager/local_delivery.py``) awaits each send in turn.
"""

from __future__ import annotations

import asyncio
import os
import sys

import socketio
from aiohttp import web
from socketio.async_manager import AsyncManager

from kindmap_realtime.messages.rooms import user_room
from server.__main__ import main
from server.app import create_app
from server.config import Settings
from server.http.app_keys import SIO
from server.manager.local_delivery import LocalDelivery
from server.sio import server as transport

from .message import EVENT, payload
from .pacing import Schedule

__all__ = ["build"]

async def emit(request: web.Request) -> web.Response:
    """Emit ``rate`` messages a second for ``seconds``, user after user; answers how many."""
    body = await request.json()
    users: list[str] = body["users"]
    sio = request.app[SIO]
    loop = asyncio.get_running_loop()
    schedule = Schedule(float(body["rate"]), float(body["seconds"]), loop.time())
    sent = 0
    while (due := schedule.take(loop.time())) is not None:
        if due > loop.time():
            await asyncio.sleep(due - loop.time())
        await sio.emit(EVENT, payload(body["step"], sent), room=user_room(users[sent % len(users)]))
        sent += 1
    return web.json_response({"sent": sent})


def build(settings: Settings) -> web.Application:
    app = create_app(settings, client_manager=LocalDelivery())
    app.router.add_post("/bench/emit", emit)
    return app


if __name__ == "__main__":
    if os.environ.get("MICRO_LOOP") == "asyncio":
        sys.modules["uvloop"] = None  # type: ignore[assignment]  # ``import uvloop`` fails: asyncio's loop
    if os.environ.get("MICRO_CODEC") == "json":
        setattr(transport, "CodecPacket", socketio.packet.Packet)  # noqa: B010  # python-socketio's own, as shipped
    if os.environ.get("MICRO_EMIT") == "tasks":
        setattr(LocalDelivery, "emit", AsyncManager.emit)  # noqa: B010
    sys.exit(main(build))
