"""The queue message ("envelope") format: encoding, and validation on receipt.

The envelope is python-socketio's own pub/sub message (a JSON object with a
``method`` and its fields) plus one method of ours, ``disconnect_room``. Anything
taken from the channel passes :func:`decode` before it can touch a socket: Redis
is shared infrastructure, and one bad publisher must not crash or confuse the
replicas.

With a signing key (``QUEUE_SIGNING_KEY``) every envelope travels as
``<hex HMAC-SHA256 of the body>.<JSON body>``, and one without a valid signature
is dropped: whoever can reach Redis still cannot make replicas emit or disconnect.
A signed body also carries the sender's clock (``ts``, ms) and a random ``id``, so
that a recorded envelope cannot be published again later (``replay.ReplayGuard``).
"""

from __future__ import annotations

import hmac
import os
import re
import time
from typing import Any

from ..errors import InvalidEnvelopeError
from . import json_codec

__all__ = ["METHODS", "decode", "encode", "sample"]

_NONE = type(None)
_STR_OR_LIST = (str, list, _NONE)

# For each method: field -> (allowed types, required).
METHODS: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "emit": {
        "event": ((str,), True),
        "data": ((list,), True),
        "namespace": ((str,), True),
        "room": (_STR_OR_LIST, False),
        "skip_sid": (_STR_OR_LIST, False),
        "callback": ((list, _NONE), False),
        "binary": ((bool,), False),
    },
    "disconnect": {"sid": ((str,), True), "namespace": ((str,), True)},
    "enter_room": {"sid": ((str,), True), "namespace": ((str,), True), "room": ((str,), True)},
    "leave_room": {"sid": ((str,), True), "namespace": ((str,), True), "room": ((str,), True)},
    "close_room": {"namespace": ((str,), True), "room": ((str,), True)},
    "callback": {
        "sid": ((str,), True),
        "namespace": ((str,), True),
        "id": ((int,), True),
        "args": ((list,), True),
    },
    "disconnect_room": {
        "namespace": ((str,), True),
        "room": ((str,), True),
        "skip_sid": ((str, _NONE), False),
        "notice": ((dict, _NONE), False),
        "user": ((str, _NONE), False),  # only sockets of this user (a kick of one socket id)
    },
    # An emitter asking the replicas to prove they hold its signing key (backends/redis/key_check.py).
    "key_probe": {"nonce": ((str,), True)},
}

SAMPLE_BYTES = 200
_NONCE = re.compile(r"[0-9a-f]{16,64}")


def encode(message: dict[str, Any], signing_key: bytes | None = None) -> bytes:
    """Serialise an envelope for the channel (compact JSON, UTF-8, non-ASCII kept).

    Signed, it gains ``ts`` (now, in ms) and a random ``id`` under the signature.
    """
    if signing_key is None:
        return _json(message)
    body = _json({**message, "ts": int(time.time() * 1000), "id": os.urandom(9).hex()})
    return _signature(signing_key, body) + b"." + body


def _json(message: dict[str, Any]) -> bytes:
    return json_codec.dumps_utf8(message)


def decode(raw: bytes | str, signing_key: bytes | None = None) -> dict[str, Any]:
    """Parse and validate a message taken from the channel.

    Raises ``InvalidEnvelopeError`` whose ``reason`` is ``bad_signature``,
    ``invalid_json``, ``invalid_envelope`` or ``unknown_method``.
    """
    if signing_key is not None:
        raw = _verified_body(raw, signing_key)
    try:
        message = json_codec.loads(raw)
    except (ValueError, TypeError, RecursionError):  # RecursionError: absurdly nested input
        raise InvalidEnvelopeError("not JSON", reason="invalid_json") from None
    if not isinstance(message, dict):
        raise InvalidEnvelopeError("not a JSON object", reason="invalid_envelope")
    method = message.get("method")
    host_id = message.get("host_id")
    if not isinstance(method, str):
        raise InvalidEnvelopeError("missing or non-string 'method'", reason="invalid_envelope")
    if not isinstance(host_id, str) or not host_id:
        raise InvalidEnvelopeError("missing or non-string 'host_id'", reason="invalid_envelope")
    fields = METHODS.get(method)
    if fields is None:
        raise InvalidEnvelopeError(f"unknown method {method[:40]!r}", reason="unknown_method")
    for name, (types, required) in fields.items():
        if name not in message:
            if required:
                raise InvalidEnvelopeError(f"{method}: missing field {name!r}", reason="invalid_envelope")
            continue
        value = message[name]
        # bool is an int subclass: reject it where an int is expected.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise InvalidEnvelopeError(f"{method}: field {name!r} has the wrong type", reason="invalid_envelope")
        if isinstance(value, list) and name in ("room", "skip_sid") and not all(isinstance(v, str) for v in value):
            raise InvalidEnvelopeError(f"{method}: field {name!r} must hold strings", reason="invalid_envelope")
        if name == "room" and value == []:
            raise InvalidEnvelopeError(f"{method}: field 'room' is an empty list", reason="invalid_envelope")
    if method == "key_probe" and not _NONCE.fullmatch(message["nonce"]):
        raise InvalidEnvelopeError("key_probe: 'nonce' must be 16-64 hex digits", reason="invalid_envelope")
    if method == "emit" and message.get("callback") is not None and len(message["callback"]) != 3:
        raise InvalidEnvelopeError("emit: 'callback' must have three items", reason="invalid_envelope")
    return message


def _signature(key: bytes, body: bytes) -> bytes:
    return hmac.digest(key, body, "sha256").hex().encode()


def _verified_body(raw: bytes | str, key: bytes) -> bytes:
    data = raw.encode() if isinstance(raw, str) else raw
    signature, dot, body = data.partition(b".")
    if not dot or not hmac.compare_digest(signature, _signature(key, body)):
        raise InvalidEnvelopeError("missing or wrong signature", reason="bad_signature")
    return body


def sample(raw: bytes | str) -> str:
    """A short, printable excerpt of a bad message for a log line."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return text[:SAMPLE_BYTES] + ("..." if len(text) > SAMPLE_BYTES else "")
