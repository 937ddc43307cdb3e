"""The ``json`` of python-socketio's packets (``Packet.json``), through orjson, its own choices kept.

python-socketio writes with ``json.dumps`` (non-ASCII text as ``\\u`` escapes) and reads
with python-engineio's ``json`` (which refuses integers of over 100 digits); so does
``SocketIOJson``, through orjson where the answer comes out the same
(``kindmap_realtime.messages.json_codec``): clients receive the very bytes they did before (error
payloads included).
"""

from __future__ import annotations

from typing import Any

from engineio import json as engineio_json

from kindmap_realtime.messages.json_codec import dumps_like_json, loads

__all__ = ["SocketIOJson"]


class SocketIOJson:
    """Given to python-socketio as ``json=``: its ``dumps`` and ``loads`` are all it asks for."""

    @staticmethod
    def dumps(obj: Any, **kwargs: Any) -> str:
        return dumps_like_json(obj, **kwargs)

    @staticmethod
    def loads(data: bytes | str) -> Any:
        return loads(data, fallback=engineio_json.loads)
