"""Queue messages as another replica would publish them, for tests that inject them."""

from __future__ import annotations

from typing import Any


def emit_envelope(event: str, data: list[Any], *, room: Any = None, host_id: str = "forged-host",
                  namespace: str = "/", **fields: Any) -> dict[str, Any]:
    """A stock python-socketio ``emit`` envelope, as another replica would publish it."""
    message = {"method": "emit", "event": event, "data": data, "binary": False, "namespace": namespace,
               "room": room, "skip_sid": None, "callback": None, "host_id": host_id}
    message.update(fields)
    return message
