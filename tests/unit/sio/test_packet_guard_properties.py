"""server/sio/packet_guard.py, property-based: whatever a client sends is answered or closed.

Hypothesis writes Socket.IO packets -- packet types, attachment counts, namespaces, ack
ids, event names, nested arguments with binary placeholders, sizes around the payload
limit, trailing binary frames -- and a raw client sends each over WebSocket or
long-polling to one live replica. Every packet must get an answer (an error in the
schema, or the pong a valid ping earns) or have its session closed, and a healthy
client on the same replica must keep getting its pongs and nothing else.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kindmap_realtime.errors import ErrorCode
from tests.helpers.clients import MakeClient, RecordingClient, connected, make_token
from tests.helpers.in_process import Replica, StartReplica
from tests.helpers.payloads import assert_error_payload
from tests.helpers.raw_client import RawClient

MAX_PAYLOAD = 1024
CODES = {code.value for code in ErrorCode}

_text = st.text(st.characters(blacklist_characters="\x1e", blacklist_categories=["Cs"]), max_size=12)
_names = st.sampled_from(["ping", "*", "connect", "disconnect", "message", "error", "pong", "", "__proto__"]) | _text
_placeholder = st.builds(lambda num, extra: {"_placeholder": True, "num": num, **extra},
                         st.integers(-2, 12) | st.just("0"), st.dictionaries(_text, st.integers(), max_size=1))
_leaf = st.none() | st.booleans() | st.integers() | _text | _placeholder
_json = st.recursive(_leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
                     max_leaves=12)
_big = st.integers(MAX_PAYLOAD - 64, MAX_PAYLOAD * 2).map(lambda n: "x" * n)


@st.composite
def packets(draw: st.DrawFn) -> str:
    """One Socket.IO packet as text: mostly well-formed enough to reach the guard's checks."""
    if draw(st.integers(0, 9)) == 0:
        return draw(_text)  # garbage
    kind = draw(st.sampled_from("0123456") | st.sampled_from("789x"))
    count = draw(st.sampled_from(["", "0-", "1-", "2-", "10-", "11-", "999999999-"])) if kind in "56" else ""
    namespace = draw(st.sampled_from(["", "", "", "/admin,", "/,", "/x?y=1,"]))
    ack_id = draw(st.sampled_from(["", "", "1", "0", "42", "123456789012"]))
    args = draw(st.lists(_json | _big, max_size=3))
    body = json.dumps([draw(_names), *args]) if kind in "0134" or draw(st.booleans()) else json.dumps(args)
    if kind in "01":
        body = draw(st.sampled_from(["", json.dumps({"token": "forged"}), body]))
    return f"{kind}{count}{namespace}{ack_id}{body}"


def _is_plain_disconnect(packet: str) -> bool:
    """``1`` or ``1/,``: the client leaves ``/``, which needs no answer."""
    return packet in ("1", "1/,")


async def _answered(raw: RawClient, before: int) -> None:
    await raw.wait_for(lambda: raw.closed or len(raw.packets) > before, what="an answer")
    for packet in raw.packets[before:]:
        if packet.startswith('2["error"') or packet.startswith("4"):
            error = raw.errors()[-1]
            assert error["code"] in CODES
            assert_error_payload(error, error["code"])


@pytest.fixture
async def target(start_replica: StartReplica, make_client: MakeClient) -> tuple[Replica, RecordingClient]:
    # The healthy client pings once per example: limits that let it.
    replica = await start_replica(max_payload_bytes=MAX_PAYLOAD, handshake_burst=100_000,
                                  rate_limit_events_per_second=1000, rate_limit_burst=1000)
    healthy = await connected(make_client, replica, "healthy")
    return replica, healthy


@pytest.mark.parametrize("transport", ["websocket", "polling"])
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(packet=packets(), frames=st.lists(st.binary(max_size=MAX_PAYLOAD * 2), max_size=3))
async def test_every_packet_is_answered_or_closed_and_a_healthy_client_keeps_working(
        target: tuple[Replica, RecordingClient], transport: str, packet: str, frames: list[bytes]) -> None:
    replica, healthy = target
    raw = RawClient(replica.url, transport=transport)
    try:
        await raw.open()
        assert (await raw.connect({"token": make_token("fuzzer")})).startswith("0")
        await raw.wait_for(lambda: raw.events("connected"), what="connected")
        before = len(raw.packets)

        await raw.send(packet, *frames)

        if not _is_plain_disconnect(packet):
            await _answered(raw, before)
    finally:
        await raw.close()
    pongs = len(healthy.received("pong"))
    await healthy.sio.emit("ping")
    await healthy.wait_for("pong", count=pongs + 1)
    assert healthy.received("error") == [] and healthy.disconnects == []
