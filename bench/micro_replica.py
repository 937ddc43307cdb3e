"""``python -m bench.micro_replica``: a replica for ``bench.micro delivery``.

Our replica (``python -m server``, in-memory manager, no Redis) plus one route,
``POST /bench/emit``, that emits benchmark messages to user rooms from inside the
process at a paced rate, as a backend's emits arrive at a replica. Two variables
of the benchmark's own choose what is compared: ``MICRO_LOOP=asyncio`` hides uvloop
(the replica then runs on asyncio's loop, as where uvloop is not installed), and
``MICRO_CODEC=json`` puts python-socketio's own packet class (and JSON module) back;
``MICRO_EMIT=in-place`` makes the in-memory manager await each send where python-socketio
makes a task per recipient (a change that belongs in server/queue/, measured here first).
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import socketio
from aiohttp import web
from engineio import packet as eio_packet
from socketio import packet as sio_packet
from socketio.async_manager import AsyncManager

from server import transport
from server.__main__ import main
from server.app import create_app
from server.app_keys import SIO
from server.config import Settings
from server.queue.manager import LocalManager
from server.queue.rooms import user_room

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


async def emit_in_place(self: LocalManager, event: str, data: Any, namespace: str, room: Any = None,
                        skip_sid: Any = None, callback: Any = None, to: Any = None, **kwargs: Any) -> None:
    """``AsyncManager.emit`` awaiting each recipient's send in turn, without a task each."""
    if callback is not None:
        await AsyncManager.emit(self, event, data, namespace, room=room, skip_sid=skip_sid, callback=callback,
                                to=to, **kwargs)
        return
    room = to or room
    if namespace not in self.rooms:
        return
    args = list(data) if isinstance(data, tuple) else [] if data is None else [data]
    skip = skip_sid if isinstance(skip_sid, list) else [skip_sid]
    encoded = self.server.packet_class(sio_packet.EVENT, namespace=namespace, data=[event, *args]).encode()
    eio_pkts = [eio_packet.Packet(eio_packet.MESSAGE, p) for p in (encoded if isinstance(encoded, list) else [encoded])]
    for sid, eio_sid in list(self.get_participants(namespace, room)):
        if sid not in skip:
            for pkt in eio_pkts:
                await self.server._send_eio_packet(eio_sid, pkt)


def build(settings: Settings) -> web.Application:
    app = create_app(settings)
    app.router.add_post("/bench/emit", emit)
    return app


if __name__ == "__main__":
    if os.environ.get("MICRO_LOOP") == "asyncio":
        sys.modules["uvloop"] = None  # type: ignore[assignment]  # ``import uvloop`` fails: asyncio's loop
    if os.environ.get("MICRO_CODEC") == "json":
        setattr(transport, "CodecPacket", socketio.packet.Packet)  # noqa: B010  # python-socketio's own, as shipped
    if os.environ.get("MICRO_EMIT") == "in-place":
        setattr(LocalManager, "emit", emit_in_place)  # noqa: B010
    sys.exit(main(build))
