"""server/app.py: what create_app builds from Settings, and the replica's lifecycle."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
import socketio
from aiohttp import web
from aiohttp.test_utils import TestServer

from kindmap_realtime.backends.memory import MemoryTransport
from kindmap_realtime.backends.memory.presence import MemoryPresence
from kindmap_realtime.backends.memory.sessions import MemorySessions
from kindmap_realtime.backends.redis.presence import RedisPresence
from kindmap_realtime.backends.redis.transport import RedisTransport
from server.app import create_app
from server.config import Settings
from server.http.app_keys import GATEWAY, MANAGER, METRICS, PRESENCE, SETTINGS, SIO
from server.manager.client_manager import QueueManager
from server.sio.gateway import Gateway
from tests.fakes.memory_backend import FlakyBroker, FlakyTransport, memory_backend
from tests.helpers.clients import MakeClient, connected, make_token
from tests.helpers.in_process import StartReplica
from tests.helpers.waiting import eventually


def gauge(app: web.Application, name: str) -> float | None:
    return app[METRICS].registry.get_sample_value(name)


def test_without_redis_url_the_replica_runs_alone_on_the_memory_backend_with_recovery(
        make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()

    app = create_app(settings)

    assert app[SETTINGS] is settings
    manager = app[MANAGER]
    assert isinstance(manager, QueueManager) and isinstance(manager.transport, MemoryTransport)
    assert isinstance(app[PRESENCE], MemoryPresence)
    assert manager.recovery is not None and isinstance(manager.recovery.store, MemorySessions)
    assert app[SIO].manager is manager
    assert isinstance(app[GATEWAY], Gateway) and app[GATEWAY].sio is app[SIO]


def test_with_a_backend_the_replica_shares_the_queue_on_the_configured_channel(
        make_settings: Callable[..., Settings]) -> None:
    backend = memory_backend(FlakyBroker())

    app = create_app(make_settings(channel="kindmap_unit"), backend=backend)

    manager = app[MANAGER]
    assert isinstance(manager, QueueManager)
    assert manager.transport is backend.transport
    assert app[PRESENCE] is backend.presence
    assert manager.channel == "kindmap_unit"
    assert manager.metrics is app[METRICS]
    assert app[SIO].manager is manager


async def test_with_redis_url_the_replica_uses_redis_for_queue_and_presence(
        make_settings: Callable[..., Settings]) -> None:
    # Nothing listens there: nothing may connect yet.
    app = create_app(make_settings(redis_url="redis://127.0.0.1:1/0", allow_unsigned_queue=True))

    manager = app[MANAGER]
    try:
        assert isinstance(manager, QueueManager)
        assert isinstance(manager.transport, RedisTransport)
        assert isinstance(app[PRESENCE], RedisPresence)
    finally:
        await manager.transport.close()


def test_each_app_counts_on_its_own_metrics(make_settings: Callable[..., Settings]) -> None:
    first, second = create_app(make_settings()), create_app(make_settings())

    first[METRICS].connections.inc()

    assert gauge(first, "kindmap_connections") == 1
    assert gauge(second, "kindmap_connections") == 0


async def test_started_replica_is_subscribed_before_any_client_arrives(
        start_replica: StartReplica, broker: FlakyBroker) -> None:
    replica = await start_replica()

    manager = replica.app[MANAGER]
    assert manager.subscribed is True
    assert isinstance(manager.transport, FlakyTransport)
    assert manager.transport.channels == {replica.app[SETTINGS].channel}
    assert gauge(replica.app, "kindmap_queue_subscribed") == 1


async def test_stopped_replica_has_unsubscribed_from_the_queue(make_settings: Callable[..., Settings],
                                                               broker: FlakyBroker) -> None:
    app = create_app(make_settings(), backend=memory_backend(broker))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    assert app[MANAGER].subscribed

    await server.close()

    assert app[MANAGER].subscribed is False
    assert gauge(app, "kindmap_queue_subscribed") == 0
    assert broker.inject(app[SETTINGS].channel, b"{}") == 0


async def test_replica_started_while_the_broker_is_down_subscribes_once_it_is_back(
        start_replica: StartReplica, broker: FlakyBroker) -> None:
    broker.go_down()
    replica = await start_replica()
    assert replica.app[MANAGER].subscribed is False

    broker.come_back()

    await eventually(lambda: replica.app[MANAGER].subscribed)


async def test_shutdown_drops_clients_without_a_goodbye_and_refuses_new_ones(
        start_replica: StartReplica, make_client: MakeClient) -> None:
    replica = await start_replica()
    client = await connected(make_client, replica, "alice")

    await replica.app.shutdown()

    # A transport error, not "server disconnect": a client treats it as lost and reconnects elsewhere.
    assert await client.wait_for_disconnect() == client.sio.reason.TRANSPORT_ERROR
    await eventually(lambda: gauge(replica.app, "kindmap_connections") == 0)
    latecomer = make_client()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await latecomer.connect(replica.url, auth={"token": make_token("bob")})
    assert (await latecomer.wait_for_connect_error())["data"]["code"] == "SERVER_SHUTTING_DOWN"


@pytest.mark.parametrize(("allowed", "origin", "accepted"), [
    pytest.param((), "https://evil.example", False, id="default-refuses-foreign-origin"),
    pytest.param(("https://kindmap.example",), "https://kindmap.example", True, id="listed-origin"),
    pytest.param(("https://kindmap.example",), "https://evil.example", False, id="unlisted-origin"),
    pytest.param(("*",), "https://anywhere.example", True, id="wildcard"),
])
async def test_cors_allowed_origins_decide_which_browsers_may_connect(
        start_replica: StartReplica, allowed: tuple[str, ...], origin: str, accepted: bool) -> None:
    replica = await start_replica(cors_allowed_origins=allowed)

    async with aiohttp.ClientSession() as session, session.get(
            f"{replica.url}/socket.io/?EIO=4&transport=polling", headers={"Origin": origin}) as response:
        status = response.status
        allow_origin = response.headers.get("Access-Control-Allow-Origin")

    assert status == (200 if accepted else 400)
    assert (allow_origin == origin) is accepted


async def test_a_given_client_manager_is_used_as_it_is_and_serves_clients(
        make_settings: Callable[..., Settings], make_client: MakeClient) -> None:
    stock = socketio.AsyncManager()  # the benchmarks pass python-socketio's stock AsyncRedisManager
    app = create_app(make_settings(), client_manager=stock)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        client = make_client()
        await client.connect(str(server.make_url("")), auth={"token": make_token("alice")})

        assert app[SIO].manager is stock and app[MANAGER] is stock
        assert isinstance(app[PRESENCE], MemoryPresence)
        assert await app[PRESENCE].is_online("alice")
        async with aiohttp.ClientSession() as session, session.get(server.make_url("/readyz")) as response:
            assert response.status == 200  # the process answers for itself: a stock manager cannot tell
    finally:
        await server.close()


@pytest.mark.parametrize("overrides", [
    pytest.param({"backend": memory_backend(FlakyBroker())}, id="with-a-backend"),
    pytest.param({"settings": {"duplicate_connection_policy": "replace"}}, id="with-the-replace-policy"),
])
def test_a_given_client_manager_refuses_what_needs_our_manager(make_settings: Callable[..., Settings],
                                                               overrides: dict[str, Any]) -> None:
    settings = make_settings(**overrides.pop("settings", {}))

    with pytest.raises(ValueError, match="client_manager"):
        create_app(settings, client_manager=socketio.AsyncManager(), **overrides)


async def test_start_up_says_where_the_demo_page_and_the_api_are(start_replica: StartReplica,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="server.app"):
        replica = await start_replica(host="0.0.0.0", port=8123)

    [started] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("replica started")]
    assert "demo page at http://127.0.0.1:8123/" in started
    assert "emit API at http://127.0.0.1:8123/api/v1/emit" in started
    assert replica.app[SETTINGS].public_url == "http://127.0.0.1:8123"


def record_calls(monkeypatch: pytest.MonkeyPatch, target: Any, method: str, calls: list[str], label: str, *,
                 error: Exception | None = None) -> None:
    """Append ``label`` to ``calls`` when ``method`` of ``target`` runs, then run it (or raise ``error``)."""
    original = getattr(target, method)

    async def recorded() -> None:
        calls.append(label)
        if error is not None:
            raise error
        await original()
    monkeypatch.setattr(target, method, recorded)


async def test_stopping_closes_presence_then_queue_then_socketio(make_settings: Callable[..., Settings],
                                                                 broker: FlakyBroker,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    backend = memory_backend(broker)
    app = create_app(make_settings(), backend=backend)
    calls: list[str] = []
    record_calls(monkeypatch, backend.presence, "close", calls, "presence")
    record_calls(monkeypatch, app[MANAGER], "close", calls, "queue")
    record_calls(monkeypatch, app[SIO], "shutdown", calls, "socketio")
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()

    await server.close()

    assert calls == ["presence", "queue", "socketio"]
    assert app[MANAGER].subscribed is False


async def test_a_part_that_fails_to_close_leaves_the_others_to_close(make_settings: Callable[..., Settings],
                                                                     broker: FlakyBroker,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    backend = memory_backend(broker)
    app = create_app(make_settings(), backend=backend)
    calls: list[str] = []
    record_calls(monkeypatch, backend.presence, "close", calls, "presence",
                 error=RuntimeError("presence would not close"))
    record_calls(monkeypatch, app[SIO], "shutdown", calls, "socketio")
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()

    with pytest.raises(RuntimeError, match="presence would not close"):
        await server.close()

    assert app[MANAGER].subscribed is False
    assert broker.inject(app[SETTINGS].channel, b"{}") == 0  # the transport unsubscribed all the same
    assert calls == ["presence", "socketio"]
