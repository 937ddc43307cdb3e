"""server/http/dev_api.py: ``GET /api/v1/dev/token`` exists in dev mode only, and its tokens connect."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from server.http.app_keys import SIO
from tests.helpers.clients import MakeClient
from tests.helpers.http import request
from tests.helpers.in_process import Replica, StartReplica
from tests.helpers.payloads import assert_error_payload

TOKEN_PATH = "/api/v1/dev/token"


async def get_token(replica: Replica, query: str = "?user_id=alice") -> tuple[int, dict[str, str], Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{replica.url}{TOKEN_PATH}{query}") as response:
        return response.status, dict(response.headers), await response.json()


async def test_dev_mode_issues_a_token_that_connects_as_the_user(start_replica: StartReplica,
                                                                 make_client: MakeClient) -> None:
    replica = await start_replica(auth_mode="dev", jwt_secret=None)

    status, headers, body = await get_token(replica, "?user_id=alice")

    assert status == 200
    assert headers["Cache-Control"] == "no-store"
    assert set(body) == {"user_id", "token", "expires_at"}
    assert body["user_id"] == "alice"
    expires_at = datetime.fromisoformat(body["expires_at"])
    assert expires_at.utcoffset() == timedelta(0)
    assert expires_at > datetime.now(UTC) + timedelta(minutes=59)
    client = make_client()
    await client.connect(replica.url, auth={"token": body["token"]})
    assert (await client.wait_for("connected"))["user_id"] == "alice"


@pytest.mark.parametrize("settings", [
    pytest.param({}, id="jwt-mode"),
    pytest.param({"server_api_key": "unit-test-api-key-0123456789"}, id="jwt-mode-with-api-key"),
])
async def test_outside_dev_mode_the_token_endpoint_does_not_exist(start_replica: StartReplica,
                                                                  settings: dict[str, Any]) -> None:
    replica = await start_replica(**settings)

    status, _headers, body = await get_token(replica, "?user_id=alice")

    assert status == 404
    assert_error_payload(body, "NOT_FOUND")


@pytest.mark.parametrize("query", [
    pytest.param("", id="no-user-id"),
    pytest.param("?user_id=", id="empty"),
    pytest.param("?user_id=alice%20smith", id="space"),
    pytest.param("?user_id=" + "a" * 129, id="too-long"),
    pytest.param("?user_id=a/b", id="slash"),
])
async def test_a_bad_user_id_gets_400(start_replica: StartReplica, query: str) -> None:
    replica = await start_replica(auth_mode="dev")

    status, _headers, body = await get_token(replica, query)

    assert status == 400
    assert_error_payload(body, "INVALID_PARAMETERS")


async def test_the_token_endpoint_answers_get_only(start_replica: StartReplica) -> None:
    replica = await start_replica(auth_mode="dev")

    status, _type, body = await request("POST", f"{replica.url}{TOKEN_PATH}?user_id=alice")

    assert status == 405
    assert_error_payload(body, "METHOD_NOT_ALLOWED")


# --- DNS rebinding: dev mode answers loopback host names (and DEV_ALLOWED_HOSTS) only --------


async def status_with_host(url: str, host: str, method: str = "GET", **kwargs: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.request(
            method, url, headers={"Host": host, **kwargs.pop("headers", {})}, **kwargs) as response:
        body = await response.json() if response.content_type == "application/json" else await response.text()
        return response.status, body


REBOUND_REQUESTS = [
    pytest.param("GET", f"{TOKEN_PATH}?user_id=alice", {}, id="dev-token"),
    pytest.param("POST", "/api/v1/emit", {"json": {"user_id": "bob", "event": "e"}}, id="emit"),
    pytest.param("GET", "/socket.io/?EIO=4&transport=polling", {}, id="socketio-handshake"),
    pytest.param("GET", "/", {}, id="demo-page"),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), REBOUND_REQUESTS)
@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", "localhost.evil"])
async def test_dev_mode_refuses_a_request_for_another_host_name_with_403(
        start_replica: StartReplica, method: str, path: str, kwargs: dict[str, Any], host: str) -> None:
    replica = await start_replica(auth_mode="dev")

    status, body = await status_with_host(f"{replica.url}{path}", host, method, **kwargs)

    assert status == 403
    assert_error_payload(body, "HOST_NOT_ALLOWED")


async def test_a_rebound_page_cannot_open_a_websocket(start_replica: StartReplica) -> None:
    replica = await start_replica(auth_mode="dev")

    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(f"{replica.url}/socket.io/?EIO=4&transport=websocket",
                                     headers={"Host": "evil.example", "Origin": "http://evil.example"})

    assert refused.value.status == 403
    assert replica.app[SIO].eio.sockets == {}


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost:8000", "LOCALHOST", "app.localhost:8000", "[::1]:8000",
                                  "127.8.9.10"])
async def test_dev_mode_answers_loopback_host_names(start_replica: StartReplica, host: str) -> None:
    replica = await start_replica(auth_mode="dev")

    status, body = await status_with_host(f"{replica.url}{TOKEN_PATH}?user_id=alice", host)

    assert status == 200
    assert body["user_id"] == "alice"


async def test_dev_mode_answers_a_host_named_in_dev_allowed_hosts(start_replica: StartReplica) -> None:
    replica = await start_replica(auth_mode="dev", dev_allowed_hosts=("laptop.lan",))

    assert (await status_with_host(f"{replica.url}{TOKEN_PATH}?user_id=alice", "Laptop.lan:8000"))[0] == 200
    assert (await status_with_host(f"{replica.url}{TOKEN_PATH}?user_id=alice", "other.lan"))[0] == 403


async def test_outside_dev_mode_any_host_name_is_served(start_replica: StartReplica) -> None:
    replica = await start_replica()

    status, body = await status_with_host(f"{replica.url}/healthz", "realtime.kindmap.example")

    assert status == 200
    assert body["status"] == "ok"
