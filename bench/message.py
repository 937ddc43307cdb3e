"""The benchmark message: what the emitter sends and how the load generator reads it.

Every message carries the time it was sent, read from ``time.monotonic()``:
CLOCK_MONOTONIC on Linux, one clock for every process of the machine, which
(unlike the wall clock) no time adjustment moves. Latency is the receiving
client's reading of the same clock minus that time.
"""

from __future__ import annotations

import json
import time
from typing import Any

__all__ = ["EVENT", "Delivery", "parse_delivery", "payload", "user_room"]

EVENT = "navigation_update"
# A guidance message of a realistic size (~200 bytes on the wire), the same for both systems.
_GUIDANCE = {"station": "City Hall", "line": 2, "instruction": "Take the elevator at exit 4 to platform 2",
             "accessible": True}
_PREFIX = '42["' + EVENT + '",'  # a Socket.IO EVENT packet for EVENT, on the default namespace


def user_room(user: str) -> str:
    """The room a replica puts every socket of ``user`` in, as the README documents it for
    publishers of their own: the baseline's stock manager addresses it by name."""
    return f"user:{user}"


def payload(step: int, seq: int) -> dict[str, Any]:
    """The data of one message, stamped with its send time."""
    return {"t": time.monotonic(), "step": step, "seq": seq, **_GUIDANCE}


class Delivery:
    """One benchmark message as a client received it."""

    __slots__ = ("sent_at", "step")

    def __init__(self, step: int, sent_at: float) -> None:
        self.step = step
        self.sent_at = sent_at


def parse_delivery(frame: str) -> Delivery | None:
    """The benchmark message in a WebSocket text frame, or ``None`` for any other frame.

    A frame is one Engine.IO packet; a benchmark message is the Socket.IO packet
    ``42["navigation_update",{...}]``.
    """
    if not frame.startswith(_PREFIX):
        return None
    data = json.loads(frame[2:])[1]
    return Delivery(step=data["step"], sent_at=data["t"])
