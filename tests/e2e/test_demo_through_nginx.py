"""The demo page as `make cluster` serves it: through Nginx, in front of dev-mode replicas."""

from __future__ import annotations

import json
import uuid

from playwright.async_api import expect

from cluster import LocalCluster
from tests.helpers.browser import SLOW_MS, OpenPage
from tests.helpers.cluster import unique_user


async def test_page_through_nginx_connects_upgrades_and_sends_to_a_user_on_another_replica(
        nginx_dev_cluster: LocalCluster, open_page: OpenPage) -> None:
    alice, bob = unique_user("alice"), unique_user("bob")
    marker = f"exit-{uuid.uuid4().hex[:8]}"
    page_a = await open_page(f"{nginx_dev_cluster.url}/?user={alice}&to={bob}")
    await page_a.connect()
    await expect(page_a.readout("transport")).to_have_text("websocket (upgraded from polling)", timeout=SLOW_MS)
    via_nginx = await page_a.readout("replica").inner_text()
    elsewhere = next(r for r in nginx_dev_cluster.replicas if r.instance_id != via_nginx)
    page_b = await open_page(f"{elsewhere.url}/?user={bob}")
    await page_b.connect()

    await page_a.send(bob, "navigation_update", json.dumps({"exit": 3, "marker": marker}))

    await expect(page_b.received("navigation_update")).to_contain_text(marker, timeout=SLOW_MS)
    await expect(page_b.readout("replica")).to_have_text(elsewhere.instance_id)
    await page_a.screenshot("through-nginx-page-a")
    assert page_a.unexpected_console_errors() == []
    assert page_b.unexpected_console_errors() == []
