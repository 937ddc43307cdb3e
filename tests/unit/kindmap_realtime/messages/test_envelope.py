"""The queue envelope: encoding, validation on receipt, and log samples."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest

from kindmap_realtime.errors import InvalidEnvelopeError
from kindmap_realtime.messages.envelope import METHODS, SAMPLE_BYTES, decode, encode, sample

HOST = "0123456789abcdef"

# One valid message per method, every optional field present.
VALID: dict[str, dict[str, Any]] = {
    "emit": {"method": "emit", "event": "route_update", "data": [{"eta": 12}], "namespace": "/",
             "room": "user:alice", "skip_sid": None, "callback": None, "binary": False, "host_id": HOST},
    "disconnect": {"method": "disconnect", "sid": "s1", "namespace": "/", "host_id": HOST},
    "enter_room": {"method": "enter_room", "sid": "s1", "namespace": "/", "room": "r", "host_id": HOST},
    "leave_room": {"method": "leave_room", "sid": "s1", "namespace": "/", "room": "r", "host_id": HOST},
    "close_room": {"method": "close_room", "namespace": "/", "room": "r", "host_id": HOST},
    "callback": {"method": "callback", "sid": "s1", "namespace": "/", "id": 7, "args": ["ok", 1],
                 "host_id": HOST},
    "disconnect_room": {"method": "disconnect_room", "namespace": "/", "room": "user:alice",
                        "skip_sid": "s2", "notice": {"code": "DUPLICATE_CONNECTION"}, "host_id": HOST},
    "key_probe": {"method": "key_probe", "nonce": "0123456789abcdef0123456789abcdef", "host_id": HOST},
}


def with_fields(kind: str, /, **changes: Any) -> dict[str, Any]:
    message = copy.deepcopy(VALID[kind])
    message.update(changes)
    return message


def without(method: str, field: str) -> dict[str, Any]:
    message = copy.deepcopy(VALID[method])
    del message[field]
    return message


def test_every_method_has_a_valid_sample_here() -> None:
    assert set(VALID) == set(METHODS)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_encode_then_decode_round_trips_every_method(method: str) -> None:
    assert decode(encode(VALID[method])) == VALID[method]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_message_with_only_required_fields_is_accepted(method: str) -> None:
    required = {name for name, (_types, is_required) in METHODS[method].items() if is_required}
    message = {k: v for k, v in VALID[method].items() if k in required | {"method", "host_id"}}
    assert decode(encode(message)) == message


@pytest.mark.parametrize("nonce", ["short", "0123456789ABCDEF", "g" * 32, "0" * 65])
def test_key_probe_with_a_nonce_that_is_not_16_to_64_hex_digits_is_invalid(nonce: str) -> None:
    with pytest.raises(InvalidEnvelopeError) as caught:
        decode(encode(with_fields("key_probe", nonce=nonce)))
    assert caught.value.reason == "invalid_envelope"


def test_encode_is_compact_utf8_json_keeping_non_ascii_text() -> None:
    message = with_fields("emit", data=[{"text": "300m 앞에서 우회전", "note": 'a "q" \\ / \n 🚗'}])
    data = encode(message)
    assert isinstance(data, bytes)
    assert "300m 앞에서 우회전".encode() in data
    assert "🚗".encode() in data
    assert b"\\u" not in data  # nothing escaped to ASCII
    assert b", " not in data and b": " not in data  # compact separators
    assert json.loads(data.decode("utf-8")) == message


def test_decode_accepts_str_as_well_as_bytes() -> None:
    assert decode(encode(VALID["close_room"]).decode()) == VALID["close_room"]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(b"{not json", "invalid_json", id="broken-json"),
        pytest.param(b"", "invalid_json", id="empty-bytes"),
        pytest.param(b"\xff\xfe\x00garbage", "invalid_json", id="not-utf8"),
        pytest.param(None, "invalid_json", id="none-input"),
        pytest.param(b"[1, 2]", "invalid_envelope", id="array"),
        pytest.param(b"[" * 100_000, "invalid_json", id="absurdly-nested"),
        pytest.param(b'"emit"', "invalid_envelope", id="string"),
        pytest.param(b"null", "invalid_envelope", id="null"),
        pytest.param(b"42", "invalid_envelope", id="number"),
        pytest.param(encode(without("emit", "method")), "invalid_envelope", id="missing-method"),
        pytest.param(encode(with_fields("emit", method=5)), "invalid_envelope", id="non-string-method"),
        pytest.param(encode(without("emit", "host_id")), "invalid_envelope", id="missing-host-id"),
        pytest.param(encode(with_fields("emit", host_id="")), "invalid_envelope", id="empty-host-id"),
        pytest.param(encode(with_fields("emit", host_id=12)), "invalid_envelope", id="non-string-host-id"),
        pytest.param(encode(with_fields("emit", method="shutdown_everything")), "unknown_method",
                     id="unknown-method"),
        pytest.param(encode(without("emit", "event")), "invalid_envelope", id="emit-missing-event"),
        pytest.param(encode(without("emit", "data")), "invalid_envelope", id="emit-missing-data"),
        pytest.param(encode(with_fields("emit", event=3)), "invalid_envelope", id="emit-event-not-str"),
        pytest.param(encode(with_fields("emit", data={"a": 1})), "invalid_envelope", id="emit-data-not-list"),
        pytest.param(encode(with_fields("emit", namespace=None)), "invalid_envelope", id="emit-namespace-null"),
        pytest.param(encode(with_fields("emit", room=7)), "invalid_envelope", id="emit-room-int"),
        pytest.param(encode(with_fields("emit", room=["user:a", 7])), "invalid_envelope",
                     id="emit-room-list-of-non-strings"),
        pytest.param(encode(with_fields("emit", room=[])), "invalid_envelope", id="emit-room-empty-list"),
        pytest.param(encode(with_fields("emit", skip_sid=[None])), "invalid_envelope",
                     id="emit-skip-sid-list-of-non-strings"),
        pytest.param(encode(with_fields("emit", binary=1)), "invalid_envelope", id="emit-binary-int-not-bool"),
        pytest.param(encode(with_fields("emit", callback="r/1")), "invalid_envelope", id="emit-callback-str"),
        pytest.param(encode(with_fields("emit", callback=["room", "/"])), "invalid_envelope",
                     id="emit-callback-two-items"),
        pytest.param(encode(with_fields("emit", callback=["room", "/", 1, 2])), "invalid_envelope",
                     id="emit-callback-four-items"),
        pytest.param(encode(with_fields("callback", id=True)), "invalid_envelope", id="callback-id-bool-not-int"),
        pytest.param(encode(with_fields("callback", id="7")), "invalid_envelope", id="callback-id-str"),
        pytest.param(encode(with_fields("callback", args="ok")), "invalid_envelope", id="callback-args-str"),
        pytest.param(encode(without("disconnect", "sid")), "invalid_envelope", id="disconnect-missing-sid"),
        pytest.param(encode(without("enter_room", "room")), "invalid_envelope", id="enter-room-missing-room"),
        pytest.param(encode(with_fields("leave_room", room=["r"])), "invalid_envelope",
                     id="leave-room-room-list"),
        pytest.param(encode(with_fields("close_room", room=None)), "invalid_envelope", id="close-room-room-null"),
        pytest.param(encode(with_fields("disconnect_room", notice="bye")), "invalid_envelope",
                     id="disconnect-room-notice-str"),
        pytest.param(encode(with_fields("disconnect_room", skip_sid=["s1"])), "invalid_envelope",
                     id="disconnect-room-skip-sid-list"),
    ],
)
def test_decode_rejects_bad_message_with_its_reason(raw: Any, reason: str) -> None:
    with pytest.raises(InvalidEnvelopeError) as caught:
        decode(raw)
    assert caught.value.reason == reason
    assert isinstance(caught.value, ValueError)


def test_bool_is_accepted_where_bool_is_the_declared_type() -> None:
    assert decode(encode(with_fields("emit", binary=True)))["binary"] is True


def test_int_zero_is_accepted_as_callback_id_but_false_is_not() -> None:
    assert decode(encode(with_fields("callback", id=0)))["id"] == 0
    with pytest.raises(InvalidEnvelopeError):
        decode(encode(with_fields("callback", id=False)))


@pytest.mark.parametrize(
    ("field", "value"),
    [("room", None), ("room", "user:alice"), ("room", ["user:a", "user:b"]),
     ("skip_sid", "s1"), ("skip_sid", ["s1", "s2"]), ("callback", ["user:alice", "/", 3])],
)
def test_emit_accepts_every_declared_shape_of_optional_fields(field: str, value: Any) -> None:
    assert decode(encode(with_fields("emit", **{field: value})))[field] == value


def test_unknown_method_error_message_truncates_the_method_name() -> None:
    with pytest.raises(InvalidEnvelopeError) as caught:
        decode(encode(with_fields("emit", method="x" * 500)))
    assert "x" * 40 in caught.value.message
    assert "x" * 41 not in caught.value.message


def test_extra_unknown_fields_are_kept() -> None:
    message = with_fields("close_room", trace_id="abc")
    assert decode(encode(message))["trace_id"] == "abc"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(b"short", "short", id="short-bytes"),
        pytest.param("짧은 문자열", "짧은 문자열", id="str-input"),
        pytest.param(b"a" * SAMPLE_BYTES, "a" * SAMPLE_BYTES, id="exactly-the-limit"),
        pytest.param(b"b" * (SAMPLE_BYTES + 1), "b" * SAMPLE_BYTES + "...", id="one-over-the-limit"),
        pytest.param(b"c" * 10_000, "c" * SAMPLE_BYTES + "...", id="long"),
        pytest.param(b"ok\xffok", "ok\ufffdok", id="invalid-utf8-replaced"),
    ],
)
def test_sample_is_a_short_printable_excerpt(raw: bytes | str, expected: str) -> None:
    assert sample(raw) == expected



KEY = b"queue-signing-key-for-unit-tests-0123456789"


def test_signed_envelope_round_trips_with_the_same_key_and_gains_a_time_and_an_id() -> None:
    message = with_fields("emit")
    before = int(time.time() * 1000)
    decoded = decode(encode(message, KEY), KEY)
    assert {k: v for k, v in decoded.items() if k not in ("ts", "id")} == message
    assert before <= decoded["ts"] <= int(time.time() * 1000)
    assert isinstance(decoded["id"], str) and decoded["id"] != decode(encode(message, KEY), KEY)["id"]


def test_unsigned_envelope_carries_no_time_or_id() -> None:
    assert decode(encode(with_fields("emit"))) == with_fields("emit")


@pytest.mark.parametrize("raw", [
    pytest.param(encode(with_fields("emit")), id="unsigned"),
    pytest.param(encode(with_fields("emit"), b"another-key-of-enough-length-0123456789"), id="wrong-key"),
    pytest.param(encode(with_fields("emit"), KEY).replace(b'"event"', b'"evil" '), id="tampered-body"),
    pytest.param(encode(with_fields("emit"), KEY).split(b".", 1)[0], id="signature-only"),
    pytest.param("not-hex." + encode(with_fields("emit")).decode(), id="str-with-bad-signature"),
])
def test_decode_with_a_key_drops_anything_not_signed_with_it(raw: bytes | str) -> None:
    with pytest.raises(InvalidEnvelopeError) as caught:
        decode(raw, KEY)
    assert caught.value.reason == "bad_signature"


def test_signed_envelope_is_not_mistaken_for_json_by_an_unkeyed_reader() -> None:
    with pytest.raises(InvalidEnvelopeError) as caught:
        decode(encode(with_fields("emit"), KEY))
    assert caught.value.reason == "invalid_json"
