"""Bytes a listening port has sent, as the kernel counts them (``ss``, iproute2).

``bytes_sent`` of a TCP socket is the payload it has transmitted: what went over
the wire after WebSocket framing and any permessage-deflate, without TCP/IP
headers (and with retransmissions, which loopback does not have).
"""

from __future__ import annotations

import re
import subprocess

__all__ = ["bytes_sent", "parse_bytes_sent"]

_SENT = re.compile(r"\bbytes_sent:(\d+)")


def parse_bytes_sent(ss_output: str) -> int:
    """The sum of every ``bytes_sent:N`` in the output of ``ss -ti``."""
    return sum(int(n) for n in _SENT.findall(ss_output))


def bytes_sent(port: int) -> int:
    """Payload bytes the established TCP connections of local ``port`` have sent so far."""
    out = subprocess.run(["ss", "-tinH", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True, check=True).stdout
    return parse_bytes_sent(out)
