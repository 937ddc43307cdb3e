"""Connection state recovery as the demo page shows it, in headless Chromium against real replicas.

The page is cut off the network (Playwright's offline mode: its WebSocket closes at once and
its reconnection attempts fail) so that the messages it misses are all sent before it can
come back, wherever its replica is. Screenshots land in test-artifacts/e2e/.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable

import pytest
from playwright.async_api import expect

from cluster import LocalCluster
from kindmap_realtime.emitter import Emitter
from kindmap_realtime.errors import UserNotConnectedError
from tests.e2e.conftest import DEV_MODE
from tests.helpers.browser import PHONE, SLOW_MS, OpenPage
from tests.helpers.cluster import Cluster, unique_user
from tests.helpers.http import metric
from tests.helpers.waiting import eventually

EVENT = "navigation_update"
OFFSET = re.compile(r"[0-9]+-[0-9]+")
# What Chromium logs for the requests a page makes while it is offline or its replica is down.
OFFLINE = ("ERR_INTERNET_DISCONNECTED", "ERR_CONNECTION_REFUSED")


def step(n: int) -> dict[str, object]:
    return {"instruction": f"step {n}", "n": n}


async def session_gone(replica_url: str) -> None:
    """Until the replica has seen the page's only socket go (the page saw it first)."""
    async def no_socket() -> bool:
        return await metric(replica_url, "kindmap_connections") == 0

    await eventually(no_socket, what="the replica saw the socket go")


def as_offset(value: str | None) -> tuple[int, int]:
    assert value is not None and OFFSET.fullmatch(value), value
    ms, seq = value.split("-")
    return int(ms), int(seq)


async def test_a_page_whose_replica_is_killed_shows_the_missed_messages_recovered_through_nginx_in_order(
        nginx_dev_cluster: LocalCluster, open_page: OpenPage) -> None:
    rider, missed = unique_user("rider"), 5
    page = await open_page(f"{nginx_dev_cluster.url}/?user={rider}")
    await page.connect()
    await expect(page.readout("session")).to_have_text("New session")
    holder_id = await page.readout("replica").inner_text()
    sid = await page.readout("sid").inner_text()
    holder = next(r for r in nginx_dev_cluster.replicas if r.instance_id == holder_id)
    channel = nginx_dev_cluster.env["SOCKETIO_CHANNEL"]
    async with Emitter(nginx_dev_cluster.redis_url, channel=channel) as emitter:
        assert await emitter.send_to_user(rider, EVENT, step(0)) == "sent"
        await expect(page.received(EVENT)).to_have_count(1)

        holder.kill()
        await page.set_offline(True)  # before its first reconnection attempt, at least half a second away
        await expect(page.readout("state")).to_contain_text("Reconnecting")
        statuses = [await emitter.send_to_user(rider, EVENT, step(n)) for n in range(1, missed + 1)]
        await page.set_offline(False)

        await expect(page.readout("session")).to_have_text(f"Recovered {missed} missed messages", timeout=SLOW_MS)

    assert set(statuses) <= {"sent", "stored"}
    await expect(page.readout("state")).to_have_text("Connected")
    await expect(page.readout("sid")).to_have_text(sid)
    await expect(page.readout("replica")).not_to_have_text(holder_id)
    await expect(page.log_entries("session")).to_have_text([
        re.compile(rf"Recovered {missed} missed messages \(above, in order\): the session was restored")])
    # Once each, in order, the offset kept apart from the data, before the notice that counts them.
    assert await page.payloads(EVENT) == [step(n) for n in range(missed + 1)]
    offsets = [as_offset(offset) for offset in await page.offsets(EVENT)]
    assert offsets == sorted(set(offsets))
    order = await page.log_order()
    assert order.index("session") > max(i for i, entry in enumerate(order) if entry == f"received:{EVENT}")
    await expect(page.received(EVENT).first.locator(".offset")).to_have_text(re.compile(r"^offset [0-9]+-[0-9]+$"))
    await page.screenshot("recovered-after-replica-killed")
    assert page.unexpected_console_errors(*OFFLINE) == []


async def test_a_message_another_page_sends_while_the_page_is_offline_is_stored_then_recovered(
        start_cluster: Callable[..., Cluster], open_page: OpenPage) -> None:
    """The demo's own send form (the HTTP API) says the message was stored, not sent; the
    offline page, back on its live replica, gets it."""
    first, second = start_cluster(2, **DEV_MODE).replicas
    rider, sender = unique_user("rider"), unique_user("sender")
    page = await open_page(f"{first.url}/?user={rider}")
    other = await open_page(f"{second.url}/?user={sender}&to={rider}")
    await page.connect()
    await other.connect()
    await page.set_offline(True)
    await expect(page.readout("state")).to_contain_text("Reconnecting")
    await session_gone(first.url)

    await other.send(rider, EVENT, json.dumps(step(1)))
    await expect(other.page.locator("#send-result")).to_have_text(
        f"Stored {EVENT} for {rider}: they are offline; it reaches them if they reconnect within the recovery window.")
    await expect(other.log_entries("sent")).to_contain_text(f"{EVENT} to {rider} (stored)")
    await page.set_offline(False)

    await expect(page.readout("session")).to_have_text("Recovered 1 missed message", timeout=SLOW_MS)
    await expect(page.readout("replica")).to_have_text(first.instance_id)
    assert await page.payloads(EVENT) == [step(1)]
    await other.screenshot("stored-for-an-offline-user")
    await page.screenshot("recovered-after-going-offline")
    assert page.unexpected_console_errors(*OFFLINE) == []
    assert other.unexpected_console_errors() == []


async def test_a_page_back_after_the_recovery_window_shows_a_new_session_to_resync(
        start_cluster: Callable[..., Cluster], open_page: OpenPage) -> None:
    cluster = start_cluster(1, RECOVERY_WINDOW_SECONDS="1", **DEV_MODE)
    [replica] = cluster.replicas
    rider = unique_user("rider")
    page = await open_page(f"{replica.url}/?user={rider}", viewport=PHONE)
    await page.connect()
    await expect(page.readout("session")).to_have_text("New session")
    sid = await page.readout("sid").inner_text()
    async with Emitter(cluster.redis_url, channel=cluster.channel) as emitter:
        assert await emitter.send_to_user(rider, EVENT, step(0)) == "sent"
        await expect(page.received(EVENT)).to_have_count(1)
        await page.set_offline(True)
        await session_gone(replica.url)
        assert await emitter.send_to_user(rider, EVENT, step(1)) == "stored"
        await asyncio.sleep(1.2)  # the window itself is what is tested: 1 s of it passes
        with pytest.raises(UserNotConnectedError):
            await emitter.send_to_user(rider, EVENT, step(2))
        await page.set_offline(False)

        await expect(page.readout("session")).to_have_text("New session — resync", timeout=SLOW_MS)
        assert await emitter.send_to_user(rider, EVENT, step(3)) == "sent"
        # Not stored, yet its trailing string is followed by the socket's last offset: data all the same.
        assert await emitter.send_to_user(rider, "position", "City Hall", volatile=True) == "sent"
        await expect(page.received("position")).to_have_count(1)

    await expect(page.readout("sid")).not_to_have_text(sid)
    assert await page.payloads("position") == ["City Hall"]
    assert await page.offsets("position") == (await page.offsets(EVENT))[-1:]
    await expect(page.log_entries("session")).to_have_text([
        re.compile(r"New session — resync: the previous session could not be restored")])
    assert await page.payloads(EVENT) == [step(0), step(3)]  # what was stored for the old session is gone
    assert not await page.overflows_horizontally(), "the page scrolls sideways at phone width"
    await page.screenshot("new-session-resync-phone")
    assert page.unexpected_console_errors(*OFFLINE) == []


async def test_with_recovery_off_the_page_says_so_and_keeps_a_trailing_string_as_data(
        start_cluster: Callable[..., Cluster], open_page: OpenPage) -> None:
    """No session id, no offsets: a trailing string that looks like one is data all the same."""
    cluster = start_cluster(1, RECOVERY_WINDOW_SECONDS="0", **DEV_MODE)
    [replica] = cluster.replicas
    rider = unique_user("rider")
    page = await open_page(f"{replica.url}/?user={rider}")
    await page.connect()

    await expect(page.readout("session")).to_have_text("New session (not recoverable)")
    async with Emitter(cluster.redis_url, channel=cluster.channel) as emitter:
        assert await emitter.send_to_user(rider, "platform", "12-3") == "sent"
        await expect(page.received("platform")).to_have_count(1)

    assert await page.payloads("platform") == ["12-3"]
    assert await page.offsets("platform") == [None]
    assert page.unexpected_console_errors() == []
