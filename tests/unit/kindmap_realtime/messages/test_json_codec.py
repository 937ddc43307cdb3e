"""kindmap_realtime/messages/json_codec.py and the packets' codec over it (server/sio/packet_json.py):
orjson's speed, json's answers.

Every value and text here must come out as json (or, for Socket.IO packets,
python-engineio's json) makes it; the one documented exception is NaN.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from socketio import packet as sio_packet

from kindmap_realtime.errors import ErrorCode, error_payload
from kindmap_realtime.messages.json_codec import dumps_utf8, loads
from server.sio.packet_json import SocketIOJson
from server.sio.server import CodecPacket

NAVIGATION = {"t": 677.697394211, "step": 1, "seq": 42, "station": "City Hall", "line": 2,
              "instruction": "Take the elevator at exit 4 to platform 2", "accessible": True}
KOREAN = {"station": "시청", "instruction": "4번 출구 엘리베이터를 타세요"}
BIG = {"id": 123456789012345678901234567890, "negative": -(2**63) - 1}

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def compact(value: Any, *, ensure_ascii: bool) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=ensure_ascii)


@given(_json_values)
def test_socketio_dumps_writes_the_bytes_json_writes(value: Any) -> None:
    assert SocketIOJson.dumps(value, separators=(",", ":")) == compact(value, ensure_ascii=True)


@given(_json_values)
def test_dumps_utf8_writes_what_json_reads_back_as_the_same_value(value: Any) -> None:
    assert json.loads(dumps_utf8(value)) == value


@given(_json_values)
def test_loads_reads_what_json_reads(value: Any) -> None:
    for text in (compact(value, ensure_ascii=True), compact(value, ensure_ascii=False)):
        assert loads(text.encode()) == json.loads(text)
        assert loads(text) == json.loads(text)


@given(st.lists(st.floats(min_value=-1e-3, max_value=1e-3), max_size=8))
def test_socketio_dumps_writes_small_floats_as_json_does(value: list[float]) -> None:
    assert SocketIOJson.dumps(value, separators=(",", ":")) == compact(value, ensure_ascii=True)


@pytest.mark.parametrize("value", [NAVIGATION, KOREAN, BIG, {1: "integer key"}, {"lone": "\ud800"},
                                   [1.5e-05, 1e-7, -2.5e-9]],
                         ids=["navigation", "korean", "beyond-64-bits", "integer-key", "lone-surrogate",
                              "floats-under-1e-4"])
def test_socketio_dumps_matches_json_where_orjson_would_differ_or_refuse(value: Any) -> None:
    assert SocketIOJson.dumps(value, separators=(",", ":")) == compact(value, ensure_ascii=True)


@pytest.mark.parametrize("value", [NAVIGATION, KOREAN, BIG, {1: "integer key"}, {"small": 1.5e-05}],
                         ids=["navigation", "korean", "beyond-64-bits", "integer-key", "small-float"])
def test_dumps_utf8_reads_back_equal_to_what_json_writes(value: Any) -> None:
    assert json.loads(dumps_utf8(value)) == json.loads(compact(value, ensure_ascii=False))


def test_dumps_utf8_keeps_non_ascii_text_as_utf8_like_json_without_ascii_escapes() -> None:
    assert dumps_utf8(KOREAN) == compact(KOREAN, ensure_ascii=False).encode()


def test_integers_beyond_64_bits_are_read_exactly_not_as_floats() -> None:
    text = compact(BIG, ensure_ascii=True)
    assert loads(text.encode()) == BIG
    assert type(loads(text)["id"]) is int


@pytest.mark.parametrize("text", ['[NaN]', '"\\ud800"', "[1e400]", '{"a":1,"a":2}'],
                         ids=["nan", "lone-surrogate-escape", "overflowing-float", "duplicate-key"])
def test_text_orjson_refuses_or_reads_otherwise_is_read_as_json_reads_it(text: str) -> None:
    expected, got = json.loads(text), loads(text)
    assert repr(got) == repr(expected)  # NaN != NaN; their reprs are equal


@pytest.mark.parametrize("text", ["", "[1] x", "{", "\ufeff[1]"], ids=["empty", "trailing", "cut", "bom"])
def test_text_json_refuses_is_refused_with_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        loads(text)


def test_what_is_not_text_is_refused_as_json_refuses_it() -> None:
    with pytest.raises(TypeError):
        loads(None)  # type: ignore[arg-type]


def test_socketio_loads_refuses_integers_of_over_100_digits_as_engineio_does() -> None:
    with pytest.raises(ValueError, match="too large"):
        SocketIOJson.loads("[" + "9" * 101 + "]")


def test_values_json_cannot_write_are_refused_as_before() -> None:
    with pytest.raises(TypeError):
        SocketIOJson.dumps({"at": datetime.now(UTC)})
    with pytest.raises(TypeError):
        dumps_utf8({"at": datetime.now(UTC)})


def test_nan_and_infinity_are_written_as_null_as_javascript_does() -> None:
    assert SocketIOJson.dumps([math.nan, math.inf]) == "[null,null]"
    assert dumps_utf8([math.nan]) == b"[null]"


@pytest.mark.parametrize("message", ["unknown event 'nav'", "unknown event '길찾기'"], ids=["ascii", "korean"])
def test_an_error_event_packet_is_byte_for_byte_what_stock_python_socketio_sends(message: str) -> None:
    data = ["error", error_payload(ErrorCode.UNKNOWN_EVENT, message)]
    ours = CodecPacket(sio_packet.EVENT, data=data).encode()
    assert ours == sio_packet.Packet(sio_packet.EVENT, data=data).encode()


@pytest.mark.parametrize("value", ["\x7f", {"stop": "a\x7fb"}, ["\x1f", "\x7f"]])
def test_socketio_dumps_escapes_del_as_json_does(value: Any) -> None:
    assert SocketIOJson.dumps(value, separators=(",", ":")) == compact(value, ensure_ascii=True)
