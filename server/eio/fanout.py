"""An Engine.IO message encoded once, WebSocket framing included, for all its recipients.

python-engineio encodes a packet for every socket it goes to (``Packet.encode``, then
aiohttp's ``send_str`` encodes it to UTF-8, builds the frame header and joins the
two), each in the socket's writer task. A broadcast to 500 sockets did that 500
times; a ``Frame`` holds the bytes once, and ``GuardedSocket.write_frame`` hands
them to a connection as they are, or, where permessage-deflate was negotiated,
its payload to the connection's compressor (each has its own deflate context).
"""

from __future__ import annotations

import struct

__all__ = ["Frame", "text_frame"]

_FIN_TEXT = 0x81  # FIN bit and opcode 1 (text); no RSV bits: not compressed
_LEN16 = struct.Struct("!BBH").pack
_LEN64 = struct.Struct("!BBQ").pack


class Frame:
    """A text message's ``payload`` and its unmasked, uncompressed WebSocket frame (what a
    server sends), ``data``.

    ``size``, the payload's length, is what the socket's outgoing buffer bound counts
    for the packet, as ``outgoing.packet_size`` does for a queued one.
    """

    __slots__ = ("data", "payload", "size")

    def __init__(self, payload: bytes, data: bytes) -> None:
        self.payload = payload
        self.data = data
        self.size = len(payload)


def text_frame(message: str) -> Frame:
    """The frame of an Engine.IO MESSAGE packet (``4`` then ``message``) sent as WebSocket text."""
    payload = b"4" + message.encode()
    length = len(payload)
    if length < 126:
        header = bytes((_FIN_TEXT, length))
    elif length < 65536:
        header = _LEN16(_FIN_TEXT, 126, length)
    else:
        header = _LEN64(_FIN_TEXT, 127, length)
    return Frame(payload, header + payload)
