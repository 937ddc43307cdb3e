"""server/sio/packet_guard.py: hostile packets from a raw client, against in-process replicas.

A raw client (tests/helpers/raw_client.py) sends what no real client would; every
test checks the sender's answer in the error schema and that a healthy socket is
untouched. To show that something did not arrive, a later marker is awaited first.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
import socketio

from kindmap_realtime.messages.rooms import user_room
from server.http.app_keys import SIO
from server.sio.packet_guard import HARD_CAP_FACTOR, MAX_ATTACHMENTS
from tests.helpers.clients import MakeClient, RecordingClient, connected, make_token
from tests.helpers.in_process import Replica, StartReplica, sample
from tests.helpers.payloads import assert_error_payload
from tests.helpers.raw_client import OpenRaw, RawClient
from tests.helpers.waiting import eventually

TRANSPORTS = pytest.mark.parametrize("transport", ["websocket", "polling"])


async def joined(open_raw: OpenRaw, replica: Replica, user_id: str = "mallory", *,
                 transport: str = "websocket") -> RawClient:
    raw = await open_raw(replica.url, transport=transport)
    answer = await raw.connect({"token": make_token(user_id)})
    assert answer.startswith("0"), answer
    return raw


async def pinged(raw: RawClient, count: int = 1) -> None:
    """Send a ping and await its pong: the socket still works and has read all before it."""
    await raw.send('2["ping"]')
    await raw.wait_for(lambda: len(raw.events("pong")) >= count, what=f"pong #{count}")


def codes(raw: RawClient) -> list[str]:
    return [error["code"] for error in raw.errors()]


# --- 1: an event named "*" ----------------------------------------------------------


@TRANSPORTS
@pytest.mark.parametrize("target", ["user:bob", None])
async def test_event_named_star_is_answered_to_the_sender_only(start_replica: StartReplica, make_client: MakeClient,
                                                               open_raw: OpenRaw, transport: str,
                                                               target: str | None) -> None:
    replica = await start_replica()
    bob = await connected(make_client, replica, "bob")
    attacker = await joined(open_raw, replica, transport=transport)

    await attacker.send(f'2["*",{json.dumps(target)}]')
    await pinged(attacker)
    await replica.app[SIO].emit("marker", {}, room=user_room("bob"))
    await bob.wait_for("marker")

    assert bob.received("error") == []
    assert codes(attacker) == ["UNKNOWN_EVENT"]
    assert_error_payload(attacker.errors()[0], "UNKNOWN_EVENT")


@pytest.mark.parametrize("event", ["*", "connect", "disconnect", "message", "__proto__"])
async def test_no_client_chosen_name_reaches_a_handler(start_replica: StartReplica, open_raw: OpenRaw,
                                                       event: str) -> None:
    replica = await start_replica()
    attacker = await joined(open_raw, replica)

    await attacker.send(f'2[{json.dumps(event)},"user:bob",{{"token":"x"}}]')
    await pinged(attacker)

    assert codes(attacker) == ["UNKNOWN_EVENT"]
    assert sample(replica, "kindmap_client_packets_refused_total", code="UNKNOWN_EVENT") == 1


@pytest.mark.parametrize("packet", ['1{"token":"x"}', "17", '0{"token":"x"}', '3["late"]', "3"])
async def test_lifecycle_packet_with_unexpected_parts_gets_invalid_parameters(
        start_replica: StartReplica, open_raw: OpenRaw, packet: str) -> None:
    replica = await start_replica()
    raw = await joined(open_raw, replica)

    await raw.send(packet)
    await pinged(raw)

    assert codes(raw) == ["INVALID_PARAMETERS"]


@TRANSPORTS
@pytest.mark.parametrize("packet", ["true", "null", "1.5", "[1]", '{"a": 1}'])
async def test_a_message_that_is_json_rather_than_a_packet_gets_invalid_parameters(
        start_replica: StartReplica, open_raw: OpenRaw, transport: str, packet: str) -> None:
    """Over long-polling python-engineio hands such a message over decoded (``4true`` as ``True``)."""
    replica = await start_replica()
    raw = await joined(open_raw, replica, transport=transport)

    await raw.send(packet)
    await pinged(raw)

    assert codes(raw) == ["INVALID_PARAMETERS"]


# --- 2: binary attachments ------------------------------------------------------------


async def test_header_announcing_too_many_attachments_is_answered_then_closed(
        start_replica: StartReplica, make_client: MakeClient, open_raw: OpenRaw) -> None:
    replica = await start_replica()
    alice = await connected(make_client, replica, "alice")
    raw = await joined(open_raw, replica)

    await raw.send('5999999999-["ping",{"_placeholder":true,"num":0}]')
    await raw.wait_closed()

    assert codes(raw) == ["INVALID_PARAMETERS"]
    assert str(MAX_ATTACHMENTS) in raw.errors()[0]["message"]
    assert sample(replica, "kindmap_client_sessions_closed_total", reason="too_many_attachments") == 1
    await alice.sio.emit("ping")
    await alice.wait_for("pong")


@TRANSPORTS
async def test_attachments_over_the_payload_limit_get_payload_too_large_once(
        start_replica: StartReplica, open_raw: OpenRaw, transport: str) -> None:
    replica = await start_replica(max_payload_bytes=1024)
    raw = await joined(open_raw, replica, transport=transport)

    await raw.send(f'5{MAX_ATTACHMENTS}-["upload",' + ",".join(
        f'{{"_placeholder":true,"num":{i}}}' for i in range(MAX_ATTACHMENTS)) + "]")
    for _ in range(MAX_ATTACHMENTS):
        await raw.send(b"x" * 300)
    await pinged(raw)

    assert codes(raw) == ["UNKNOWN_EVENT", "PAYLOAD_TOO_LARGE"]
    assert not raw.closed


async def test_attachments_past_the_hard_cap_close_the_connection(start_replica: StartReplica,
                                                                  open_raw: OpenRaw) -> None:
    replica = await start_replica(max_payload_bytes=1024)
    raw = await joined(open_raw, replica)
    frame = b"x" * 1024

    await raw.send(f'5{MAX_ATTACHMENTS}-["upload",{{"_placeholder":true,"num":0}}]')
    for _ in range(HARD_CAP_FACTOR + 1):
        await raw.send(frame)

    await raw.wait_closed()
    assert sample(replica, "kindmap_client_sessions_closed_total", reason="payload_hard_cap") == 1


@pytest.mark.parametrize("header", [
    pytest.param('51-["ping",{"_placeholder":true,"num":5}]', id="num-out-of-range"),
    pytest.param('51-["ping",{"_placeholder":true,"num":"0"}]', id="num-not-int"),
    pytest.param('51-["ping",{"_placeholder":true}]', id="num-missing"),
    pytest.param('51-["ping",{"_placeholder":true,"num":0,"extra":1}]', id="extra-key"),
])
async def test_malformed_placeholder_gets_invalid_parameters_and_the_socket_is_not_stuck(
        start_replica: StartReplica, open_raw: OpenRaw, header: str) -> None:
    replica = await start_replica()
    raw = await joined(open_raw, replica)

    await raw.send(header, b"attachment")
    await pinged(raw)
    await pinged(raw, 2)

    assert codes(raw) == ["INVALID_PARAMETERS"]


async def test_text_packet_where_an_attachment_was_announced_is_still_handled(
        start_replica: StartReplica, open_raw: OpenRaw) -> None:
    replica = await start_replica()
    raw = await joined(open_raw, replica)

    await raw.send('52-["upload",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]', b"one")
    await pinged(raw)

    assert codes(raw) == ["UNKNOWN_EVENT", "INVALID_PARAMETERS"]


async def test_binary_frame_that_no_packet_announced_gets_invalid_parameters(
        start_replica: StartReplica, open_raw: OpenRaw) -> None:
    replica = await start_replica()
    raw = await joined(open_raw, replica)

    await raw.send(b"stray")
    await pinged(raw)

    assert codes(raw) == ["INVALID_PARAMETERS"]


async def test_ping_with_binary_data_is_refused_cleanly(start_replica: StartReplica, make_client: MakeClient) -> None:
    replica = await start_replica()
    alice = await connected(make_client, replica, "alice")

    await alice.sio.emit("ping", {"blob": b"\x00\x01"})
    error = await alice.wait_for("error")
    await alice.sio.emit("ping", {"id": 2})

    assert (await alice.wait_for("pong"))["id"] == 2
    assert_error_payload(error, "INVALID_PARAMETERS")
    assert "binary" in error["message"]


# --- 5: rate limits ---------------------------------------------------------------------


@TRANSPORTS
async def test_flood_beyond_the_burst_is_dropped_and_answered_rate_limited_not_per_packet(
        start_replica: StartReplica, open_raw: OpenRaw, transport: str) -> None:
    replica = await start_replica(rate_limit_events_per_second=0.1, rate_limit_burst=6)
    raw = await joined(open_raw, replica, transport=transport)  # the CONNECT took one token

    await raw.send(*['2["ping"]'] * 50)
    await eventually(lambda: sample(replica, "kindmap_client_packets_refused_total", code="RATE_LIMITED") == 45)
    await raw.wait_for(lambda: raw.errors(), what="RATE_LIMITED")

    assert len(raw.events("pong")) == 5
    assert set(codes(raw)) == {"RATE_LIMITED"} and len(codes(raw)) <= 2  # at most one a second
    assert_error_payload(raw.errors()[0], "RATE_LIMITED")


async def test_socket_over_its_limit_for_consecutive_seconds_is_disconnected(
        start_replica: StartReplica, make_client: MakeClient) -> None:
    replica = await start_replica(rate_limit_events_per_second=0.1, rate_limit_burst=2, rate_limit_strikes=2)
    bob = await connected(make_client, replica, "bob")
    alice = await connected(make_client, replica, "alice")

    async def flood() -> bool:
        if alice.sio.connected:
            await alice.sio.emit("ping")
        return bool(alice.disconnects)

    await eventually(flood, timeout=10, what="the flooding socket to be disconnected")

    assert [e["code"] for e in alice.received("error")] == ["RATE_LIMITED", "RATE_LIMITED"]
    assert alice.disconnects == ["server disconnect"]  # told to go, so it does not reconnect at once
    assert sample(replica, "kindmap_client_sessions_closed_total", reason="rate_limited") == 1
    await bob.sio.emit("ping")
    await bob.wait_for("pong")


async def test_flooding_websocket_is_closed_even_when_its_client_keeps_it_open(
        start_replica: StartReplica, open_raw: OpenRaw) -> None:
    replica = await start_replica(rate_limit_events_per_second=0.1, rate_limit_burst=2, rate_limit_strikes=1)
    raw = await joined(open_raw, replica)

    await raw.send(*['2["ping"]'] * 5)

    await raw.wait_closed()
    assert codes(raw) == ["RATE_LIMITED"]
    assert raw.packets[-1].startswith("1")  # Socket.IO DISCONNECT: do not reconnect at once


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_a_refused_connect_ends_its_session_after_the_refusal(start_replica: StartReplica, open_raw: OpenRaw,
                                                                     transport: str) -> None:
    """socket.io-client closes a refused session itself; a client that would rather keep it and
    retry (or just hold a connection slot) finds it closed."""
    replica = await start_replica()
    raw = await open_raw(replica.url, transport=transport)

    answer = await raw.connect({"token": "forged"})

    assert json.loads(answer[1:])["data"]["code"] == "INVALID_TOKEN"
    await raw.wait_closed()
    assert len(replica.app[SIO].eio.sockets) == 0


async def test_new_sessions_from_one_address_beyond_the_burst_get_429_rate_limited(
        start_replica: StartReplica, open_raw: OpenRaw) -> None:
    replica = await start_replica(handshake_rate_per_second=0.1, handshake_burst=2,
                                  handshake_client_ip_header="X-Real-IP")
    for _ in range(2):
        await open_raw(replica.url)

    async with aiohttp.ClientSession() as http:
        refused = await http.get(f"{replica.url}/socket.io/?EIO=4&transport=polling")
        other = await http.get(f"{replica.url}/socket.io/?EIO=4&transport=polling", headers={"X-Real-IP": "10.1.2.3"})
        body, other_status = await refused.json(), other.status

    assert (refused.status, refused.headers["Retry-After"]) == (429, "10")
    assert_error_payload(body, "RATE_LIMITED")
    assert other_status == 200
    assert sample(replica, "kindmap_connects_rejected_total", code="RATE_LIMITED") == 1


# --- 6: sessions that never join, and the connection cap ---------------------------------


@TRANSPORTS
async def test_session_that_never_joins_is_closed_after_the_connect_timeout(
        start_replica: StartReplica, make_client: MakeClient, open_raw: OpenRaw, transport: str) -> None:
    replica = await start_replica(connect_timeout=1)
    alice = await connected(make_client, replica, "alice")
    idle = await open_raw(replica.url, transport=transport)

    await idle.wait_closed(timeout=10)

    assert sample(replica, "kindmap_client_sessions_closed_total", reason="connect_timeout") == 1
    await alice.sio.emit("ping")
    await alice.wait_for("pong")
    assert alice.disconnects == []


async def test_session_that_leaves_the_namespace_must_join_again_in_time(
        start_replica: StartReplica, open_raw: OpenRaw) -> None:
    replica = await start_replica(connect_timeout=1)
    raw = await joined(open_raw, replica)

    await raw.send("1")

    await raw.wait_closed(timeout=10)


@pytest.mark.parametrize("query", ["EIO=4&transport=polling", "EIO=4&transport=polling&sid="],
                         ids=["handshake", "blank-sid"])  # python-engineio takes a blank sid for none
async def test_handshake_past_max_connections_gets_server_full_in_the_error_schema(
        start_replica: StartReplica, make_client: MakeClient, open_raw: OpenRaw, query: str) -> None:
    replica = await start_replica(max_connections=2)
    await connected(make_client, replica, "alice")
    await open_raw(replica.url)

    async with aiohttp.ClientSession() as http:
        refused = await http.get(f"{replica.url}/socket.io/?{query}")
        status, body = refused.status, await refused.json()

    assert status == 503
    assert_error_payload(body, "SERVER_FULL")
    assert len(replica.app[SIO].eio.sockets) == 2
    assert sample(replica, "kindmap_connects_rejected_total", code="SERVER_FULL") == 1


# --- 11: `connected` follows the connect reply -------------------------------------------


@TRANSPORTS
async def test_connected_follows_the_connect_reply(start_replica: StartReplica, open_raw: OpenRaw,
                                                   transport: str) -> None:
    replica = await start_replica()
    raw = await joined(open_raw, replica, transport=transport)

    await raw.wait_for(lambda: raw.events("connected"), what="connected")

    assert raw.packets[0].startswith("0{")
    assert raw.packets[1].startswith('2["connected"')


async def test_client_can_emit_from_its_connected_handler(start_replica: StartReplica, make_client: MakeClient) -> None:
    replica = await start_replica()
    alice: RecordingClient = make_client()
    failures: list[Exception] = []

    async def ping_at_once(_data: Any) -> None:
        try:
            await alice.sio.emit("ping", {"id": "first"})
        except socketio.exceptions.SocketIOError as exc:
            failures.append(exc)

    alice.sio.on("connected", ping_at_once)
    await alice.connect(replica.url, auth={"token": make_token("alice")}, wait=False)

    assert (await alice.wait_for("pong"))["id"] == "first"
    assert failures == []


# --- 13: namespaces and Engine.IO's own refusals -----------------------------------------


async def test_connect_to_another_namespace_gets_connect_error_with_an_error_payload(
        start_replica: StartReplica, make_client: MakeClient) -> None:
    replica = await start_replica()
    client = make_client()
    errors: list[Any] = []
    client.sio.on("connect_error", errors.append, namespace="/admin")

    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.sio.connect(replica.url, namespaces=["/admin"], auth={"token": make_token("alice")},
                                 transports=["websocket"], wait_timeout=5)

    await eventually(lambda: errors, what="connect_error on /admin")
    error = errors[0]["data"]
    assert_error_payload(error, "NOT_FOUND")
    assert "/admin" in error["message"]


@pytest.mark.parametrize(("method", "query", "message"), [
    pytest.param("GET", "EIO=4&transport=bogus", "Invalid transport", id="bad-transport"),
    pytest.param("GET", "EIO=3&transport=polling", "unsupported version", id="old-protocol"),
    pytest.param("POST", "EIO=4&transport=polling&sid=nope", "Invalid session", id="unknown-session"),
])
async def test_engineio_refusals_use_the_error_schema_and_keep_cors_headers(
        start_replica: StartReplica, method: str, query: str, message: str) -> None:
    replica = await start_replica(cors_allowed_origins=("https://app.example",))

    async with aiohttp.ClientSession() as http:
        response = await http.request(method, f"{replica.url}/socket.io/?{query}",
                                      headers={"Origin": "https://app.example"})
        body = await response.json()

    assert response.status == 400
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert_error_payload(body, "INVALID_PARAMETERS")
    assert message in body["message"]


# Over long-polling the session is gone before the client polls again: it sees only the close.
@pytest.mark.parametrize(("transport", "answers"), [("websocket", ["INVALID_PARAMETERS"]), ("polling", [])])
@pytest.mark.parametrize("packet", ["4abc", "9", "2x[", "true"])
async def test_junk_before_the_handshake_is_answered_then_the_session_closed(
        start_replica: StartReplica, open_raw: OpenRaw, transport: str, answers: list[str], packet: str) -> None:
    """As Node's server: a client that does not speak Socket.IO before connecting is dropped."""
    replica = await start_replica()
    raw = await open_raw(replica.url, transport=transport)

    await raw.send(packet)

    await raw.wait_closed()
    assert codes(raw) == answers
    assert sample(replica, "kindmap_client_sessions_closed_total", reason="invalid_handshake") == 1
