"""The event loop a replica and the emit CLI run on: uvloop when it is installed.

aiohttp recommends uvloop, and it pays here: a replica delivering targeted messages
to WebSocket clients spends about 17 % less CPU per delivered message on it
(``python -m bench.micro delivery``; bench/MICRO.md). Where it is not installed
(a platform without a wheel), asyncio's own loop runs the same code.
"""

from __future__ import annotations

import asyncio

__all__ = ["loop_name", "new_event_loop"]


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new uvloop loop, or asyncio's default one when uvloop cannot be imported."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """``"uvloop"`` or ``"asyncio"``: what the start-up log says the replica runs on."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
