"""server/http/emit_api.py: health, readiness, metrics and the backend emit API over real HTTP."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kindmap_realtime.backends.base import Routed
from kindmap_realtime.errors import QueueBusyError
from kindmap_realtime.messages.checks import MAX_DATA_DEPTH
from server.http.app_keys import AUTHENTICATOR, GATEWAY, MANAGER, SETTINGS, SIO
from server.metrics import DROP_REASONS
from tests.fakes.memory_backend import FlakyBroker
from tests.helpers.clients import MakeClient, RecordingClient, connected, make_token
from tests.helpers.http import raw_request, request
from tests.helpers.in_process import Replica, StartReplica, sample
from tests.helpers.payloads import assert_error_payload
from tests.helpers.waiting import eventually

API_KEY = "unit-test-api-key-0123456789"




async def post_emit(replica: Replica, body: Any = None, *, raw: bytes | None = None, key: str | None = API_KEY,
                    headers: dict[str, str] | None = None) -> tuple[int, Any]:
    headers = dict(headers or {})
    if key is not None:
        headers.setdefault("Authorization", f"Bearer {key}")
    kwargs: dict[str, Any] = {"data": raw, "headers": {"Content-Type": "application/json", **headers}} \
        if raw is not None else {"json": body, "headers": headers}
    status, _type, payload = await request("POST", f"{replica.url}/api/v1/emit", **kwargs)
    return status, payload


async def connected_in_mode(make_client: MakeClient, replica: Replica, user_id: str) -> RecordingClient:
    """``connected``, but in dev mode, which has no JWT secret, the user claims their id."""
    auth = {"user_id": user_id} if replica.app[SETTINGS].dev_mode else None
    return await connected(make_client, replica, user_id, auth=auth)


async def assert_nothing_else_arrived(replica: Replica, client: RecordingClient, *events: str) -> None:
    """Send a later marker to ``client`` and wait for it; none of ``events`` may have arrived before it."""
    await replica.app[SIO].emit("marker", None, to=client.sio.get_sid("/"))
    await client.wait_for("marker")
    for event in events:
        assert client.received(event) == []


@pytest.fixture
async def api_replica(start_replica: StartReplica) -> Replica:
    """A replica with the emit API enabled."""
    return await start_replica(server_api_key=API_KEY)


# --- health, readiness, metrics ------------------------------------------------------


@pytest.mark.parametrize(("path", "status"), [("/healthz", "ok"), ("/readyz", "ready")])
async def test_probe_answers_200_with_the_instance_id(start_replica: StartReplica, path: str, status: str) -> None:
    replica = await start_replica(instance_id="replica-probe")

    assert await request("GET", f"{replica.url}{path}") == (
        200, "application/json", {"status": status, "instance_id": "replica-probe"})


async def test_healthz_stays_ok_but_readyz_is_503_with_an_error_payload_while_the_queue_is_down(
        start_replica: StartReplica, broker: FlakyBroker) -> None:
    replica = await start_replica()
    broker.go_down()

    health_status, _type, _body = await request("GET", f"{replica.url}/healthz")
    ready_status, _type, body = await request("GET", f"{replica.url}/readyz")

    assert (health_status, ready_status) == (200, 503)
    assert_error_payload(body, "QUEUE_UNAVAILABLE")


async def test_readyz_is_200_again_once_the_broker_is_back(start_replica: StartReplica, broker: FlakyBroker) -> None:
    replica = await start_replica()
    broker.go_down()
    status, _type, _body = await request("GET", f"{replica.url}/readyz")
    assert status == 503

    broker.come_back()

    async def ready() -> bool:
        status, _type, _body = await request("GET", f"{replica.url}/readyz")
        return status == 200
    await eventually(ready)


async def test_readyz_is_503_while_draining(start_replica: StartReplica, monkeypatch: pytest.MonkeyPatch) -> None:
    replica = await start_replica()
    monkeypatch.setattr(replica.app[GATEWAY], "draining", True)

    status, _type, body = await request("GET", f"{replica.url}/readyz")

    assert status == 503
    assert_error_payload(body, "SERVER_SHUTTING_DOWN")


async def test_readyz_is_200_for_a_replica_alone(start_replica: StartReplica, broker: FlakyBroker) -> None:
    replica = await start_replica(queue=False)
    broker.go_down()  # not this replica's concern: its memory backend is its own

    status, _type, body = await request("GET", f"{replica.url}/readyz")

    assert (status, body["status"]) == (200, "ready")


async def test_metrics_serves_this_replicas_series_as_prometheus_text(
        start_replica: StartReplica, make_client: MakeClient) -> None:
    replica = await start_replica()
    await connected_in_mode(make_client, replica, "alice")

    status, content_type, text = await request("GET", f"{replica.url}/metrics")

    assert (status, content_type) == (200, "text/plain")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("kindmap_connections", ())] == 1
    assert samples[("kindmap_queue_subscribed", ())] == 1
    for reason in DROP_REASONS:
        assert samples[("kindmap_messages_dropped_total", (("reason", reason),))] == 0
    assert not any(name.startswith("python_") or name.startswith("process_") for name, _ in samples)


# --- POST /api/v1/emit ---------------------------------------------------------------


async def test_emit_api_is_404_without_a_server_api_key(start_replica: StartReplica) -> None:
    replica = await start_replica()

    status, body = await post_emit(replica, {"user_id": "alice", "event": "arrival", "data": None})

    assert status == 404
    assert_error_payload(body, "NOT_FOUND")


@pytest.mark.parametrize("settings", [
    pytest.param({"server_api_key": API_KEY}, id="api-key"),
    pytest.param({"auth_mode": "dev"}, id="dev-mode"),
    pytest.param({"auth_mode": "dev", "server_api_key": API_KEY}, id="dev-mode-and-api-key"),
])
@pytest.mark.parametrize("authorization", [
    pytest.param(None, id="missing"),
    pytest.param(f"Bearer {API_KEY}x", id="wrong-key"),
    pytest.param("Bearer ", id="empty-key"),
    pytest.param(API_KEY, id="no-scheme"),
    pytest.param(f"Basic {API_KEY}", id="other-scheme"),
    pytest.param("Bearer not-a-token", id="garbage"),
    pytest.param(f"Bearer {make_token('alice')}", id="a-jwt-that-is-not-a-dev-token"),
])
async def test_emit_api_refuses_a_missing_or_wrong_key_or_token_with_401(
        start_replica: StartReplica, make_client: MakeClient, settings: dict[str, Any],
        authorization: str | None) -> None:
    replica = await start_replica(**settings)
    alice = await connected_in_mode(make_client, replica, "alice")
    headers = {} if authorization is None else {"Authorization": authorization}

    status, body = await post_emit(replica, {"user_id": "alice", "event": "arrival", "data": 1},
                                   key=None, headers=headers)

    assert status == 401
    assert_error_payload(body, "UNAUTHORIZED")
    await assert_nothing_else_arrived(replica, alice, "arrival")


@pytest.mark.parametrize("body", [
    pytest.param(b"{not json", id="bad-json"),
    pytest.param(b"", id="empty-body"),
    pytest.param(b"[1, 2]", id="json-list"),
    pytest.param(b'"alice"', id="json-string"),
    pytest.param(b'{"user_id": "alice", "event": "arrival", "data": 1, "priority": "high"}', id="extra-field"),
    pytest.param(b'{"user_id": "alice smith", "event": "arrival"}', id="bad-user-id"),
    pytest.param(b'{"user_id": 42, "event": "arrival"}', id="numeric-user-id"),
    pytest.param(b'{"event": "arrival"}', id="missing-user-id"),
    pytest.param(b'{"user_id": "alice"}', id="missing-event"),
    pytest.param(b'{"user_id": "alice", "event": ""}', id="empty-event"),
    pytest.param(b'{"user_id": "alice", "event": "connect"}', id="reserved-connect"),
    pytest.param(b'{"user_id": "alice", "event": "disconnect"}', id="reserved-disconnect"),
    pytest.param(b'{"user_id": "alice", "event": "connect_error"}', id="reserved-connect-error"),
    pytest.param(b"\xff\xfe{}", id="not-utf-8"),
    pytest.param(b'{"user_id": "alice", "event": "e", "data": ' + b"7" * 5000 + b"}", id="5000-digit-integer"),
    pytest.param(b"[" * 30_000 + b"]" * 30_000, id="nested-past-the-parser"),
    pytest.param(b'{"user_id": "alice", "event": "e", "data": ' + b"[" * 33 + b"]" * 33 + b"}",
                 id="data-nested-33-deep"),
    pytest.param(b'{"user_id": "alice", "event": "e", "data": {"speed": NaN}}', id="nan"),
    pytest.param(b'{"user_id": "alice", "event": "e", "data": [Infinity]}', id="infinity"),
    pytest.param(b'{"user_id": "alice", "event": "e", "data": -Infinity}', id="minus-infinity"),
    pytest.param(b'{"user_id": "alice", "event": "e", "data": "\\ud800"}', id="data-lone-surrogate"),
    pytest.param(b'{"user_id": "alice", "event": "\\udfff", "data": 1}', id="event-lone-surrogate"),
])
async def test_emit_api_refuses_a_malformed_body_with_400(api_replica: Replica, make_client: MakeClient,
                                                          body: bytes) -> None:
    alice = await connected_in_mode(make_client, api_replica, "alice")

    status, payload = await post_emit(api_replica, raw=body)

    assert status == 400
    assert_error_payload(payload, "INVALID_PARAMETERS")
    await assert_nothing_else_arrived(api_replica, alice)
    assert [name for name, _data in alice.events] == ["connected", "marker"]


async def test_emit_api_refuses_an_oversized_body_with_413(start_replica: StartReplica,
                                                           make_client: MakeClient) -> None:
    replica = await start_replica(server_api_key=API_KEY, max_payload_bytes=1024)
    alice = await connected_in_mode(make_client, replica, "alice")

    status, body = await post_emit(replica, {"user_id": "alice", "event": "arrival", "data": "x" * 2048})

    assert status == 413
    assert_error_payload(body, "PAYLOAD_TOO_LARGE")
    await assert_nothing_else_arrived(replica, alice, "arrival")


async def test_emit_api_accepts_data_nested_32_deep(api_replica: Replica, make_client: MakeClient) -> None:
    alice = await connected_in_mode(make_client, api_replica, "alice")
    data: Any = "deep"
    for _ in range(MAX_DATA_DEPTH):
        data = [data]

    status, _body = await post_emit(api_replica, {"user_id": "alice", "event": "arrival", "data": data})

    assert status == 202
    assert await alice.wait_for("arrival") == data


async def test_emit_api_answers_413_at_once_to_a_content_length_over_the_limit_without_a_body(
        api_replica: Replica) -> None:
    head = (b"POST /api/v1/emit HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + API_KEY.encode() + b"\r\nContent-Length: 10000000")

    status, body = await raw_request(api_replica.url, head)

    assert status == 413
    assert_error_payload(body, "PAYLOAD_TOO_LARGE")


@pytest.mark.parametrize("settings", [
    pytest.param({"server_api_key": API_KEY}, id="api-key"),
    pytest.param({"auth_mode": "dev"}, id="dev-mode"),
])
async def test_emit_api_answers_401_to_an_authorization_header_with_a_non_ascii_byte(
        start_replica: StartReplica, settings: dict[str, Any]) -> None:
    replica = await start_replica(**settings)
    head = (b"POST /api/v1/emit HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer \xff" + API_KEY.encode())
    body = b'{"user_id": "alice", "event": "arrival"}'

    status, payload = await raw_request(replica.url, head + b"\r\nContent-Length: %d" % len(body), body)

    assert status == 401
    assert_error_payload(payload, "UNAUTHORIZED")


async def test_emit_api_refuses_a_message_over_the_queue_limit_with_413_and_counts_it(
        start_replica: StartReplica, make_client: MakeClient) -> None:
    replica = await start_replica(server_api_key=API_KEY, max_queue_message_bytes=1024)
    alice = await connected_in_mode(make_client, replica, "alice")

    status, body = await post_emit(replica, {"user_id": "alice", "event": "arrival", "data": "x" * 1024})

    assert status == 413
    assert_error_payload(body, "PAYLOAD_TOO_LARGE")
    assert "MAX_QUEUE_MESSAGE_BYTES" in body["message"]
    assert sample(replica, "kindmap_messages_dropped_total", reason="too_large") == 1
    await assert_nothing_else_arrived(replica, alice, "arrival")


async def test_emit_api_answers_503_queue_busy_with_retry_after_when_redis_is_only_busy(
        api_replica: Replica, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch) -> None:
    alice = await connected_in_mode(make_client, api_replica, "alice")

    async def busy(channel: str, user_id: str, data: bytes, *, volatile: bool = False) -> Routed:
        raise QueueBusyError("all 64 Redis connections stayed busy")

    monkeypatch.setattr(api_replica.app[MANAGER].transport, "publish_to_user", busy)
    async with aiohttp.ClientSession() as session, session.post(
            f"{api_replica.url}/api/v1/emit", json={"user_id": "alice", "event": "arrival"},
            headers={"Authorization": f"Bearer {API_KEY}"}) as response:
        status, retry_after, body = response.status, response.headers.get("Retry-After"), await response.json()

    assert (status, retry_after) == (503, "1")
    assert_error_payload(body, "QUEUE_BUSY")
    await assert_nothing_else_arrived(api_replica, alice, "arrival")


async def test_emit_api_answers_404_for_a_user_connected_nowhere_and_counts_the_drop(api_replica: Replica) -> None:
    before = sample(api_replica, "kindmap_messages_dropped_total", reason="user_not_connected")
    assert before is not None

    status, body = await post_emit(api_replica, {"user_id": "nobody", "event": "arrival", "data": 1})

    assert status == 404
    assert_error_payload(body, "USER_NOT_CONNECTED")
    assert sample(api_replica, "kindmap_messages_dropped_total", reason="user_not_connected") == before + 1


async def test_emit_api_delivers_to_a_connected_user_with_202(api_replica: Replica, make_client: MakeClient) -> None:
    alice = await connected_in_mode(make_client, api_replica, "alice")

    status, body = await post_emit(api_replica, {"user_id": "alice", "event": "arrival", "data": {"exit": 3}})

    assert status == 202
    assert body == {"status": "sent", "user_id": "alice", "event": "arrival"}
    assert await alice.wait_for("arrival") == {"exit": 3}


async def test_emit_api_without_data_delivers_none(api_replica: Replica, make_client: MakeClient) -> None:
    alice = await connected_in_mode(make_client, api_replica, "alice")

    status, _body = await post_emit(api_replica, {"user_id": "alice", "event": "navigation_ended"})

    assert status == 202
    assert await alice.wait_for("navigation_ended") is None


async def test_emit_api_reaches_a_user_connected_to_another_replica(start_replica: StartReplica,
                                                                    make_client: MakeClient) -> None:
    entry = await start_replica(server_api_key=API_KEY)
    home = await start_replica(server_api_key=API_KEY)
    alice = await connected_in_mode(make_client, home, "alice")

    status, _body = await post_emit(entry, {"user_id": "alice", "event": "arrival", "data": "via queue"})

    assert status == 202
    assert await alice.wait_for("arrival") == "via queue"


async def test_emit_api_delivers_to_every_replica_holding_a_socket_of_the_user(
        start_replica: StartReplica, make_client: MakeClient) -> None:
    entry = await start_replica(server_api_key=API_KEY)
    other = await start_replica(server_api_key=API_KEY)
    here = await connected_in_mode(make_client, entry, "alice")
    there = await connected_in_mode(make_client, other, "alice")

    status, _body = await post_emit(entry, {"user_id": "alice", "event": "arrival", "data": "both"})

    assert status == 202
    assert await here.wait_for("arrival") == "both"
    assert await there.wait_for("arrival") == "both"


async def test_emit_api_answers_503_when_the_broker_is_down(api_replica: Replica, make_client: MakeClient,
                                                            broker: FlakyBroker) -> None:
    await connected_in_mode(make_client, api_replica, "alice")
    broker.go_down()

    status, body = await post_emit(api_replica, {"user_id": "alice", "event": "arrival", "data": 1})

    assert status == 503
    assert_error_payload(body, "QUEUE_UNAVAILABLE")
    assert sample(api_replica, "kindmap_messages_dropped_total", reason="publish_failed") == 1


async def test_emit_api_answering_503_has_delivered_nothing(api_replica: Replica, make_client: MakeClient,
                                                            broker: FlakyBroker) -> None:
    alice = await connected_in_mode(make_client, api_replica, "alice")
    broker.go_down()

    status, _body = await post_emit(api_replica, {"user_id": "alice", "event": "arrival", "data": 1})

    assert status == 503
    await assert_nothing_else_arrived(api_replica, alice, "arrival")


# --- POST /api/v1/emit in dev mode: the demo page, authorised by its dev token ------------


def dev_token(replica: Replica, user_id: str = "alice") -> str:
    return str(replica.app[AUTHENTICATOR].issue_dev_token(user_id).token)


@pytest.fixture
async def dev_replica(start_replica: StartReplica) -> Replica:
    """Dev mode as ``make dev`` runs it: no JWT_SECRET, no SERVER_API_KEY."""
    return await start_replica(auth_mode="dev", jwt_secret=None)


async def test_dev_mode_emit_with_a_dev_token_delivers_without_an_api_key(
        dev_replica: Replica, make_client: MakeClient, caplog: pytest.LogCaptureFixture) -> None:
    bob = make_client()
    await bob.connect(dev_replica.url, auth={"token": dev_token(dev_replica, "bob")})

    with caplog.at_level(logging.DEBUG, logger="server.http.emit_api"):
        status, body = await post_emit(dev_replica, {"user_id": "bob", "event": "arrival", "data": {"exit": 2}},
                                       key=dev_token(dev_replica, "alice"))

    assert status == 202
    assert body == {"status": "sent", "user_id": "bob", "event": "arrival"}
    assert await bob.wait_for("arrival") == {"exit": 2}
    [record] = [r for r in caplog.records if r.getMessage() == "demo emit"]
    extra = vars(record)
    assert (extra["from_user"], extra["user_id"], extra["event"]) == ("alice", "bob", "arrival")


async def test_dev_mode_emit_reaches_a_user_on_another_replica(start_replica: StartReplica,
                                                               make_client: MakeClient) -> None:
    entry = await start_replica(auth_mode="dev", jwt_secret=None)
    home = await start_replica(auth_mode="dev", jwt_secret=None)
    bob = make_client()
    await bob.connect(home.url, auth={"token": dev_token(home, "bob")})

    status, _body = await post_emit(entry, {"user_id": "bob", "event": "arrival", "data": "crossed"},
                                    key=dev_token(entry, "alice"))

    assert status == 202
    assert await bob.wait_for("arrival") == "crossed"


async def test_dev_mode_emit_refuses_a_dev_token_of_another_replica(start_replica: StartReplica,
                                                                    make_client: MakeClient) -> None:
    replica = await start_replica(auth_mode="dev", jwt_secret=None)
    other = await start_replica(auth_mode="dev", jwt_secret=None)
    alice = make_client()
    await alice.connect(replica.url, auth={"token": dev_token(replica)})

    status, body = await post_emit(replica, {"user_id": "alice", "event": "arrival"}, key=dev_token(other))

    assert status == 401
    assert_error_payload(body, "UNAUTHORIZED")
    assert "dev token" in body["message"]


async def test_dev_mode_emit_still_takes_the_api_key(start_replica: StartReplica, make_client: MakeClient) -> None:
    replica = await start_replica(auth_mode="dev", server_api_key=API_KEY)
    alice = await connected_in_mode(make_client, replica, "alice")

    status, _body = await post_emit(replica, {"user_id": "alice", "event": "arrival", "data": 1})

    assert status == 202
    assert await alice.wait_for("arrival") == 1


async def test_outside_dev_mode_a_dev_token_is_refused_by_the_emit_api(
        start_replica: StartReplica, api_replica: Replica, make_client: MakeClient) -> None:
    dev = await start_replica(auth_mode="dev")
    alice = await connected_in_mode(make_client, api_replica, "alice")

    status, body = await post_emit(api_replica, {"user_id": "alice", "event": "arrival"}, key=dev_token(dev))

    assert status == 401
    assert_error_payload(body, "UNAUTHORIZED")
    await assert_nothing_else_arrived(api_replica, alice, "arrival")


async def test_outside_dev_mode_without_an_api_key_the_emit_api_ignores_dev_tokens(start_replica: StartReplica) -> None:
    dev = await start_replica(auth_mode="dev")
    replica = await start_replica()

    status, body = await post_emit(replica, {"user_id": "alice", "event": "arrival"}, key=dev_token(dev))

    assert status == 404
    assert_error_payload(body, "NOT_FOUND")


# --- everything else -----------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "status", "code"), [
    pytest.param("GET", "/no/such/path", 404, "NOT_FOUND", id="unknown-path"),
    pytest.param("GET", "/api/v1/emit", 405, "METHOD_NOT_ALLOWED", id="get-emit"),
    pytest.param("POST", "/healthz", 405, "METHOD_NOT_ALLOWED", id="post-healthz"),
])
async def test_http_errors_use_the_error_schema(api_replica: Replica, method: str, path: str, status: int,
                                                code: str) -> None:
    got_status, content_type, body = await request(method, f"{api_replica.url}{path}")

    assert (got_status, content_type) == (status, "application/json")
    assert_error_payload(body, code)


@pytest.mark.parametrize(("method", "path", "status"), [
    pytest.param("PUT", "/socket.io/?EIO=4&transport=polling", 405, id="router-refusal"),
])
async def test_socket_io_path_errors_are_not_rewritten(start_replica: StartReplica, method: str, path: str,
                                                       status: int) -> None:
    replica = await start_replica()

    got_status, content_type, _body = await request(method, f"{replica.url}{path}")

    assert (got_status, content_type) == (status, "text/plain")

