"""JSON on the per-message path: orjson wherever it gives json's answer, json elsewhere.

Every message is decoded from the queue, encoded as a Socket.IO packet and, on the
way out of an emitter, encoded as a queue envelope; orjson does each in a fraction
of json's time (``python -m bench.micro json``). Where the two disagree, json's
behaviour is kept by handing the value to it:

- integers beyond 64 bits: orjson refuses to write them and reads them as floats,
  losing digits, so text holding a run of 19 digits or more is read by json;
- text orjson will not read (``NaN``, a lone ``\\ud800`` escape, ``1e400``) is read by
  json, which accepts or refuses it as before;
- values orjson will not write (lone surrogates, non-string keys, datetimes,
  dataclasses) are written by json, which writes or refuses them as before.

One difference stays: orjson writes ``NaN`` and ``Infinity`` as ``null``, as
JavaScript's ``JSON.stringify`` does; json writes ``NaN``, which socket.io-client
cannot parse. Emitters and the HTTP API refuse such data before it is sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson

__all__ = ["dumps_like_json", "dumps_utf8", "is_json", "loads"]

# Types orjson would serialise but json refuses: refused by orjson too, so json decides.
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
# Maps every digit to "0" and every other byte to " ": a long digit run becomes a run of "0".
_DIGITS_ONLY = bytes(0x30 if 0x30 <= i <= 0x39 else 0x20 for i in range(256))
# 19 digits: the shortest integer that may not fit in 64 bits (2**63 has 19).
_LONG_NUMBER = b"0" * 19


def _has_long_number(data: bytes | str) -> bool:
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    return _LONG_NUMBER in raw.translate(_DIGITS_ONLY)


def loads(data: bytes | str, fallback: Callable[[bytes | str], Any] = json.loads) -> Any:
    """``fallback(data)``'s value (and its exception, for text it refuses), read by orjson where it agrees."""
    if not isinstance(data, str | bytes) or _has_long_number(data):
        return fallback(data)  # also its TypeError for what is not text
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return fallback(data)


def dumps_utf8(obj: Any) -> bytes:
    """``json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()``, by orjson where it can."""
    try:
        return orjson.dumps(obj, option=_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def is_json(obj: Any) -> bool:
    """True when orjson writes ``obj``: then nothing in it is ``bytes``, ``bytearray`` or ``memoryview``."""
    try:
        orjson.dumps(obj, option=_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError
        return False
    return True


def dumps_like_json(obj: Any, **kwargs: Any) -> str:
    """``json.dumps(obj, **kwargs)`` to the character (non-ASCII text as ``\\u`` escapes), by
    orjson where the two come out the same. Where they might not, json writes: text that is
    not ASCII (orjson keeps it as UTF-8) or holds DEL (json escapes it as ``\u007f``, orjson
    does not), and text holding ``e-`` or ``0.0000``, as orjson writes a float under 1e-4
    (``1e-7`` or ``0.00001``, where json writes ``1e-07`` and ``1e-05``); every float
    formatted otherwise comes out the same from both."""
    try:
        text = orjson.dumps(obj, option=_OPTIONS).decode()
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(obj, **kwargs)
    if text.isascii() and "\x7f" not in text and "e-" not in text and "0.0000" not in text:
        return text
    return json.dumps(obj, **kwargs)
