"""server/http/demo_page.py: the files of client_demo/ served from an allowlist, and nothing else."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from server.http.demo_page import DEMO_DIR, DEMO_FILES, demo_routes
from server.http.emit_api import ErrorMiddleware
from tests.helpers.http import request
from tests.helpers.in_process import StartReplica
from tests.helpers.payloads import assert_error_payload

ServeDemo = Callable[[Path], Awaitable[str]]


@pytest.fixture
def demo_root(tmp_path: Path) -> Path:
    """A client_demo/ holding every listed file (each containing its own name), and some that are not listed."""
    root = tmp_path / "client_demo"
    for path, _type in [*DEMO_FILES.values(), (Path("index.html"), "")]:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(f"content of {path}")
    (root / "package.json").write_text("{}")
    (root / "node_modules/socket.io-client/package.json").write_text("{}")
    (tmp_path / "secret.txt").write_text("outside the demo")
    return root


@pytest.fixture
async def serve_demo() -> AsyncIterator[ServeDemo]:
    """Factory: the demo routes over ``root`` on a loopback server, with the app's error middleware."""
    servers: list[TestServer] = []

    async def serve(root: Path) -> str:
        app = web.Application(middlewares=[ErrorMiddleware()])
        app.add_routes(demo_routes(root))
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("")).rstrip("/")

    yield serve
    for server in servers:
        await server.close()


async def test_root_serves_the_page_with_its_security_and_cache_headers(serve_demo: ServeDemo, demo_root: Path) -> None:
    url = await serve_demo(demo_root)

    async with aiohttp.ClientSession() as session, session.get(f"{url}/") as response:
        body = await response.text()
        headers = response.headers

    assert response.status == 200
    assert body == "content of index.html"
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Cache-Control"] == "no-cache"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp


@pytest.mark.parametrize("name", sorted(DEMO_FILES))
async def test_each_listed_file_is_served_with_its_content_type(serve_demo: ServeDemo, demo_root: Path,
                                                                name: str) -> None:
    url = await serve_demo(demo_root)
    path, content_type = DEMO_FILES[name]

    async with aiohttp.ClientSession() as session, session.get(f"{url}/demo/{name}") as response:
        body = await response.read()

    assert response.status == 200
    assert body == f"content of {path}".encode()
    assert response.headers["Content-Type"] == content_type
    assert response.headers["Cache-Control"] == "no-cache"


async def test_an_unchanged_file_answers_304_to_a_conditional_get(serve_demo: ServeDemo, demo_root: Path) -> None:
    url = await serve_demo(demo_root)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/demo/main.js") as first:
            etag = first.headers["ETag"]
        async with session.get(f"{url}/demo/main.js", headers={"If-None-Match": etag}) as second:
            assert second.status == 304


@pytest.mark.parametrize("path", [
    pytest.param("/demo/package.json", id="unlisted-file"),
    pytest.param("/demo/index.html", id="page-only-at-root"),
    pytest.param("/demo/node_modules/socket.io-client/package.json", id="node-modules"),
    pytest.param("/demo/socket.io.min.js", id="unlisted-bundle"),
    pytest.param("/demo/../secret.txt", id="dot-dot"),
    pytest.param("/demo/%2e%2e/secret.txt", id="encoded-dot-dot"),
    pytest.param("/demo/..%2fsecret.txt", id="encoded-slash"),
    pytest.param("/demo/..%5csecret.txt", id="encoded-backslash"),
    pytest.param("/demo/", id="directory"),
    pytest.param("/package.json", id="root-file"),
    pytest.param("/client_demo/index.html", id="directory-name"),
])
async def test_nothing_outside_the_allowlist_is_served(serve_demo: ServeDemo, demo_root: Path, path: str) -> None:
    url = await serve_demo(demo_root)

    status, _type, body = await request("GET", f"{url}{path}")

    assert status == 404
    assert_error_payload(body, "NOT_FOUND")


async def test_missing_files_are_named_in_a_warning_at_start_up(demo_root: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    (demo_root / DEMO_FILES["socket.io.esm.min.js"][0]).unlink()

    with caplog.at_level(logging.WARNING, logger="server.http.demo_page"):
        demo_routes(demo_root)

    [record] = caplog.records
    assert "npm ci" in record.getMessage()
    assert vars(record)["missing"] == [str(DEMO_FILES["socket.io.esm.min.js"][0])]


async def test_a_missing_file_is_404(serve_demo: ServeDemo, demo_root: Path) -> None:
    (demo_root / DEMO_FILES["socket.io.esm.min.js"][0]).unlink()
    url = await serve_demo(demo_root)

    status, _type, _body = await request("GET", f"{url}/demo/socket.io.esm.min.js")

    assert status == 404


def test_client_demo_holds_every_listed_file_once_installed() -> None:
    """``npm ci`` in client_demo/ (``make install``) provides the socket.io-client bundle."""
    missing = [str(path) for path, _type in DEMO_FILES.values() if not (DEMO_DIR / path).is_file()]

    assert missing == []
    assert (DEMO_DIR / "index.html").is_file()


@pytest.mark.parametrize("settings", [
    pytest.param({}, id="jwt-mode"),
    pytest.param({"auth_mode": "dev", "jwt_secret": None}, id="dev-mode"),
])
async def test_every_replica_serves_the_page_at_root(start_replica: StartReplica, settings: dict[str, Any]) -> None:
    replica = await start_replica(**settings)

    status, content_type, body = await request("GET", f"{replica.url}/")

    assert (status, content_type) == (200, "text/html")
    assert '<script type="module" src="/demo/main.js"></script>' in body
