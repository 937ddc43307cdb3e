"""The demo page in headless Chromium against real replica processes sharing a real Redis.

Screenshots land in test-artifacts/e2e/ (kept by CI as artefacts, ignored by git).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

from playwright.async_api import expect

from tests.helpers.browser import PHONE, SLOW_MS, OpenPage
from tests.helpers.clients import make_token
from tests.helpers.cluster import Cluster, unique_user

# What Chromium logs for requests that fail while a replica is down or refuses: expected there.
CONNECTION_REFUSED = "ERR_CONNECTION_REFUSED"


async def test_a_message_sent_from_page_a_reaches_user_b_on_another_replica_and_not_a(
        dev_cluster: Cluster, open_page: OpenPage) -> None:
    first, second = dev_cluster.replicas
    alice, bob = unique_user("alice"), unique_user("bob")
    event, marker = "navigation_update", f"transfer-{uuid.uuid4().hex[:8]}"
    page_a = await open_page(f"{first.url}/?user={alice}&to={bob}")
    page_b = await open_page(f"{second.url}/?user={bob}", viewport=PHONE)
    await page_a.connect()
    await page_b.connect()

    await page_a.send(bob, event, json.dumps({"instruction": "Transfer to line 2", "marker": marker}))

    await expect(page_b.received(event)).to_contain_text(marker, timeout=SLOW_MS)
    await expect(page_a.page.locator("#send-result")).to_have_text(f"Sent {event} to {bob}.")
    await expect(page_a.log_entries("sent")).to_contain_text(f"{event} to {bob}")
    await page_a.round_trip()
    await expect(page_a.received(event)).to_have_count(0)
    await expect(page_b.readout("replica")).to_have_text(second.instance_id)
    await expect(page_a.readout("replica")).to_have_text(first.instance_id)
    await expect(page_b.readout("user")).to_have_text(bob)
    await expect(page_b.readout("transport")).to_have_text("websocket (upgraded from polling)", timeout=SLOW_MS)
    await expect(page_b.readout("rtt")).to_contain_text(" ms (ping #1)")
    assert not await page_b.overflows_horizontally(), "the page scrolls sideways at phone width"
    await page_a.screenshot("cross-replica-page-a-sender")
    await page_b.screenshot("cross-replica-page-b-receiver-phone")
    assert page_a.unexpected_console_errors() == []
    assert page_b.unexpected_console_errors() == []


async def test_invalid_json_in_the_send_form_shows_a_clear_error_and_sends_nothing(
        dev_cluster: Cluster, open_page: OpenPage) -> None:
    alice = unique_user("alice")
    page = await open_page(f"{dev_cluster.replicas[0].url}/?user={alice}")
    await page.connect()

    await page.send(alice, "arrival", '{"station": "City Hall",}')

    data_field = page.field("Data (JSON)")
    await expect(page.page.locator("#event-data-error")).to_contain_text("Data is not valid JSON")
    await expect(page.page.locator("#event-data-error")).to_contain_text("Nothing was sent.")
    await expect(data_field).to_have_attribute("aria-invalid", "true")
    await expect(data_field).to_be_focused()
    await page.round_trip()
    await expect(page.received("arrival")).to_have_count(0)
    await expect(page.log_entries("sent")).to_have_count(0)
    await page.screenshot("invalid-json")
    assert page.unexpected_console_errors() == []


async def test_an_emit_the_server_refuses_shows_its_error_code_and_message(
        dev_cluster: Cluster, open_page: OpenPage) -> None:
    nobody = unique_user("nobody")
    page = await open_page(f"{dev_cluster.replicas[1].url}/?user={unique_user()}")
    await page.connect()

    await page.send(nobody, "arrival", "{}")

    await expect(page.page.locator("#send-result")).to_have_text(
        f"USER_NOT_CONNECTED — user '{nobody}' is not connected to any replica")
    await expect(page.log_entries("error")).to_contain_text("emit failed: USER_NOT_CONNECTED")
    # The one expected console line: Chromium reports the emit's 404.
    assert page.unexpected_console_errors("404 (Not Found)") == []


async def test_reconnection_attempts_show_and_the_page_reconnects_to_its_restarted_replica(
        start_cluster: Callable[..., Cluster], open_page: OpenPage) -> None:
    """The restarted process holds a new dev key: the page fetches a fresh token to reconnect."""
    [replica] = start_cluster(1, AUTH_MODE="dev", JWT_SECRET="", SERVER_API_KEY="").replicas
    page = await open_page(f"{replica.url}/?user={unique_user()}")
    await page.connect()

    assert replica.terminate() == 0

    await expect(page.readout("state")).to_contain_text("Reconnecting")
    await expect(page.readout("attempts")).to_contain_text("attempt", timeout=SLOW_MS)
    await expect(page.log_entries("info").filter(has_text="reconnection attempt 1")).to_have_count(1)
    replica.start()
    await expect(page.readout("state")).to_have_text("Connected", timeout=SLOW_MS)
    await expect(page.readout("attempts")).to_contain_text("reconnected after")
    await expect(page.readout("replica")).to_have_text(replica.instance_id)
    await page.screenshot("reconnected")
    assert page.unexpected_console_errors(CONNECTION_REFUSED) == []


async def test_outside_dev_mode_the_page_asks_for_a_jwt_and_connects_with_one(
        start_cluster: Callable[..., Cluster], open_page: OpenPage) -> None:
    [replica] = start_cluster(1, SERVER_API_KEY="").replicas
    user = unique_user()
    page = await open_page(f"{replica.url}/?user={user}")

    await page.button("Connect").click()

    await expect(page.page.locator("#connect-error")).to_have_text(
        "NOT_FOUND — this server is not in dev mode (AUTH_MODE=dev): paste a JWT instead")
    await page.page.get_by_text("Use a JWT instead").click()
    await page.field("JWT").fill(make_token(user))
    await page.connect()
    await expect(page.readout("user")).to_have_text(user)
    await page.send(user, "arrival", "{}")
    await expect(page.page.locator("#send-result")).to_contain_text("Connect with a dev token first")
    await page.screenshot("jwt-mode")
    # The one expected console line: Chromium reports the dev token request's 404.
    assert page.unexpected_console_errors("404 (Not Found)") == []
