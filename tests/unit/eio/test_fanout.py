"""server/eio/fanout.py: a packet's WebSocket frame, built once."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import WSMsgType
from aiohttp._websocket.writer import WebSocketWriter

from server.eio.fanout import text_frame


class RecordingTransport:
    def __init__(self) -> None:
        self.written = bytearray()

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return False


async def _as_aiohttp_frames(text: str) -> bytes:
    transport = RecordingTransport()
    protocol: Any = type("Protocol", (), {"_paused": False})()
    await WebSocketWriter(protocol, transport).send_frame(text.encode(), WSMsgType.TEXT)  # type: ignore[arg-type]
    return bytes(transport.written)


@pytest.mark.parametrize("message", ['2["nav",1]', "2" + "x" * 200, "2" + "x" * 70_000, '2["Zürich → Genève"]'],
                         ids=["short", "16-bit length", "64-bit length", "non-ascii"])
async def test_a_text_frame_is_what_aiohttp_sends_for_the_engineio_message(message: str) -> None:
    frame = text_frame(message)

    assert frame.data == await _as_aiohttp_frames("4" + message)
    assert frame.size == len(("4" + message).encode())
