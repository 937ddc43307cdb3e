"""The error payload schema every test checks the same way (events, connect_error, HTTP)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any


def assert_error_payload(payload: Any, code: str) -> None:
    assert isinstance(payload, dict), payload
    assert set(payload) == {"type", "code", "message", "timestamp"}
    assert payload["type"] == "error"
    assert payload["code"] == code
    assert isinstance(payload["message"], str) and payload["message"]
    assert payload["timestamp"].endswith("+00:00")
    assert datetime.fromisoformat(payload["timestamp"]).utcoffset() == timedelta(0)
