"""The demo page in Debian's headless Chromium, driven by Playwright (which downloads no browser here).

``DemoPage`` finds controls the way assistive technology does, by role and label,
so a control that loses its accessible name fails the tests too. Every wait is a
Playwright expectation with a deadline, never a sleep.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from playwright.async_api import ConsoleMessage, Error, Locator, Page, ViewportSize, expect

from cluster.processes import REPO_ROOT

CHROMIUM = Path("/usr/bin/chromium")
# Playwright adds --headless. The rest keep Chromium off the network, which is closed here.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
SCREENSHOTS = REPO_ROOT / "test-artifacts" / "e2e"
LAPTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}
SLOW_MS = 15_000  # for what crosses processes: a message between replicas, a replica restarting


class DemoPage:
    """One browser page on the demo, recording what its console says."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", self._on_page_error)

    async def open(self, url: str) -> None:
        await self.page.goto(url)
        await expect(self.readout("state")).to_have_text("Disconnected")

    def readout(self, name: str) -> Locator:
        """A value of the status panel: state, replica, transport, rtt, attempts, user, sid."""
        return self.page.locator(f"#{name}")

    def button(self, name: str) -> Locator:
        return self.page.get_by_role("button", name=name, exact=True)

    def field(self, label: str) -> Locator:
        return self.page.get_by_label(label, exact=True)

    def received(self, event: str) -> Locator:
        """Log entries of a Socket.IO event this page received."""
        return self.page.locator(f'#event-log .entry[data-kind="received"][data-event="{event}"]')

    def log_entries(self, kind: str) -> Locator:
        return self.page.locator(f'#event-log .entry[data-kind="{kind}"]')

    async def payloads(self, event: str) -> list[Any]:
        """The data of each ``event`` this page received, as its log shows them, in order."""
        return [json.loads(text) for text in await self.received(event).locator(".payload").all_inner_texts()]

    async def offsets(self, event: str) -> list[str | None]:
        """The recovery offset each ``event`` came with, as its log entry keeps it (``data-offset``)."""
        return [await entry.get_attribute("data-offset") for entry in await self.received(event).all()]

    async def log_order(self) -> list[str]:
        """Every log entry, oldest first, as ``kind`` or ``kind:event``."""
        order: list[str] = await self.page.locator("#event-log .entry").evaluate_all(
            "entries => entries.map(e => e.dataset.event ? `${e.dataset.kind}:${e.dataset.event}` : e.dataset.kind)")
        return order

    async def set_offline(self, offline: bool) -> None:
        """Cut the page off the network, as a tunnel does (its WebSocket closes at once and every
        reconnection attempt fails), or give it back."""
        await self.page.context.set_offline(offline)

    async def connect(self) -> None:
        await self.button("Connect").click()
        await expect(self.readout("state")).to_have_text("Connected", timeout=SLOW_MS)

    async def send(self, target: str, event: str, data: str) -> None:
        await self.field("Target user id").fill(target)
        await self.field("Event name").fill(event)
        await self.field("Data (JSON)").fill(data)
        await self.button("Send").click()

    async def round_trip(self) -> None:
        """Ping and wait for the pong: whatever the server sent this page before has arrived."""
        pongs = await self.received("pong").count()
        await self.button("Ping").click()
        await expect(self.received("pong")).to_have_count(pongs + 1)

    async def overflows_horizontally(self) -> bool:
        return bool(await self.page.evaluate("document.documentElement.scrollWidth > window.innerWidth"))

    async def screenshot(self, name: str) -> Path:
        """The whole page, scrolled to the top, as test-artifacts/e2e/<name>.png."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        await self.page.evaluate("window.scrollTo(0, 0)")
        await self.page.screenshot(path=path, full_page=True)
        return path

    def unexpected_console_errors(self, *expected: str) -> list[str]:
        """Console errors and uncaught exceptions, less those containing one of ``expected``."""
        return self.page_errors + [e for e in self.console_errors if not any(text in e for text in expected)]

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(f"{message.text} ({message.location.get('url', '?')})")

    def _on_page_error(self, error: Error) -> None:
        self.page_errors.append(str(error))


OpenPage = Callable[..., Awaitable[DemoPage]]
"""The ``open_page`` fixture (tests/e2e/conftest.py)."""
