"""QueueManager: python-socketio's pub/sub manager on a QueueTransport, hardened.

Managers talk through the test's ``FlakyBroker`` (the unit tests' "Redis").
Where sockets matter, real replicas (aiohttp + python-socketio) and real
Socket.IO clients are used; nothing here waits by sleeping.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from kindmap_realtime.backends.base import Routed
from kindmap_realtime.errors import ErrorCode, PayloadTooLargeError, PublishError, QueueUnavailableError, error_payload
from kindmap_realtime.messages import envelope
from server.app import create_app
from server.compat.socketio import register_ack
from server.config import Settings
from server.http.app_keys import MANAGER, METRICS
from server.manager.client_manager import QueueManager
from server.metrics import Metrics
from tests.fakes.memory_backend import FlakyBroker, FlakyTransport, flaky_transport, memory_backend
from tests.helpers.clients import RecordingClient, connected
from tests.helpers.envelopes import emit_envelope
from tests.helpers.in_process import StartReplica
from tests.helpers.waiting import eventually

from .conftest import (
    CHANNEL,
    MANAGER_LOGGER,
    PUBLISHER_LOGGER,
    Connected,
    dropped,
    metric,
    published,
    raw,
    received,
)

MakeManager = Callable[..., QueueManager]
ConnectUser = Callable[..., Awaitable[Connected]]


def records(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records
            if r.name in (MANAGER_LOGGER, PUBLISHER_LOGGER) and r.levelno == level and text in r.getMessage()]


def subscribed_gauge(metrics: Metrics) -> float:
    return metric(metrics, "kindmap_queue_subscribed")


def listener_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "queue-listener" and not t.done()]


def count_calls(monkeypatch: pytest.MonkeyPatch, obj: Any, name: str) -> list[Any]:
    """Wrap ``obj.name`` so every call is recorded (and still performed)."""
    calls: list[Any] = []
    original = getattr(obj, name)

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return await original(*args, **kwargs)

    monkeypatch.setattr(obj, name, wrapper)
    return calls


# --- initialisation --------------------------------------------------------------------------


async def test_replica_subscribes_at_start_before_any_client(start_replica: StartReplica, broker: FlakyBroker) -> None:
    replica = await start_replica()
    manager = replica.app[MANAGER]
    assert manager.subscribed is True
    assert subscribed_gauge(replica.app[METRICS]) == 1
    assert manager.server.manager_initialized is False  # no client yet, so stock would not listen
    assert broker.inject(CHANNEL, raw(emit_envelope("hello", [1]))) == 1
    await eventually(lambda: received(replica.app[METRICS]) == 1, what="message received without clients")


async def test_start_with_queue_down_logs_error_keeps_retrying_and_subscribes_when_back(
        make_manager: MakeManager, broker: FlakyBroker, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    manager = make_manager(retry_max=0.1)
    attempts = count_calls(monkeypatch, manager.transport, "subscribe")
    broker.go_down()
    await manager.start()  # does not raise
    assert manager.subscribed is False
    assert records(caplog, logging.ERROR, "queue unavailable at start-up")
    await eventually(lambda: len(attempts) >= 3, what="repeated subscribe attempts")
    assert manager.subscribed is False
    broker.come_back()
    await eventually(lambda: manager.subscribed, what="subscription after the queue came back")
    assert subscribed_gauge(manager.metrics) == 1
    broker.inject(CHANNEL, raw(emit_envelope("e", [1])))
    await eventually(lambda: received(manager.metrics) == 1, what="a message after recovery")


async def test_first_subscription_after_a_failed_start_is_not_counted_as_a_reconnect(
        make_manager: MakeManager, broker: FlakyBroker) -> None:
    manager = make_manager(retry_max=0.1)
    broker.go_down()
    await manager.start()
    broker.come_back()
    await eventually(lambda: manager.subscribed)
    assert metric(manager.metrics, "kindmap_queue_reconnects_total") == 0


async def test_write_only_start_raises_queue_unavailable_when_queue_is_down(
        make_manager: MakeManager, broker: FlakyBroker) -> None:
    manager = make_manager(write_only=True)
    broker.go_down()
    with pytest.raises(QueueUnavailableError):
        await manager.start()


async def test_write_only_start_neither_subscribes_nor_listens(make_manager: MakeManager,
                                                               broker: FlakyBroker) -> None:
    manager = make_manager(write_only=True)
    await manager.start()
    assert manager.subscribed is False
    assert isinstance(manager.transport, FlakyTransport)
    assert manager.transport.channels == set()
    assert listener_tasks() == []
    assert broker.inject(CHANNEL, b"{}") == 0


async def test_server_initialize_on_first_client_does_not_start_a_second_listener(
        connect_user: ConnectUser) -> None:
    user = await connect_user("alice")
    assert user.sio.manager_initialized is True  # the server did call initialize()
    assert len(listener_tasks()) == 1
    assert not hasattr(user.manager, "thread")  # stock's _thread listener was not started


async def test_start_twice_keeps_a_single_listener(make_manager: MakeManager) -> None:
    manager = make_manager()
    await manager.start()
    await manager.start()
    assert len(listener_tasks()) == 1
    assert metric(manager.metrics, "kindmap_queue_reconnects_total") == 0  # not a resubscription


# --- publishing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"text": "300m 앞에서 우회전하세요", "road": "세종대로"}, id="korean"),
        pytest.param({"text": 'quote " backslash \\ slash / tab \t newline \n nul \x00'}, id="special-characters"),
        pytest.param(["🚗", "→", "café", "ß"], id="emoji-and-accents"),
    ],
)
async def test_publish_sends_the_stock_envelope_as_compact_utf8_json(make_manager: MakeManager,
                                                                     broker: FlakyBroker, data: Any) -> None:
    manager = make_manager()
    await manager.start()  # subscribed, so the publish has a receiver
    await manager.emit("guidance", data, room="user:alice")
    ((channel, payload),) = broker.published
    expected = {"method": "emit", "event": "guidance", "data": [data], "binary": False, "namespace": "/",
                "room": "user:alice", "skip_sid": None, "callback": None, "host_id": manager.host_id}
    assert channel == CHANNEL
    assert payload == json.dumps(expected, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert json.loads(payload.decode("utf-8")) == expected
    assert b"\\u" not in payload.replace(b"\\u0000", b"")  # non-ASCII kept as UTF-8, not escaped


async def test_emit_to_a_room_reaches_the_broker_and_a_socket_on_another_replica(
        start_replica: StartReplica, connect_user: ConnectUser, broker: FlakyBroker) -> None:
    sender = await start_replica()
    alice = await connect_user("alice")  # on a second replica
    await sender.app[MANAGER].server.emit("route_update", {"eta": 7}, room="user:alice")
    assert await alice.client.wait_for("route_update") == {"eta": 7}
    sent = [json.loads(p) for c, p in broker.published if c == CHANNEL]
    assert [(m["method"], m["room"], m["host_id"]) for m in sent] == [
        ("emit", "user:alice", sender.app[MANAGER].host_id)]
    assert published(sender.app[METRICS]) == 1


async def test_emit_to_a_socket_id_of_this_manager_stays_local_and_publishes_nothing(
        connect_user: ConnectUser, broker: FlakyBroker) -> None:
    alice = await connect_user("alice")
    before = len(broker.published)
    await alice.sio.emit("direct", {"n": 1}, to=alice.sid)
    assert await alice.client.wait_for("direct") == {"n": 1}
    assert len(broker.published) == before
    assert published(alice.metrics) == 0


async def test_emit_to_a_local_socket_id_works_while_the_queue_is_down(connect_user: ConnectUser,
                                                                      broker: FlakyBroker) -> None:
    alice = await connect_user("alice")
    broker.go_down()
    await alice.sio.emit("direct", {"n": 1}, to=alice.sid)  # would raise PublishError if it were published
    assert await alice.client.wait_for("direct") == {"n": 1}
    assert dropped(alice.metrics, "publish_failed") == 0


async def test_emit_whose_publish_fails_reaches_no_local_socket_either(connect_user: ConnectUser,
                                                                       broker: FlakyBroker) -> None:
    alice = await connect_user("alice")
    broker.go_down()
    with pytest.raises(PublishError):
        await alice.sio.emit("lost", 1, room="user:alice")
    broker.come_back()
    await eventually(lambda: metric(alice.metrics, "kindmap_queue_reconnects_total") == 1, what="resubscription")
    await alice.sio.emit("marker", 2, room="user:alice")  # same socket, same order: "lost" would come first
    await alice.client.wait_for("marker")
    assert alice.client.received("lost") == []


async def test_disconnect_room_disconnects_local_sockets_even_when_publish_fails(
        connect_user: ConnectUser, broker: FlakyBroker) -> None:
    alice = await connect_user("alice")
    broker.go_down()
    with pytest.raises(PublishError):
        await alice.manager.disconnect_room("user:alice")
    await alice.client.wait_for_disconnect()
    assert dropped(alice.metrics, "publish_failed") == 1


async def test_emit_to_a_socket_id_of_another_replica_goes_through_the_queue(
        start_replica: StartReplica, connect_user: ConnectUser, broker: FlakyBroker) -> None:
    sender = await start_replica()
    alice = await connect_user("alice")
    await sender.app[MANAGER].server.emit("direct", {"n": 2}, to=alice.sid)
    assert await alice.client.wait_for("direct") == {"n": 2}
    assert [json.loads(p)["room"] for _, p in broker.published] == [alice.sid]


async def _emit(manager: QueueManager) -> None:
    await manager.emit("e", {"x": 1}, room="user:alice")


async def _close_room(manager: QueueManager) -> None:
    await manager.close_room("trip:42", namespace="/")


async def _enter_room(manager: QueueManager) -> None:
    await manager.enter_room("sid-elsewhere", "/", "trip:42")


async def _disconnect_room(manager: QueueManager) -> None:
    await manager.disconnect_room("user:alice")


@pytest.mark.parametrize(
    ("operation", "method"),
    [(_emit, "emit"), (_close_room, "close_room"), (_enter_room, "enter_room"),
     (_disconnect_room, "disconnect_room")],
    ids=["emit", "close_room", "enter_room", "disconnect_room"],
)
@pytest.mark.parametrize("write_only", [False, True], ids=["listening", "write-only"])
async def test_publish_failure_is_counted_logged_at_error_and_raised(
        make_manager: MakeManager, broker: FlakyBroker, caplog: pytest.LogCaptureFixture,
        operation: Callable[[QueueManager], Awaitable[None]], method: str, write_only: bool) -> None:
    manager = make_manager(write_only=write_only)
    broker.go_down()
    with pytest.raises(PublishError):
        await operation(manager)
    assert dropped(manager.metrics, "publish_failed") == 1
    assert published(manager.metrics) == 0
    (record,) = records(caplog, logging.ERROR, "could not publish")
    assert record.method == method  # type: ignore[attr-defined]
    assert record.channel == CHANNEL  # type: ignore[attr-defined]


async def test_successful_publishes_are_counted(make_manager: MakeManager) -> None:
    manager = make_manager()
    await manager.start()
    for i in range(3):
        await manager.emit("e", i, room="user:alice")
    assert published(manager.metrics) == 3
    assert dropped(manager.metrics, "publish_failed") == 0


async def test_emit_to_an_empty_list_of_rooms_reaches_nobody_and_publishes_nothing(make_manager: MakeManager,
                                                                                   broker: FlakyBroker) -> None:
    manager = make_manager(write_only=True)
    await manager.emit("e", 1, room=[])
    assert broker.published == []
    assert published(manager.metrics) == 0


async def test_broadcast_that_reaches_no_replica_is_a_publish_error(make_manager: MakeManager) -> None:
    sender = make_manager(write_only=True)
    await sender.start()
    with pytest.raises(PublishError, match="no replica"):
        await sender.emit("e", 1)
    assert dropped(sender.metrics, "publish_failed") == 1
    assert published(sender.metrics) == 0


async def test_publish_returns_how_many_managers_are_subscribed(make_manager: MakeManager) -> None:
    listeners = [make_manager() for _ in range(2)]
    for listener in listeners:
        await listener.start()
    sender = make_manager(write_only=True)
    assert await sender._publish({"method": "close_room", "namespace": "/", "room": "r",
                                  "host_id": sender.host_id}) == 2


async def test_write_only_manager_emits_reach_a_replica(make_manager: MakeManager,
                                                        connect_user: ConnectUser) -> None:
    alice = await connect_user("alice")
    emitter = make_manager(write_only=True)
    await emitter.start()
    await emitter.emit("alert", {"level": "high"}, room="user:alice")
    assert await alice.client.wait_for("alert") == {"level": "high"}


# --- receiving --------------------------------------------------------------------------------


async def test_listener_delivers_emits_from_another_manager(make_manager: MakeManager,
                                                            connect_user: ConnectUser) -> None:
    alice = await connect_user("alice")
    other = make_manager()
    await other.start()
    await other.emit("route_update", {"eta": 3}, room="user:alice")
    assert await alice.client.wait_for("route_update") == {"eta": 3}
    assert received(alice.metrics) == 1
    assert metric(alice.metrics, "kindmap_messages_delivered_total") == 1


async def test_managers_sharing_a_signing_key_deliver_and_drop_unsigned_forgeries(
        make_manager: MakeManager, broker: FlakyBroker, start_replica: StartReplica,
        make_client: Callable[..., RecordingClient]) -> None:
    key = "queue-signing-key-for-unit-tests-0123456789"
    replica = await start_replica(queue_signing_key=key)
    alice = await connected(make_client, replica, "alice")
    sender = make_manager(write_only=True, signing_key=key.encode())
    await sender.start()

    broker.inject(CHANNEL, raw(emit_envelope("forged", ["x"], room="user:alice")))
    await sender.emit("signed", 1, room="user:alice")

    assert await alice.wait_for("signed") == 1
    assert alice.received("forged") == []
    assert dropped(replica.app[METRICS], "bad_signature") == 1


async def test_messages_with_own_host_id_are_ignored(make_manager: MakeManager, connect_user: ConnectUser,
                                                     broker: FlakyBroker) -> None:
    alice = await connect_user("alice")
    await alice.sio.emit("mine", {"n": 1}, room="user:alice")  # published, and echoed back to us
    other = make_manager()
    await other.emit("marker", {}, room="user:alice")  # queued after our echo
    await alice.client.wait_for("marker")
    assert alice.client.received("mine") == [{"n": 1}]  # delivered once, locally; the echo was ignored
    assert received(alice.metrics) == 1  # only the marker
    assert [json.loads(p)["event"] for _, p in broker.published] == ["mine", "marker"]


BAD_MESSAGES = [
    pytest.param(b"{this is not json", "invalid_json", id="invalid-json"),
    pytest.param(b"\xff\xfe\xfd", "invalid_json", id="not-utf8"),
    pytest.param(b"[1, 2, 3]", "invalid_envelope", id="non-object"),
    pytest.param(raw({"event": "e", "data": [1], "namespace": "/", "host_id": "h"}), "invalid_envelope",
                 id="missing-method"),
    pytest.param(raw({"method": "emit", "event": "e", "data": [1], "namespace": "/"}), "invalid_envelope",
                 id="missing-host-id"),
    pytest.param(raw(emit_envelope(7, [1])), "invalid_envelope", id="wrong-type-event"),  # type: ignore[arg-type]
    pytest.param(raw(emit_envelope("e", "not-a-list")), "invalid_envelope",  # type: ignore[arg-type]
                 id="wrong-type-data"),
    pytest.param(raw({"method": "rm_rf", "host_id": "h"}), "unknown_method", id="unknown-method"),
]


@pytest.mark.parametrize(("bad", "reason"), BAD_MESSAGES)
async def test_invalid_message_is_dropped_counted_logged_and_listener_keeps_running(
        connect_user: ConnectUser, broker: FlakyBroker, caplog: pytest.LogCaptureFixture,
        bad: bytes, reason: str) -> None:
    alice = await connect_user("alice")
    broker.inject(CHANNEL, bad)
    broker.inject(CHANNEL, raw(emit_envelope("after", ["still listening"], room="user:alice")))
    assert await alice.client.wait_for("after") == "still listening"
    assert dropped(alice.metrics, reason) == 1
    assert received(alice.metrics) == 1
    assert [name for name, _ in alice.client.events] == ["connected", "after"]
    (record,) = records(caplog, logging.WARNING, "dropped invalid queue message")
    assert record.reason == reason  # type: ignore[attr-defined]
    assert record.sample == envelope.sample(bad)  # type: ignore[attr-defined]


async def test_a_queued_message_for_a_user_who_left_this_replica_is_counted_and_logged_once_a_second(
        connect_user: ConnectUser, broker: FlakyBroker, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="server.manager.client_manager")
    alice = await connect_user("alice")
    for _ in range(3):
        broker.inject(CHANNEL, raw(emit_envelope("step", [1], room="user:bob")))
    broker.inject(CHANNEL, raw(emit_envelope("for_a_room", [1], room="riders")))
    broker.inject(CHANNEL, raw(emit_envelope("after", [1], room="user:alice")))

    await alice.client.wait_for("after")
    assert dropped(alice.metrics, "user_left") == 3  # not the room's: rooms reach every replica
    assert len(records(caplog, logging.INFO, "a message for a user who had just left")) == 1


async def test_an_emit_to_a_user_on_another_replica_is_not_counted_as_user_left_where_it_was_made(
        connect_user: ConnectUser) -> None:
    alice = await connect_user("alice")
    bob = await connect_user("bob")

    assert (await alice.manager.emit_to_user("bob", "step", 1)).online

    assert await bob.client.wait_for("step") == 1
    assert dropped(alice.metrics, "user_left") == dropped(bob.metrics, "user_left") == 0


async def test_log_sample_of_a_long_invalid_message_is_truncated(make_server_manager: Any,
                                                                 broker: FlakyBroker,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    manager = await make_server_manager()
    bad = b"{" + b"x" * 5000
    broker.inject(CHANNEL, bad)
    await eventually(lambda: dropped(manager.metrics, "invalid_json") == 1)
    (record,) = records(caplog, logging.WARNING, "dropped invalid queue message")
    assert record.sample == (b"{" + b"x" * 199).decode() + "..."  # type: ignore[attr-defined]
    assert len(record.getMessage()) < 200


async def test_repeated_invalid_messages_are_all_counted_but_logged_once_per_interval(
        make_server_manager: Any, broker: FlakyBroker, caplog: pytest.LogCaptureFixture) -> None:
    manager = await make_server_manager()
    for _ in range(20):
        broker.inject(CHANNEL, b"not json")
    await eventually(lambda: dropped(manager.metrics, "invalid_json") == 20)
    assert len(records(caplog, logging.WARNING, "dropped invalid queue message")) == 1


async def test_handler_that_raises_is_counted_as_handler_error_and_listener_survives(
        connect_user: ConnectUser, broker: FlakyBroker, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    alice = await connect_user("alice")

    async def broken_handler(message: dict[str, Any]) -> None:
        raise RuntimeError("handler bug")

    monkeypatch.setattr(alice.manager, "handle_close_room", broken_handler)
    broker.inject(CHANNEL, raw({"method": "close_room", "namespace": "/", "room": "r", "host_id": "other"}))
    broker.inject(CHANNEL, raw(emit_envelope("after", [1], room="user:alice")))
    assert await alice.client.wait_for("after") == 1
    assert dropped(alice.metrics, "handler_error") == 1
    (record,) = records(caplog, logging.ERROR, "queue message handler failed")
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)
    assert alice.manager.subscribed is True


async def test_disconnect_room_message_disconnects_the_room_on_another_replica_except_skip_sid(
        start_replica: StartReplica, connect_user: ConnectUser, make_manager: MakeManager) -> None:
    replica = await start_replica()
    old = await connect_user("alice", replica=replica)
    new = await connect_user("alice", replica=replica)
    bob = await connect_user("bob", replica=replica)
    emitter = make_manager(write_only=True)
    await emitter.start()
    notice = error_payload(ErrorCode.DUPLICATE_CONNECTION, "replaced")
    await emitter.disconnect_room("user:alice", skip_sid=new.sid, notice=notice)
    await old.client.wait_for_disconnect()
    assert old.client.received("error") == [notice]
    await emitter.emit("still_here", 1, room="user:alice")
    await emitter.emit("still_here", 2, room="user:bob")
    assert await new.client.wait_for("still_here") == 1
    assert await bob.client.wait_for("still_here") == 2
    assert new.client.disconnects == [] and bob.client.disconnects == []


async def test_disconnect_room_disconnects_local_sockets_and_tells_other_replicas(
        start_replica: StartReplica, connect_user: ConnectUser) -> None:
    here, there = await start_replica(), await start_replica()
    local = await connect_user("alice", replica=here)
    remote = await connect_user("alice", replica=there)
    await here.app[MANAGER].disconnect_room("user:alice")
    await local.client.wait_for_disconnect()
    await remote.client.wait_for_disconnect()
    assert local.client.received("error") == [] and remote.client.received("error") == []


async def test_ack_callback_crosses_replicas_and_runs_on_the_sender(start_replica: StartReplica,
                                                                    connect_user: ConnectUser) -> None:
    sender = await start_replica()
    alice = await connect_user("alice")
    alice.client.sio.on("question", lambda *args: ("answer", 42))
    answered: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()
    await sender.app[MANAGER].server.emit("question", {"q": 1}, to=alice.sid,
                                          callback=lambda *args: answered.set_result(args))
    assert await asyncio.wait_for(answered, 5) == ("answer", 42)
    assert received(sender.app[METRICS]) == 1  # the callback message


async def test_callback_message_runs_the_ack_only_on_the_host_it_names(make_server_manager: Any,
                                                                      broker: FlakyBroker) -> None:
    manager = await make_server_manager()
    calls: list[tuple[Any, ...]] = []
    ack_id = register_ack(manager, "sid-1", lambda *args: calls.append(args))
    message = {"method": "callback", "sid": "sid-1", "namespace": "/", "id": ack_id, "args": ["ok", 1]}
    broker.inject(CHANNEL, raw({**message, "host_id": "some-other-host"}))
    broker.inject(CHANNEL, raw({**message, "host_id": manager.host_id}))
    await eventually(lambda: received(manager.metrics) == 2)
    assert calls == [("ok", 1)]


# --- listener control -------------------------------------------------------------------------


async def test_close_cancels_and_awaits_the_listener_task(make_manager: MakeManager) -> None:
    manager = make_manager()
    await manager.start()
    (task,) = listener_tasks()
    await manager.close()
    assert task.done() and task.cancelled()
    assert manager._listener is None


async def test_outage_unsubscribes_then_resubscribes_within_retry_max(
        make_manager: MakeManager, broker: FlakyBroker, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    retry_max = 0.2
    manager = make_manager(retry_max=retry_max)
    subscriptions: list[None] = []

    async def on_subscribed() -> None:
        subscriptions.append(None)

    manager.on_subscribed(on_subscribed)
    await manager.start()
    assert subscriptions == [None]
    attempts = count_calls(monkeypatch, manager.transport, "subscribe")
    broker.go_down()
    await eventually(lambda: not manager.subscribed, what="the outage to be noticed")
    assert subscribed_gauge(manager.metrics) == 0
    assert records(caplog, logging.ERROR, "queue connection lost")
    await eventually(lambda: len(attempts) >= 6, what="backoff to reach retry_max")  # 0.05, 0.1, 0.2, 0.2...
    broker.come_back()
    await eventually(lambda: manager.subscribed, timeout=retry_max + 0.2, what="resubscription within retry_max")
    assert subscribed_gauge(manager.metrics) == 1
    assert metric(manager.metrics, "kindmap_queue_reconnects_total") == 1
    assert subscriptions == [None, None]
    broker.inject(CHANNEL, raw(emit_envelope("e", [1])))
    await eventually(lambda: received(manager.metrics) == 1, what="a message after resubscribing")


async def test_on_subscribed_callback_that_raises_is_logged_and_does_not_stop_the_listener(
        make_manager: MakeManager, broker: FlakyBroker, caplog: pytest.LogCaptureFixture) -> None:
    manager = make_manager(retry_max=0.1)
    ran: list[str] = []

    async def failing() -> None:
        ran.append("failing")
        raise RuntimeError("heartbeat failed")

    async def healthy() -> None:
        ran.append("healthy")

    manager.on_subscribed(failing)
    manager.on_subscribed(healthy)
    await manager.start()
    assert ran == ["failing", "healthy"]
    assert manager.subscribed is True
    (record,) = records(caplog, logging.ERROR, "on_subscribed callback failed")
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)
    broker.go_down()
    await eventually(lambda: not manager.subscribed)
    broker.come_back()
    await eventually(lambda: manager.subscribed and len(ran) == 4, what="resubscription with callbacks")
    broker.inject(CHANNEL, raw(emit_envelope("e", [1])))
    await eventually(lambda: received(manager.metrics) == 1)


async def test_readiness_follows_subscription_and_queue_state(make_manager: MakeManager,
                                                              broker: FlakyBroker) -> None:
    manager = make_manager(retry_max=0.1)
    assert await manager.is_ready() is False  # not started
    await manager.start()
    assert await manager.is_ready() is True
    broker.go_down()
    await eventually(lambda: not manager.subscribed)
    assert await manager.is_ready() is False


# --- shutdown ---------------------------------------------------------------------------------


async def test_close_unsubscribes_and_clears_subscribed(make_manager: MakeManager, broker: FlakyBroker) -> None:
    manager = make_manager()
    await manager.start()
    await manager.close()
    assert manager.subscribed is False
    assert subscribed_gauge(manager.metrics) == 0
    assert isinstance(manager.transport, FlakyTransport)
    assert manager.transport.channels == set()
    assert broker.inject(CHANNEL, raw(emit_envelope("e", [1]))) == 0


@pytest.mark.parametrize("write_only", [False, True], ids=["listening", "write-only"])
async def test_close_closes_the_transport(make_manager: MakeManager, monkeypatch: pytest.MonkeyPatch,
                                        write_only: bool) -> None:
    manager = make_manager(write_only=write_only)
    await manager.start()
    closes = count_calls(monkeypatch, manager.transport, "close")
    await manager.close()
    assert len(closes) == 1


async def test_close_twice_is_safe(make_manager: MakeManager, broker: FlakyBroker) -> None:
    manager = make_manager()
    await manager.start()
    await manager.close()
    await manager.close()
    assert manager.subscribed is False and manager._listener is None
    assert listener_tasks() == []


async def test_close_without_start_is_safe_and_closes_the_transport(make_manager: MakeManager,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    manager = make_manager()
    closes = count_calls(monkeypatch, manager.transport, "close")
    await manager.close()
    assert len(closes) == 1
    assert manager.subscribed is False


async def test_close_during_an_outage_stops_the_retrying_listener(make_manager: MakeManager,
                                                                  broker: FlakyBroker) -> None:
    manager = make_manager(retry_max=0.1)
    broker.go_down()
    await manager.start()
    (task,) = listener_tasks()
    await manager.close()
    assert task.cancelled()
    assert manager.subscribed is False


async def test_manager_started_again_after_close_is_not_deaf_while_reporting_ready(
        make_manager: MakeManager, broker: FlakyBroker) -> None:
    manager = make_manager()
    await manager.start()
    await manager.close()
    await manager.start()
    assert await manager.is_ready() is True
    broker.inject(CHANNEL, raw(emit_envelope("e", [1])))
    await eventually(lambda: received(manager.metrics) == 1, what="a message after restarting")


async def test_replica_shutdown_closes_its_manager(broker: FlakyBroker,
                                                  make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings(instance_id="short-lived"), backend=memory_backend(broker))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    manager = app[MANAGER]
    assert manager.subscribed is True
    await server.close()
    assert manager.subscribed is False
    assert listener_tasks() == []
    assert broker.inject(CHANNEL, b"{}") == 0


# --- isolation between tests ------------------------------------------------------------------


async def test_managers_built_per_test_have_separate_metrics_registries(make_manager: MakeManager) -> None:
    first, second = make_manager(), make_manager()
    assert first.metrics.registry is not second.metrics.registry
    await first.start()
    await first.emit("e", 1, room="r")
    assert published(first.metrics) == 1
    assert published(second.metrics) == 0


async def test_manager_without_metrics_gets_its_own_registry(broker: FlakyBroker) -> None:
    first = QueueManager(flaky_transport(broker), channel=CHANNEL)
    second = QueueManager(flaky_transport(broker), channel=CHANNEL)
    await second.start()
    await first.emit("e", 1, room="r")
    assert first.metrics is not second.metrics
    assert published(first.metrics) == 1 and published(second.metrics) == 0
    await second.close()


async def test_managers_have_distinct_host_ids_and_hear_each_other(make_manager: MakeManager) -> None:
    first, second = make_manager(), make_manager()
    assert first.host_id != second.host_id
    await first.start()
    await second.start()
    await first.emit("e", 1, room="r")
    await eventually(lambda: received(second.metrics) == 1)
    await second.emit("e", 2, room="r")
    await eventually(lambda: received(first.metrics) == 1)


async def test_log_throttling_is_per_manager(make_server_manager: Any, broker: FlakyBroker,
                                             caplog: pytest.LogCaptureFixture) -> None:
    first, second = await make_server_manager(), await make_server_manager()
    broker.inject(CHANNEL, b"not json")
    await eventually(lambda: dropped(first.metrics, "invalid_json") == 1
                     and dropped(second.metrics, "invalid_json") == 1)
    assert len(records(caplog, logging.WARNING, "dropped invalid queue message")) == 2


async def test_two_replicas_in_one_test_share_the_broker_but_not_their_state(start_replica: StartReplica) -> None:
    first, second = await start_replica(), await start_replica()
    assert first.app[METRICS] is not second.app[METRICS]
    assert first.app[MANAGER] is not second.app[MANAGER]
    assert first.app[MANAGER].host_id != second.app[MANAGER].host_id
    one, other = first.app[MANAGER].transport, second.app[MANAGER].transport
    assert isinstance(one, FlakyTransport) and isinstance(other, FlakyTransport)
    assert one is not other
    assert one.broker is other.broker


# --- edge cases -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected_args"),
    [
        pytest.param(None, (), id="none-is-no-argument"),
        pytest.param("", ("",), id="empty-string"),
        pytest.param({}, ({},), id="empty-object"),
        pytest.param([], ([],), id="empty-list-is-one-argument"),
        pytest.param((1, "둘", {"three": None}), (1, "둘", {"three": None}), id="tuple-expands-to-arguments"),
        pytest.param((5,), (5,), id="one-item-tuple"),
        pytest.param(b"\x00\x01\xfe\xff", (b"\x00\x01\xfe\xff",), id="bytes"),
    ],
)
async def test_emit_data_reaches_a_socket_on_another_replica_as_socketio_arguments(
        make_manager: MakeManager, connect_user: ConnectUser, data: Any, expected_args: tuple[Any, ...]) -> None:
    alice = await connect_user("alice")
    arrived: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()
    alice.client.sio.on("edge", lambda *args: arrived.set_result(args))
    sender = make_manager(write_only=True)
    await sender.emit("edge", data, room="user:alice")
    assert await asyncio.wait_for(arrived, 5) == expected_args


async def test_burst_of_500_messages_is_delivered_in_order_without_loss(make_manager: MakeManager,
                                                                        connect_user: ConnectUser) -> None:
    alice = await connect_user("alice")
    sender = make_manager(write_only=True)
    for i in range(500):
        await sender.emit("seq", i, room="user:alice")
    await alice.client.wait_for("seq", count=500, timeout=20)
    assert alice.client.received("seq") == list(range(500))
    assert received(alice.metrics) == 500
    assert published(sender.metrics) == 500


async def test_binary_payload_crosses_the_queue_as_base64_and_arrives_intact(
        make_manager: MakeManager, connect_user: ConnectUser, broker: FlakyBroker) -> None:
    alice = await connect_user("alice")
    blob = bytes(range(256))
    sender = make_manager(write_only=True)
    await sender.emit("tile", {"name": "지도", "png": blob}, room="user:alice")
    assert await alice.client.wait_for("tile") == {"name": "지도", "png": blob}
    (message,) = [json.loads(p) for _, p in broker.published]
    assert message["binary"] is True
    assert message["data"] == [[{"name": "지도", "png": {"_placeholder": True, "num": 0}}],
                               base64.b64encode(blob).decode()]


# --- the queue message limit (MAX_QUEUE_MESSAGE_BYTES) ------------------------------------------


def envelope_size(manager: QueueManager, data: str) -> int:
    return len(envelope.encode({"method": "emit", "event": "e", "data": [data], "binary": False, "namespace": "/",
                                "room": "user:alice", "skip_sid": None, "callback": None,
                                "host_id": manager.host_id}))


async def test_message_exactly_at_the_queue_limit_is_published_and_one_byte_more_is_refused(
        make_manager: MakeManager, broker: FlakyBroker) -> None:
    probe = make_manager(write_only=True)
    overhead = envelope_size(probe, "")
    manager = make_manager(max_message_bytes=overhead + 1000)
    await manager.start()

    await manager.emit("e", "x" * 1000, room="user:alice")
    with pytest.raises(PayloadTooLargeError, match="MAX_QUEUE_MESSAGE_BYTES"):
        await manager.emit("e", "x" * 1001, room="user:alice")

    assert [len(payload) for _channel, payload in broker.published] == [overhead + 1000]
    assert dropped(manager.metrics, "too_large") == 1


async def test_queue_limit_counts_utf8_bytes_not_characters(make_manager: MakeManager, broker: FlakyBroker) -> None:
    probe = make_manager(write_only=True)
    manager = make_manager(max_message_bytes=envelope_size(probe, "") + 1000)
    await manager.start()

    with pytest.raises(PayloadTooLargeError):
        await manager.emit("e", "환" * 500, room="user:alice")  # 500 characters, 1,500 bytes

    assert broker.published == []


async def test_a_recorded_signed_disconnect_room_published_again_is_dropped_as_a_replay(
        make_manager: MakeManager, broker: FlakyBroker, start_replica: StartReplica,
        make_client: Callable[..., RecordingClient]) -> None:
    key = "queue-signing-key-for-unit-tests-0123456789"
    replica = await start_replica(queue_signing_key=key)
    sender = make_manager(write_only=True, signing_key=key.encode())
    await sender.start()
    first = await connected(make_client, replica, "alice")
    await sender.disconnect_room("user:alice")
    await first.wait_for_disconnect()
    recorded = broker.published[-1][1]
    second = await connected(make_client, replica, "alice")

    broker.inject(CHANNEL, recorded)
    await sender.emit("marker", {}, room="user:alice")

    await second.wait_for("marker")
    assert second.disconnects == []
    assert dropped(replica.app[METRICS], "replayed") == 1


async def test_a_signed_disconnect_room_sent_in_the_millisecond_a_socket_connected_disconnects_it(
        make_manager: MakeManager, start_replica: StartReplica, make_client: Callable[..., RecordingClient],
        monkeypatch: pytest.MonkeyPatch) -> None:
    key = "queue-signing-key-for-unit-tests-0123456789"
    replica = await start_replica(queue_signing_key=key)
    sender = make_manager(write_only=True, signing_key=key.encode())
    await sender.start()
    now = time.time() + 0.0005  # not a whole ms: the envelope's ts (whole ms) is earlier
    monkeypatch.setattr(time, "time", lambda: now)  # the connect and the kick in the same instant
    alice = await connected(make_client, replica, "alice")

    await sender.disconnect_room("user:alice")

    await alice.wait_for_disconnect()


# --- directed delivery -----------------------------------------------------------------------


async def test_a_message_for_a_user_reaches_only_the_replica_holding_them(
        connect_user: ConnectUser, make_manager: MakeManager) -> None:
    alice, bob = await connect_user("alice"), await connect_user("bob")
    sender = make_manager(write_only=True)
    await sender.start()

    await sender.emit("for_alice", {"n": 1}, room="user:alice")
    await sender.emit("for_bob", {"n": 2}, room="user:bob")

    assert await alice.client.wait_for("for_alice") == {"n": 1}
    assert await bob.client.wait_for("for_bob") == {"n": 2}
    assert (received(alice.metrics), received(bob.metrics)) == (1, 1)  # neither read the other's


async def test_emit_to_user_reports_a_user_connected_nowhere_and_delivers_nothing(
        connect_user: ConnectUser, make_manager: MakeManager) -> None:
    alice = await connect_user("alice")
    sender = make_manager(write_only=True)
    await sender.start()

    assert await sender.emit_to_user("nobody", "lost", {}) == Routed(False)
    assert await sender.emit_to_user("alice", "marker", {}) == Routed(True)

    await alice.client.wait_for("marker")
    assert received(alice.metrics) == 1
    assert alice.client.received("lost") == []


async def test_emit_to_a_user_held_only_by_this_replica_is_delivered_without_the_queue(
        connect_user: ConnectUser, broker: FlakyBroker) -> None:
    alice = await connect_user("alice")

    assert await alice.manager.emit_to_user("alice", "local", {"n": 1}) == Routed(True)

    assert await alice.client.wait_for("local") == {"n": 1}
    assert broker.waiting() == 0
