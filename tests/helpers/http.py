"""Small HTTP helpers for tests that talk to replica processes."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit

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


async def raw_request(url: str, head: bytes, body: bytes = b"", *, timeout: float = 10.0) -> tuple[int, Any]:
    """Send ``head`` (request line and headers, as bytes, no blank line) and ``body`` as they
    are, for requests aiohttp's client refuses to make; ``(status, parsed JSON body)``.

    ``timeout`` bounds a server that never answers (the failure such tests look for).
    """
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(head + b"\r\nConnection: close\r\n\r\n" + body)
        await writer.drain()
        # Read by Content-Length, not to the end: aiohttp keeps the connection a while to
        # discard a body it did not read.
        response_head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        lines = response_head.decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        payload = await asyncio.wait_for(reader.readexactly(int(headers["Content-Length"])), timeout)
    finally:
        writer.close()
    return int(lines[0].split()[1]), json.loads(payload)
