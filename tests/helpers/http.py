"""Small HTTP helpers for tests that talk to replica processes."""

from __future__ import annotations

from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families


async def request(method: str, url: str, **kwargs: Any) -> tuple[int, str, Any]:
    """``(status, content type, body)``; the body is parsed JSON when the server sent JSON."""
    async with aiohttp.ClientSession() as session, session.request(method, url, **kwargs) as response:
        body = await response.json() if response.content_type == "application/json" else await response.text()
        return response.status, response.content_type, body


async def get_json(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.json()


async def post_emit(base_url: str, api_key: str, body: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(
        f"{base_url}/api/v1/emit", json=body, headers={"Authorization": f"Bearer {api_key}"}
    ) as response:
        return response.status, await response.json()


async def metric(base_url: str, name: str, labels: dict[str, str] | None = None) -> float:
    """One sample from a replica's ``/metrics`` (0.0 when the series is absent)."""
    async with aiohttp.ClientSession() as session, session.get(f"{base_url}/metrics") as response:
        text = await response.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == (labels or {}):
                return float(sample.value)
    return 0.0
