"""aiohttp's WebSocket writer, used below its public API to write one pre-built frame to many
sockets without a task per socket (``server.eio.socket.GuardedSocket.write_frame``)."""

from __future__ import annotations

from importlib.metadata import version

from aiohttp import WSMsgType, web
from aiohttp._websocket.writer import WEBSOCKET_MAX_SYNC_CHUNK_SIZE, WebSocketWriter

from kindmap_realtime.compat import Internal, check

__all__ = ["INTERNALS", "check_aiohttp", "write_compressed_text_now", "writer_busy", "writer_of"]

INTERNALS = (
    Internal("aiohttp._websocket.writer", "WEBSOCKET_MAX_SYNC_CHUNK_SIZE",
             "frames above it are compressed in a thread, which a synchronous write cannot wait for",
             "aiohttp 3.14.5", "a public synchronous send of a pre-built frame"),
    Internal("aiohttp.web_ws:WebSocketResponse", "_writer",
             "a frame shared by many sockets is written to each WebSocket's writer directly",
             "aiohttp 3.14.5", "a public accessor of a prepared WebSocketResponse's writer"),
    Internal("aiohttp._websocket.writer:WebSocketWriter", "_send_lock",
             "a compressed frame may be written synchronously only while no other send holds the compressor",
             "aiohttp 3.14.5", "a public 'is a send in progress' of the writer"),
    Internal("aiohttp._websocket.writer:WebSocketWriter", "_send_compressed_frame_sync",
             "what send_frame does for a small compressed frame, without its coroutine and task",
             "aiohttp 3.14.5", "a public synchronous send_frame"),
)


def check_aiohttp() -> None:
    check(INTERNALS, "aiohttp", version("aiohttp"))


def writer_of(ws: web.WebSocketResponse) -> WebSocketWriter | None:
    """The writer of a prepared WebSocket (``None`` before ``prepare`` and after it closed)."""
    writer: WebSocketWriter | None = ws._writer
    return writer


def writer_busy(writer: WebSocketWriter, size: int) -> bool:
    """Whether a compressed frame of ``size`` bytes cannot be written synchronously now."""
    return writer._send_lock.locked() or size > WEBSOCKET_MAX_SYNC_CHUNK_SIZE


def write_compressed_text_now(writer: WebSocketWriter, payload: bytes) -> None:
    """Compress and write one text frame at once (check ``writer_busy`` first)."""
    writer._send_compressed_frame_sync(payload, WSMsgType.TEXT, None)
