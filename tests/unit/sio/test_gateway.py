"""server/sio/gateway.py: the socket side, seen by real Socket.IO clients of in-process replicas.

Replicas share the test's ``FlakyBroker`` the way real ones share Redis. Nothing
here sleeps to synchronise: tests await an event, or poll a condition with a
deadline (``eventually``); to show that something did not arrive, a later marker
is sent to the same client and awaited first.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
import socketio

from kindmap_realtime.backends.base import Session
from kindmap_realtime.messages import envelope
from kindmap_realtime.messages.rooms import user_room
from server import __version__
from server.http.app_keys import GATEWAY, MANAGER, PRESENCE, SETTINGS, SIO
from server.sio.packet_guard import HARD_CAP_FACTOR
from tests.fakes.memory_backend import FlakyBroker
from tests.helpers.clients import MakeClient, RecordingClient, connected, make_token
from tests.helpers.envelopes import emit_envelope
from tests.helpers.in_process import Replica, StartReplica, sample
from tests.helpers.payloads import assert_error_payload
from tests.helpers.raw_client import OpenRaw
from tests.helpers.waiting import eventually

OTHER_SECRET = "a-different-secret-of-enough-length-0123456789"
FOREIGN_HOST = "a-replica-that-is-not-in-this-test"


# --- helpers -----------------------------------------------------------------------


def connections(replica: Replica) -> float | None:
    return sample(replica, "kindmap_connections")


async def send(replica: Replica, user_id: str, event: str, data: Any) -> None:
    """What a backend does through this replica: emit to every socket of the user."""
    await replica.app[SIO].emit(event, data, room=user_room(user_id))


async def refused(make_client: Callable[..., RecordingClient], url: str, **connect: Any) -> dict[str, Any]:
    """Connect, expect refusal, return the error payload carried by ``connect_error``."""
    client = make_client()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(url, **connect)
    error = await client.wait_for_connect_error()
    payload: dict[str, Any] = error["data"]
    return payload


def published(broker: FlakyBroker) -> list[dict[str, Any]]:
    return [json.loads(data) for _channel, data in broker.published]


def inject(broker: FlakyBroker, replica: Replica, message: dict[str, Any] | bytes) -> None:
    raw = message if isinstance(message, bytes) else envelope.encode({"host_id": FOREIGN_HOST, **message})
    assert broker.inject(replica.app[SETTINGS].channel, raw) >= 1, "nobody is subscribed"


# --- routing ------------------------------------------------------------------------


async def test_emit_to_a_user_reaches_all_of_that_users_sockets_and_nobody_else(
        start_replica: StartReplica, make_client: MakeClient) -> None:
    replica = await start_replica()
    phone, laptop = [await connected(make_client, replica, "alice") for _ in range(2)]
    bob = await connected(make_client, replica, "bob")

    await send(replica, "alice", "navigation_update", {"step": 1})

    assert await phone.wait_for("navigation_update") == {"step": 1}
    assert await laptop.wait_for("navigation_update") == {"step": 1}
    await send(replica, "bob", "marker", 1)
    await bob.wait_for("marker")
    assert bob.received("navigation_update") == []


async def test_user_with_sockets_on_two_replicas_gets_it_on_both_once_each(
        start_replica: StartReplica, make_client: MakeClient) -> None:
    first, second = await start_replica(), await start_replica()
    here = await connected(make_client, first, "alice")
    there = await connected(make_client, second, "alice")

    await send(first, "alice", "navigation_update", {"step": 2})
    await send(first, "alice", "marker", None)

    for client in (here, there):
        await client.wait_for("marker")
        assert client.received("navigation_update") == [{"step": 2}]


async def test_user_only_on_another_replica_is_reached_through_the_queue(
        start_replica: StartReplica, make_client: MakeClient, broker: FlakyBroker) -> None:
    first, second = await start_replica(), await start_replica()
    alice = await connected(make_client, second, "alice")

    await send(first, "alice", "arrival", {"station": "Gangnam"})

    assert await alice.wait_for("arrival") == {"station": "Gangnam"}
    emits = [m for m in published(broker) if m["method"] == "emit"]
    assert [(m["event"], m["room"], m["host_id"]) for m in emits] == [
        ("arrival", "user:alice", first.app[MANAGER].host_id)]


@pytest.mark.parametrize(("action", "reply"), [
    pytest.param(lambda client: client.sio.emit("ping", {"id": 1}), "pong", id="pong"),
    pytest.param(lambda client: client.sio.emit("no_such_event", {}), "error", id="error"),
    pytest.param(None, "connected", id="connected"),
])
async def test_reply_to_one_socket_stays_local(start_replica: StartReplica, make_client: MakeClient,
                                               broker: FlakyBroker,
                                               action: Callable[[RecordingClient], Awaitable[None]] | None,
                                               reply: str) -> None:
    replica, _other = await start_replica(), await start_replica()
    client = await connected(make_client, replica, "alice")

    if action is not None:
        await action(client)
    await client.wait_for(reply)

    assert broker.published == []


async def test_message_received_from_the_queue_is_never_published_again(
        start_replica: StartReplica, make_client: MakeClient, broker: FlakyBroker) -> None:
    sender, receiver = await start_replica(), await start_replica()
    alice = await connected(make_client, receiver, "alice")

    await send(sender, "alice", "navigation_update", {"step": 3})
    await send(sender, "alice", "marker", None)
    await alice.wait_for("marker")

    sender_host = sender.app[MANAGER].host_id
    assert [(m["event"], m["host_id"]) for m in published(broker)] == [
        ("navigation_update", sender_host), ("marker", sender_host)]
    assert sample(receiver, "kindmap_messages_published_total") == 0


async def test_a_replica_alone_delivers_on_its_own_memory_backend(start_replica: StartReplica,
                                                                  make_client: MakeClient, broker: FlakyBroker) -> None:
    replica = await start_replica(queue=False)
    phone, laptop = [await connected(make_client, replica, "alice") for _ in range(2)]

    await send(replica, "alice", "navigation_update", {"step": 4})

    assert await phone.wait_for("navigation_update") == {"step": 4}
    assert await laptop.wait_for("navigation_update") == {"step": 4}
    assert broker.published == []  # the test's shared broker is not its own


# --- receiving from the queue --------------------------------------------------------


async def test_message_from_the_queue_is_delivered_to_the_users_socket(
        start_replica: StartReplica, make_client: MakeClient, broker: FlakyBroker) -> None:
    replica = await start_replica()
    alice = await connected(make_client, replica, "alice")

    inject(broker, replica, emit_envelope("route_calculated", [{"minutes": 12}], room=user_room("alice")))

    assert await alice.wait_for("route_calculated") == {"minutes": 12}
    assert sample(replica, "kindmap_messages_received_total") == 1
    assert sample(replica, "kindmap_messages_delivered_total") == 1


@pytest.mark.parametrize(("message", "reason"), [
    pytest.param(b"{not json", "invalid_json", id="invalid-json"),
    pytest.param({"method": "emit", "event": "route_calculated"}, "invalid_envelope", id="missing-fields"),
    pytest.param({"method": "self_destruct"}, "unknown_method", id="unknown-method"),
    pytest.param({**emit_envelope("route_calculated", [None], room=user_room("alice")), "binary": True,
                  "data": [{"_placeholder": True, "num": 0}, "%%% not base64 %%%"]},
                 "handler_error", id="handler-fails"),
])
async def test_bad_queue_message_is_dropped_and_counted_and_later_ones_still_arrive(
        start_replica: StartReplica, make_client: MakeClient, broker: FlakyBroker, message: dict[str, Any] | bytes,
        reason: str) -> None:
    replica = await start_replica()
    alice = await connected(make_client, replica, "alice")

    inject(broker, replica, message)
    inject(broker, replica, emit_envelope("marker", ["after"], room=user_room("alice")))

    assert await alice.wait_for("marker") == "after"
    assert alice.received("route_calculated") == []
    assert sample(replica, "kindmap_messages_dropped_total", reason=reason) == 1


# --- connections ---------------------------------------------------------------------


async def test_connect_joins_room_of_the_user_and_emits_connected(start_replica: StartReplica,
                                                                  make_client: MakeClient) -> None:
    replica = await start_replica(instance_id="replica-seoul-1")

    alice = await connected(make_client, replica, "alice")

    sid = alice.sio.get_sid("/")
    assert alice.received("connected") == [
        {"user_id": "alice", "sid": sid, "instance_id": "replica-seoul-1", "server_version": __version__,
         "recovered": False}]
    assert user_room("alice") in replica.app[SIO].rooms(sid)


async def test_disconnect_leaves_the_user_room(start_replica: StartReplica, make_client: MakeClient) -> None:
    replica = await start_replica()
    alice = await connected(make_client, replica, "alice")
    manager = replica.app[MANAGER]

    await alice.disconnect()

    await eventually(lambda: not list(manager.get_participants("/", user_room("alice"))))


@pytest.mark.parametrize("queue", [True, False], ids=["shared-broker", "replica-alone"])
async def test_presence_sees_a_client_online_while_connected_and_offline_after(
        start_replica: StartReplica, make_client: MakeClient, queue: bool) -> None:
    replica = await start_replica(queue=queue)
    presence = replica.app[PRESENCE]
    alice = await connected(make_client, replica, "alice")
    assert await presence.is_online("alice") is True

    await alice.disconnect()

    async def offline() -> bool:
        return not await presence.is_online("alice")
    await eventually(offline)


async def test_connections_gauge_goes_up_and_down(start_replica: StartReplica, make_client: MakeClient) -> None:
    replica = await start_replica()
    assert connections(replica) == 0

    first = await connected(make_client, replica, "alice")
    assert connections(replica) == 1
    second = await connected(make_client, replica, "bob")
    assert connections(replica) == 2

    await first.disconnect()
    await eventually(lambda: connections(replica) == 1)
    await second.disconnect()
    await eventually(lambda: connections(replica) == 0)


async def test_refused_handshake_is_counted_by_code_and_not_as_a_connection(
        start_replica: StartReplica, make_client: MakeClient) -> None:
    replica = await start_replica()

    await refused(make_client, replica.url, auth={})

    assert sample(replica, "kindmap_connects_rejected_total", code="AUTH_REQUIRED") == 1
    assert connections(replica) == 0


# --- errors --------------------------------------------------------------------------


async def test_error_event_has_the_documented_schema_and_a_utc_timestamp(
        start_replica: StartReplica, make_client: MakeClient) -> None:
    replica = await start_replica()
    alice = await connected(make_client, replica, "alice")

    await alice.sio.emit("start_navigation_v0", {"to": "Seoul Station"})

    assert_error_payload(await alice.wait_for("error"), "UNKNOWN_EVENT")


@pytest.mark.parametrize(("auth", "code"), [
    pytest.param({}, "AUTH_REQUIRED", id="missing-token"),
    pytest.param({"token": "not.a.jwt"}, "INVALID_TOKEN", id="malformed"),
    pytest.param({"token": make_token("alice", secret=OTHER_SECRET)}, "INVALID_TOKEN", id="wrong-signature"),
    pytest.param({"token": make_token("alice", expires_in=-30)}, "TOKEN_EXPIRED", id="expired"),
])
async def test_refused_handshake_gets_connect_error_with_an_error_payload(
        start_replica: StartReplica, make_client: MakeClient, auth: dict[str, Any], code: str) -> None:
    replica = await start_replica()

    assert_error_payload(await refused(make_client, replica.url, auth=auth), code)


async def test_token_in_query_parameter_is_accepted(start_replica: StartReplica, make_client: MakeClient) -> None:
    replica = await start_replica()
    client = make_client()

    await client.connect(f"{replica.url}/?token={make_token('alice')}")

    assert client.received("connected")[0]["user_id"] == "alice"


async def test_bearer_header_is_accepted(start_replica: StartReplica, make_client: MakeClient) -> None:
    replica = await start_replica()
    client = make_client()

    await client.connect(replica.url, headers={"Authorization": f"Bearer {make_token('alice')}"})

    assert client.received("connected")[0]["user_id"] == "alice"


async def test_dev_mode_connects_as_the_user_id_in_auth(start_replica: StartReplica, make_client: MakeClient) -> None:
    replica = await start_replica(auth_mode="dev", jwt_secret=None)
    client = make_client()

    await client.connect(replica.url, auth={"user_id": "temp_guest"})

    assert client.received("connected")[0]["user_id"] == "temp_guest"


async def test_dev_mode_is_off_by_default(start_replica: StartReplica, make_client: MakeClient) -> None:
    replica = await start_replica()
    assert replica.app[SETTINGS].auth_mode == "jwt"

    assert_error_payload(await refused(make_client, replica.url, auth={"user_id": "alice"}), "AUTH_REQUIRED")


# Built when the test runs: a token made at collection may have expired by then.
@pytest.mark.parametrize(("settings", "auth", "code"), [
    pytest.param({"auth_mode": "dev"}, lambda: {"user_id": "alice smith"}, "INVALID_PARAMETERS", id="dev-space"),
    pytest.param({"auth_mode": "dev"}, lambda: {"user_id": "a" * 129}, "INVALID_PARAMETERS", id="dev-too-long"),
    pytest.param({"auth_mode": "dev"}, lambda: {"user_id": 42}, "INVALID_PARAMETERS", id="dev-number"),
    pytest.param({}, lambda: {"token": make_token("alice/../bob")}, "INVALID_TOKEN", id="token-sub-with-slash"),
])
async def test_bad_user_id_is_refused(start_replica: StartReplica, make_client: MakeClient, settings: dict[str, Any],
                                      auth: Callable[[], dict[str, Any]], code: str) -> None:
    replica = await start_replica(**settings)

    assert_error_payload(await refused(make_client, replica.url, auth=auth()), code)
    assert connections(replica) == 0


# --- scenarios -----------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["same-replica", "other-replica", "single-replica-mode", "queue-down"])
async def test_replace_policy_disconnects_the_older_socket_and_keeps_the_new_one(
        start_replica: StartReplica, make_client: MakeClient, broker: FlakyBroker, layout: str) -> None:
    old_home = await start_replica(duplicate_connection_policy="replace", queue=layout != "single-replica-mode")
    new_home = await start_replica(duplicate_connection_policy="replace") if layout == "other-replica" else old_home
    older = await connected(make_client, old_home, "alice")
    if layout == "queue-down":
        broker.go_down()  # the notice cannot reach other replicas; this one must still replace

    newer = await connected(make_client, new_home, "alice")

    assert_error_payload(await older.wait_for("error"), "DUPLICATE_CONNECTION")
    assert await older.wait_for_disconnect() == older.sio.reason.SERVER_DISCONNECT
    await newer.sio.emit("ping")
    await newer.wait_for("pong")
    assert newer.sio.connected
    assert newer.received("error") == []
    await eventually(lambda: connections(old_home) == (0 if layout == "other-replica" else 1))


async def test_allow_policy_keeps_both_sockets(start_replica: StartReplica, make_client: MakeClient) -> None:
    first, second = await start_replica(), await start_replica()
    assert first.app[SETTINGS].duplicate_connection_policy == "allow"
    older = await connected(make_client, first, "alice")
    newer = await connected(make_client, second, "alice")

    await send(second, "alice", "navigation_update", {"step": 5})

    assert await older.wait_for("navigation_update") == {"step": 5}
    assert await newer.wait_for("navigation_update") == {"step": 5}
    assert older.received("error") == [] and older.disconnects == []


@pytest.mark.parametrize("event", ["start_navigation", "message", "connected", "경로"])
async def test_unknown_event_gets_unknown_event_error(start_replica: StartReplica, make_client: MakeClient,
                                                      event: str) -> None:
    replica = await start_replica()
    alice = await connected(make_client, replica, "alice")

    await alice.sio.emit(event, {"any": "thing"})

    error = await alice.wait_for("error")
    assert error["code"] == "UNKNOWN_EVENT"
    assert event in error["message"]


@pytest.mark.parametrize(("event", "args"), [
    pytest.param("disconnect", ("client said so",), id="disconnect"),
    pytest.param("connect", ({"QUERY_STRING": ""}, {"token": make_token("bob")}), id="connect"),
])
async def test_client_event_named_like_a_lifecycle_handler_is_an_unknown_event(
        start_replica: StartReplica, make_client: MakeClient, event: str, args: tuple[Any, ...]) -> None:
    replica = await start_replica()
    alice = await connected(make_client, replica, "alice")
    sid = alice.sio.get_sid("/")

    await alice.sio.emit(event, args)
    await alice.sio.emit("ping")
    await alice.wait_for("pong")

    assert connections(replica) == 1  # on_disconnect did not run
    assert set(replica.app[SIO].rooms(sid)) == {sid, user_room("alice")}  # on_connect did not join user:bob
    assert [e["code"] for e in alice.received("error")] == ["UNKNOWN_EVENT"]


@pytest.mark.parametrize(("payload", "expected_id"), [
    pytest.param((), None, id="no-data"),
    pytest.param({}, None, id="empty-object"),
    pytest.param({"id": 7}, 7, id="int-id"),
    pytest.param({"id": "req-7"}, "req-7", id="str-id"),
    pytest.param({"id": ["not", "echoed"]}, None, id="list-id-not-echoed"),
])
async def test_ping_gets_pong_with_timestamp_and_echoed_id(start_replica: StartReplica, make_client: MakeClient,
                                                           payload: Any, expected_id: int | str | None) -> None:
    replica = await start_replica()
    alice = await connected(make_client, replica, "alice")

    await alice.sio.emit("ping", payload)

    pong = await alice.wait_for("pong")
    assert set(pong) == ({"timestamp"} if expected_id is None else {"timestamp", "id"})
    assert pong.get("id") == expected_id
    assert datetime.fromisoformat(pong["timestamp"]).utcoffset() == timedelta(0)


async def test_ping_with_ack_returns_the_pong(start_replica: StartReplica, make_client: MakeClient) -> None:
    replica = await start_replica()
    alice = await connected(make_client, replica, "alice")

    ack = await alice.sio.call("ping", {"id": 9}, timeout=5)

    assert ack["id"] == 9
    assert ack == await alice.wait_for("pong")


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_oversized_message_gets_payload_too_large_and_changes_nothing_else(
        start_replica: StartReplica, make_client: MakeClient, transport: str) -> None:
    replica = await start_replica(max_payload_bytes=1024)
    alice = await connected(make_client, replica, "alice", transports=[transport])

    await alice.sio.emit("ping", {"id": "x" * 2000})
    error = await alice.wait_for("error")
    await alice.sio.emit("ping", {"id": 1})
    await alice.wait_for("pong")

    assert error["code"] == "PAYLOAD_TOO_LARGE"
    assert [pong["id"] for pong in alice.received("pong")] == [1]
    assert alice.disconnects == []


async def test_message_past_the_transport_hard_cap_closes_the_connection(
        start_replica: StartReplica, make_client: MakeClient) -> None:
    replica = await start_replica(max_payload_bytes=1024)
    alice = await connected(make_client, replica, "alice")

    await alice.sio.emit("ping", {"id": "x" * 1024 * (HARD_CAP_FACTOR + 1)})

    assert await alice.wait_for_disconnect() is not None
    assert alice.received("pong") == []


async def test_client_that_leaves_during_the_handshake_leaves_no_ghost_behind(
        start_replica: StartReplica, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch) -> None:
    replica = await start_replica()
    sio, presence = replica.app[SIO], replica.app[PRESENCE]
    add = presence.add

    async def add_while_the_client_leaves(user_id: str, sid: str, session: Session | None = None) -> None:
        # The client's transport closes while the replica waits on Redis.
        await sio.eio.sockets[sio.manager.eio_sid_from_sid(sid, "/")].close(wait=False, abort=True)
        await add(user_id, sid, session)

    monkeypatch.setattr(presence, "add", add_while_the_client_leaves)
    client = make_client()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(replica.url, auth={"token": make_token("alice")})

    assert await presence.is_online("alice") is False
    assert list(sio.manager.get_participants("/", user_room("alice"))) == []
    assert sample(replica, "kindmap_connections") == 0


@pytest.mark.parametrize("packet", [
    pytest.param('2[]', id="empty-event"),
    pytest.param('2[123,"x"]', id="numeric-name"),
    pytest.param('2[["a"],1]', id="list-name"),
    pytest.param('2{"not": "a list"}', id="object"),
    pytest.param('2[unquoted]', id="not-json"),
    pytest.param('9', id="unknown-packet-type"),
])
async def test_malformed_socketio_packet_gets_invalid_parameters_and_changes_nothing(
        start_replica: StartReplica, make_client: MakeClient, packet: str) -> None:
    replica = await start_replica()
    alice = await connected(make_client, replica, "alice")

    await alice.sio.eio.send(packet)
    error = await alice.wait_for("error")
    await alice.sio.emit("ping", {"id": 1})
    await alice.wait_for("pong")

    assert error["code"] == "INVALID_PARAMETERS"
    assert alice.disconnects == []


def ping_packet(ping_id: str) -> str:
    """A Socket.IO ``ping`` event as text, non-ASCII kept as it is: python-socketio's own
    client escapes it to ``\\uXXXX`` (6 bytes a character), which hides whether the limit
    counts characters or bytes."""
    return "2" + json.dumps(["ping", {"id": ping_id}], ensure_ascii=False, separators=(",", ":"))


def ping_of_size(size_in_bytes: int) -> str:
    """A ping packet of exactly ``size_in_bytes`` UTF-8 bytes, 300 of its characters 3 bytes long."""
    overhead = len(ping_packet("환" * 300).encode())
    packet = ping_packet("환" * 300 + "x" * (size_in_bytes - overhead))
    assert len(packet.encode()) == size_in_bytes and len(packet) < size_in_bytes - 512
    return packet


async def test_payload_limit_counts_utf8_bytes_not_characters(start_replica: StartReplica,
                                                              make_client: MakeClient) -> None:
    replica = await start_replica(max_payload_bytes=1024)
    alice = await connected(make_client, replica, "alice")
    packet = ping_packet("환" * 400)  # 420 characters, 1,220 bytes
    assert len(packet) < 1024 < len(packet.encode())

    await alice.sio.eio.send(packet)

    assert (await alice.wait_for("error"))["code"] == "PAYLOAD_TOO_LARGE"
    assert alice.received("pong") == []


async def test_payload_exactly_at_the_limit_is_handled_and_one_byte_more_is_refused(
        start_replica: StartReplica, make_client: MakeClient) -> None:
    replica = await start_replica(max_payload_bytes=1024)
    alice = await connected(make_client, replica, "alice")

    await alice.sio.eio.send(ping_of_size(1024))
    pong = await alice.wait_for("pong")
    await alice.sio.eio.send(ping_of_size(1025))
    error = await alice.wait_for("error")

    assert pong["id"].startswith("환")
    assert error["code"] == "PAYLOAD_TOO_LARGE"
    assert len(alice.received("pong")) == 1


@pytest.mark.parametrize("payload", [
    pytest.param("hello", id="string"),
    pytest.param(5, id="number"),
    pytest.param([1, 2], id="list"),
    pytest.param(({"id": 1}, {"id": 2}), id="two-arguments"),
])
async def test_ping_with_a_non_object_payload_gets_invalid_parameters(
        start_replica: StartReplica, make_client: MakeClient, payload: Any) -> None:
    replica = await start_replica()
    alice = await connected(make_client, replica, "alice")

    await alice.sio.emit("ping", payload)

    assert_error_payload(await alice.wait_for("error"), "INVALID_PARAMETERS")
    await alice.sio.emit("ping")
    await alice.wait_for("pong")
    assert len(alice.received("pong")) == 1


async def test_draining_replica_refuses_new_connections_with_server_shutting_down(
        start_replica: StartReplica, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch) -> None:
    replica = await start_replica()
    monkeypatch.setattr(replica.app[GATEWAY], "draining", True)

    error = await refused(make_client, replica.url, auth={"token": make_token("alice")})

    assert_error_payload(error, "SERVER_SHUTTING_DOWN")
    assert sample(replica, "kindmap_connects_rejected_total", code="SERVER_SHUTTING_DOWN") == 1


# --- edge cases ----------------------------------------------------------------------


@pytest.mark.parametrize("data", [None, {}, [], "", 0], ids=["none", "empty-object", "empty-list", "empty-string",
                                                            "zero"])
async def test_none_and_empty_data_arrive_as_sent_across_replicas(start_replica: StartReplica, make_client: MakeClient,
                                                                  data: Any) -> None:
    first, second = await start_replica(), await start_replica()
    alice = await connected(make_client, second, "alice")

    await send(first, "alice", "navigation_update", data)

    assert await alice.wait_for("navigation_update") == data


async def test_non_ascii_text_arrives_intact_across_replicas(start_replica: StartReplica,
                                                             make_client: MakeClient) -> None:
    first, second = await start_replica(), await start_replica()
    alice = await connected(make_client, second, "alice")
    message = {"instruction": "강남역에서 2호선으로 환승하세요 🚇", "quote": "\"<&>\""}

    await send(first, "alice", "navigation_update", message)

    assert await alice.wait_for("navigation_update") == message


async def test_concurrent_messages_all_arrive_exactly_once(start_replica: StartReplica,
                                                           make_client: MakeClient) -> None:
    first, second = await start_replica(), await start_replica()
    here = await connected(make_client, first, "alice")
    there = await connected(make_client, second, "alice")

    await asyncio.gather(*(send(first if n % 2 else second, "alice", "location", n) for n in range(60)))

    for client in (here, there):
        await client.wait_for("location", count=60)
        assert sorted(client.received("location")) == list(range(60))


async def test_socket_closed_mid_delivery_does_not_stop_delivery_to_the_others(
        start_replica: StartReplica, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch) -> None:
    home, sender = await start_replica(), await start_replica()
    doomed = await connected(make_client, home, "alice")
    survivor = await connected(make_client, home, "alice")
    eio = home.app[SIO].eio
    doomed_eio_sid = home.app[SIO].manager.eio_sid_from_sid(doomed.sio.get_sid("/"), "/")
    send_packet = eio.send_packet

    async def close_first_then_send(eio_sid: str, pkt: Any) -> None:
        if eio_sid == doomed_eio_sid and eio_sid in eio.sockets:
            socket = eio.sockets[eio_sid]  # the client goes away just as its packet is due
            await socket.close(wait=False, abort=True)
            socket.queue.put_nowait(None)
        await send_packet(eio_sid, pkt)

    monkeypatch.setattr(eio, "send_packet", close_first_then_send)
    # Its writer busy, as it were: the packet is not written at once but takes send_packet.
    monkeypatch.setattr(eio.sockets[doomed_eio_sid], "write_frame", lambda frame, now: False)

    await send(sender, "alice", "navigation_update", {"step": 6})

    assert await survivor.wait_for("navigation_update") == {"step": 6}
    await doomed.wait_for_disconnect()
    assert doomed.received("navigation_update") == []
    await eventually(lambda: connections(home) == 1)
    assert sample(home, "kindmap_messages_dropped_total", reason="handler_error") == 0
    await send(sender, "alice", "navigation_update", {"step": 7})
    assert await survivor.wait_for("navigation_update", count=2) == {"step": 7}


async def test_refused_handshakes_are_all_counted_but_logged_once_a_second(
        start_replica: StartReplica, open_raw: OpenRaw, caplog: pytest.LogCaptureFixture) -> None:
    """A client can open sessions and be refused many times a second: a log line each would be
    per-message INFO."""
    replica = await start_replica()

    with caplog.at_level(logging.INFO, logger="server.sio.gateway"):
        for _ in range(10):
            await (await open_raw(replica.url)).connect({"token": "forged"})

    lines = [r for r in caplog.records if r.getMessage() == "connection refused"]
    assert len(lines) == 1
    assert sample(replica, "kindmap_connects_rejected_total", code="INVALID_TOKEN") == 10
