"""server/sio/token_expiry.py: a socket closes when its token expires, unless refreshed in time."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from typing import Any

import aiohttp
import jwt
import pytest

from server.http.app_keys import GATEWAY, SIO
from server.sio.auth import Identity
from server.sio.token_expiry import TokenExpiry
from tests.helpers.clients import TEST_SECRET, MakeClient, connected, make_token
from tests.helpers.in_process import StartReplica
from tests.helpers.raw_engineio import RECORD_SEPARATOR, engineio_url, open_polling_session, poll
from tests.helpers.waiting import eventually


def expiring_token(user_id: str, seconds: float) -> tuple[str, float]:
    """A token whose exp (a float, as the JWT spec allows) is ``seconds`` from now."""
    exp = time.time() + seconds
    return jwt.encode({"sub": user_id, "exp": exp}, TEST_SECRET, algorithm="HS256"), exp


async def after(moment: float) -> None:
    await eventually(lambda: time.time() > moment, timeout=10, what="the old token's expiry")


async def test_a_socket_is_told_token_expired_and_disconnected_when_its_token_expires(
        start_replica: StartReplica, make_client: MakeClient) -> None:
    replica = await start_replica()
    token, _ = expiring_token("alice", 2.0)
    client = await connected(make_client, replica, auth={"token": token})

    error = await client.wait_for("error")
    assert error["code"] == "TOKEN_EXPIRED"
    assert await client.wait_for_disconnect() == "server disconnect"
    assert len(replica.app[GATEWAY].token_expiry) == 0


async def test_a_fresh_token_for_the_same_user_keeps_the_socket_open_past_the_old_expiry(
        start_replica: StartReplica, make_client: MakeClient) -> None:
    replica = await start_replica()
    token, old_exp = expiring_token("alice", 3.0)
    client = await connected(make_client, replica, auth={"token": token})
    fresh, fresh_exp = expiring_token("alice", 300.0)

    ack = await client.sio.call("refresh_token", {"token": fresh}, timeout=5)

    assert ack == await client.wait_for("token_refreshed")
    assert datetime.fromisoformat(ack["expires_at"]).timestamp() == pytest.approx(fresh_exp)
    await after(old_exp + 0.3)
    assert await client.sio.call("ping", timeout=5) is not None
    assert client.received("error") == [] and client.disconnects == []


@pytest.mark.parametrize(("payload", "code"), [
    ({"token": make_token("mallory")}, "INVALID_TOKEN"),
    ({"token": make_token("alice", secret="another-secret-of-enough-length-0123456789")}, "INVALID_TOKEN"),
    ({"token": make_token("alice", expires_in=-60)}, "INVALID_TOKEN"),
    ({"token": "not-a-jwt"}, "INVALID_TOKEN"),
    ({"token": ""}, "INVALID_PARAMETERS"),
    ("just-a-string", "INVALID_PARAMETERS"),
    ({"token": make_token("alice"), "extra": 1}, "INVALID_PARAMETERS"),
])
async def test_a_refused_refresh_gets_an_error_and_an_error_ack(start_replica: StartReplica, make_client: MakeClient,
                                                                payload: Any, code: str) -> None:
    replica = await start_replica()
    client = await connected(make_client, replica, "alice")

    ack = await client.sio.call("refresh_token", payload, timeout=5)

    assert ack["code"] == code and (await client.wait_for("error"))["code"] == code
    assert client.received("token_refreshed") == [] and client.disconnects == []


async def test_after_a_refused_refresh_the_old_expiry_still_applies(start_replica: StartReplica,
                                                                    make_client: MakeClient) -> None:
    replica = await start_replica()
    token, _ = expiring_token("alice", 3.0)
    client = await connected(make_client, replica, auth={"token": token})

    await client.sio.call("refresh_token", {"token": make_token("mallory")}, timeout=5)

    assert (await client.wait_for("error", count=2))["code"] == "TOKEN_EXPIRED"
    await client.wait_for_disconnect()


async def test_a_closed_socket_leaves_no_timer_behind(start_replica: StartReplica, make_client: MakeClient) -> None:
    replica = await start_replica()
    client = await connected(make_client, replica, "alice")
    expiry = replica.app[GATEWAY].token_expiry
    assert len(expiry) == 1

    await client.disconnect()

    await eventually(lambda: len(expiry) == 0, what="timer dropped")


@pytest.mark.parametrize("presence_slow", [True, False], ids=["while-presence-is-updated", "after-the-socket-went"])
async def test_a_refresh_racing_the_close_of_its_socket_leaves_no_timer_behind(
        start_replica: StartReplica, monkeypatch: pytest.MonkeyPatch, presence_slow: bool) -> None:
    replica = await start_replica()
    sio, gateway = replica.app[SIO], replica.app[GATEWAY]
    expiry = gateway.token_expiry
    refreshed, raised = asyncio.Event(), []
    handler, remove = sio.handlers["/"]["refresh_token"], gateway.presence.remove

    async def refresh_then_tell(sid: str, *args: Any) -> Any:
        try:
            return await handler(sid, *args)
        except Exception as exc:
            raised.append(exc)
            raise
        finally:
            refreshed.set()

    async def remove_once_refreshed(user_id: str, sid: str) -> None:  # as when Redis is slow to answer
        await asyncio.wait_for(refreshed.wait(), 5)
        await remove(user_id, sid)

    monkeypatch.setitem(sio.handlers["/"], "refresh_token", refresh_then_tell)
    if presence_slow:
        monkeypatch.setattr(gateway.presence, "remove", remove_once_refreshed)
    async with aiohttp.ClientSession() as session:
        sid = await open_polling_session(session, replica.url)
        url = engineio_url(replica.url, sid=sid)
        async with session.post(url, data="40" + json.dumps({"token": make_token("alice")})) as response:
            assert response.status == 200
        assert (await poll(session, replica.url, sid))[0] == 200
        assert len(expiry) == 1
        refresh = "42" + json.dumps(["refresh_token", {"token": make_token("alice", expires_in=300)}])
        # The refresh and the close in one long-poll body: the handler runs while the socket goes.
        async with session.post(url, data=refresh + RECORD_SEPARATOR + "1") as response:
            assert response.status == 200

        await asyncio.wait_for(refreshed.wait(), 5)

    await eventually(lambda: sid not in sio.eio.sockets or sio.eio.sockets[sid].closed, what="session closed")
    assert len(expiry) == 0 and raised == []


async def test_a_user_id_claimed_in_dev_mode_has_no_expiry(start_replica: StartReplica,
                                                           make_client: MakeClient) -> None:
    replica = await start_replica(auth_mode="dev")
    client = make_client()
    await client.connect(replica.url, auth={"user_id": "alice"})
    assert len(replica.app[GATEWAY].token_expiry) == 0


async def test_deadlines_of_sockets_gone_do_not_pile_up_until_their_tokens_would_expire() -> None:
    class Server:
        def on(self, _event: str, _handler: Any) -> None:
            pass

    expiry = TokenExpiry(Server(), authenticator=None)  # type: ignore[arg-type]
    kept = Identity(user_id="alice", expires_at=time.time() + 3600)
    expiry.watch("kept", kept)
    for n in range(5 * 1024):
        expiry.watch(f"sid-{n}", kept)
        expiry.forget(f"sid-{n}")

    assert len(expiry) == 1
    assert len(expiry._deadlines) <= 1024 + 2 * len(expiry)  # pruned as it went
