"""What a message to a user must be before it is sent: a user id usable as a room name, an
event name clients give no meaning of their own, and data every Socket.IO client can parse.
The HTTP API, the emitter, its CLI and the gateway (user ids from tokens) check the same."""

from __future__ import annotations

import json
import re
from typing import Any

from ..errors import RequestError

__all__ = ["MAX_DATA_DEPTH", "RESERVED_EVENTS", "USER_ID_PATTERN", "check_data", "check_event", "check_user_id",
           "validate_user_id"]

USER_ID_PATTERN = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")

# Names Socket.IO clients give a meaning of their own; a backend may not fake them.
RESERVED_EVENTS = frozenset({
    "connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener",
})
MAX_EVENT_LENGTH = 128
# Nesting of arrays and objects in ``data``. Every replica parses each queue message
# with Python's recursive JSON decoder, which gives up near 1,000 levels; real payloads
# (routes, alerts) nest a handful.
MAX_DATA_DEPTH = 32


def check_event(event: Any) -> str:
    if not isinstance(event, str) or not 0 < len(event) <= MAX_EVENT_LENGTH:
        raise RequestError(f"event must be a string of 1-{MAX_EVENT_LENGTH} characters")
    if not _is_utf8_text(event):
        raise RequestError("event must be Unicode text (no lone surrogates such as \\ud800)")
    if event in RESERVED_EVENTS:
        raise RequestError(f"event {event!r} is reserved by Socket.IO")
    return event


def check_data(data: Any) -> Any:
    """``data`` as every Socket.IO client can parse it: strict JSON (no ``NaN`` or
    ``Infinity``, which socket.io-client rejects as a parse error and drops the
    connection), at most ``MAX_DATA_DEPTH`` levels deep, no integer too long for
    Python to print, no lone surrogate (the queue message is UTF-8, which cannot
    carry one). The HTTP API, the emitter and the CLI refuse the same data.
    """
    _check_depth(data)
    try:
        text = json.dumps(data, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:  # ValueError: NaN / Infinity, an integer of over 4,300 digits
        raise RequestError(f"data must be plain JSON: {exc}") from None
    if not _is_utf8_text(text):
        raise RequestError("data must be Unicode text (no lone surrogates such as \\ud800)")
    return data


def _is_utf8_text(text: str) -> bool:
    """False for a string holding a lone surrogate, which JSON's ``\\ud800`` escape
    lets a caller send but UTF-8 (and so the queue envelope) cannot encode."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _check_depth(data: Any) -> None:
    """Level by level, without recursion, so a hostile depth cannot exhaust the stack here."""
    containers = [data]
    for _level in range(MAX_DATA_DEPTH):
        containers = [child for item in containers if isinstance(item, dict | list | tuple)
                      for child in (item.values() if isinstance(item, dict) else item)]
        if not any(isinstance(item, dict | list | tuple) for item in containers):
            return
    raise RequestError(f"data must not nest arrays and objects more than {MAX_DATA_DEPTH} levels deep")


def check_user_id(user_id: Any) -> str:
    checked = validate_user_id(user_id)
    if checked is None:
        raise RequestError("user_id must be 1-128 letters, digits or _.:@-")
    return checked


def validate_user_id(value: Any) -> str | None:
    """The user id if it is usable as a room name, else ``None``."""
    if isinstance(value, str) and USER_ID_PATTERN.fullmatch(value):
        return value
    return None
