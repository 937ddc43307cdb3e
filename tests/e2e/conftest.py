"""Fixtures for e2e tests: replicas in dev mode and the demo page in headless Chromium.

``redis_server`` and ``start_cluster`` come from tests/conftest.py.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator

import pytest
from playwright.async_api import Browser, ViewportSize, async_playwright

from cluster import LocalCluster
from cluster.processes import RedisServer
from server.http.demo_page import DEMO_DIR
from tests.helpers.browser import CHROMIUM, CHROMIUM_ARGS, LAPTOP, DemoPage, OpenPage
from tests.helpers.cluster import Cluster, new_channel

# Dev mode as `make dev` runs it: no JWT secret, no API key; the page's dev token does it all.
DEV_MODE = {"AUTH_MODE": "dev", "JWT_SECRET": "", "SERVER_API_KEY": ""}


@pytest.fixture(scope="session", autouse=True)
def _browser_installed() -> None:
    missing = [name for name, ok in [
        (str(CHROMIUM), CHROMIUM.is_file()),
        ("redis-server", shutil.which("redis-server") is not None),
        ("client_demo/node_modules", (DEMO_DIR / "node_modules" / "socket.io-client").is_dir()),
    ] if not ok]
    if missing:
        pytest.fail(f"e2e tests need Debian's chromium, redis-server and `npm ci` in client_demo/ "
                    f"(missing: {missing}); `bash .ci/run` installs them all")


@pytest.fixture(scope="module")
def dev_cluster(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two replicas in dev mode on one Redis, shared by the tests of a module."""
    with Cluster(redis_server.url, tmp_path_factory.mktemp("replicas"), 2, **DEV_MODE) as started:
        yield started


@pytest.fixture
def nginx_dev_cluster(redis_server: RedisServer) -> Iterator[LocalCluster]:
    """A test's own two dev-mode replicas behind Nginx, as `make cluster` serves the page (it may kill one)."""
    env = {**DEV_MODE, "SOCKETIO_CHANNEL": new_channel(), "LOG_LEVEL": "INFO"}
    with LocalCluster(replicas=2, env=env, redis_url=redis_server.url) as cluster:
        yield cluster


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest.fixture
async def open_page(browser: Browser) -> AsyncIterator[OpenPage]:
    """Factory: the demo at ``url`` in a browser context of its own (like another window)."""
    contexts = []

    async def open_(url: str, viewport: ViewportSize = LAPTOP) -> DemoPage:
        context = await browser.new_context(viewport=viewport)
        contexts.append(context)
        page = DemoPage(await context.new_page())
        await page.open(url)
        return page

    yield open_
    for context in contexts:
        await context.close()
