"""server/__main__.py: ``python -m server`` refuses bad settings with exit code 2 and one line,
and runs the app its builder makes."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web

from cluster.processes import free_port
from kindmap_realtime.errors import ConfigError
from kindmap_realtime.event_loop import loop_name
from server.__main__ import main
from server.config import Settings

ROOT = Path(__file__).resolve().parents[2]
SECRET = "kindmap-test-secret-0123456789abcdef0123"


def run_server(cwd: Path, **environ: str) -> subprocess.CompletedProcess[str]:
    """``python -m server`` with exactly ``environ`` (plus the import path), in ``cwd``."""
    env = {"PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1", **environ}
    return subprocess.run([sys.executable, "-m", "server"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=30)


@pytest.mark.parametrize(("name", "environ"), [
    pytest.param("PORT", {"JWT_SECRET": SECRET, "PORT": "eighty"}, id="port-not-a-number"),
    pytest.param("AUTH_MODE", {"JWT_SECRET": SECRET, "AUTH_MODE": "trust-me"}, id="unknown-auth-mode"),
    pytest.param("JWT_SECRET", {}, id="no-secret"),
    pytest.param("REDIS_URL", {"JWT_SECRET": SECRET, "REDIS_URL": "http://cache:6379"}, id="redis-url-scheme"),
    pytest.param("REDIS_URL", {"JWT_SECRET": SECRET, "REDIS_URL": "redis://cache:63x9/0"}, id="redis-url-port"),
    pytest.param("REDIS_URL", {"JWT_SECRET": SECRET, "REDIS_URL": "redis://cache:6379/abc"}, id="redis-url-db"),
    pytest.param("SERVER_API_KEY", {"JWT_SECRET": SECRET, "SERVER_API_KEY": "    "}, id="api-key-of-spaces"),
    pytest.param("JWT_SECRET", {"JWT_SECRET": SECRET, "AUTH_MODE": "dev"}, id="dev-mode-next-to-a-secret"),
    pytest.param("HOST", {"AUTH_MODE": "dev", "HOST": "0.0.0.0"}, id="dev-mode-beyond-loopback"),
    # TEST-NET-3 (RFC 5737): an address no machine here has.
    pytest.param("HOST", {"JWT_SECRET": SECRET, "HOST": "203.0.113.7"}, id="host-not-on-this-machine"),
    pytest.param("HOST", {"JWT_SECRET": SECRET, "HOST": "a" * 64 + ".example"}, id="host-label-over-63"),
    pytest.param("HOST", {"JWT_SECRET": SECRET, "HOST": "a..b"}, id="host-empty-label"),
    pytest.param("HOST", {"JWT_SECRET": SECRET, "HOST": "a\udcffb"}, id="host-not-utf-8"),
    pytest.param("CORS_ALLOWED_ORIGINS", {"JWT_SECRET": SECRET, "CORS_ALLOWED_ORIGINS": "http://[::1"},
                 id="cors-unclosed-ipv6"),
    pytest.param("CORS_ALLOWED_ORIGINS", {"JWT_SECRET": SECRET, "CORS_ALLOWED_ORIGINS": "http://[bad]"},
                 id="cors-invalid-ipv6"),
])
def test_bad_setting_exits_2_with_one_line_naming_the_setting(tmp_path: Path, name: str,
                                                             environ: dict[str, str]) -> None:
    result = run_server(tmp_path, **environ)

    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("configuration error: ")
    assert name in lines[0]


def test_bad_setting_in_the_env_file_is_refused_the_same_way(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"JWT_SECRET={SECRET}\nPORT=eighty\n")

    result = run_server(tmp_path)

    assert result.returncode == 2
    assert result.stderr.splitlines() == ["configuration error: PORT must be an integer, got 'eighty'"]


def test_env_file_that_is_not_utf8_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes(f"JWT_SECRET={SECRET}\nINSTANCE_ID=caf\xe9\n".encode("latin-1"))

    result = run_server(tmp_path)

    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("configuration error: .env is not UTF-8 text")


def test_port_in_use_is_refused_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = run_server(tmp_path, JWT_SECRET=SECRET, PORT=str(port))

    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"configuration error: cannot listen on HOST=127.0.0.1 PORT={port}: ")


def test_environment_overrides_the_env_file(tmp_path: Path) -> None:
    # The file's PORT is bad, the environment's is fine: the error must then be about something else.
    (tmp_path / ".env").write_text(f"JWT_SECRET={SECRET}\nPORT=eighty\n")

    result = run_server(tmp_path, PORT="8123", LOG_LEVEL="chatty")

    assert result.returncode == 2
    assert "LOG_LEVEL" in result.stderr
    assert "PORT" not in result.stderr


def test_main_runs_the_app_its_builder_makes_from_the_settings_on_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[Settings] = []
    ran: list[web.Application] = []
    app = web.Application()

    def build(settings: Settings) -> web.Application:
        built.append(settings)
        return app

    port = free_port()
    monkeypatch.setattr("server.__main__.load_environ", lambda: {"AUTH_MODE": "dev", "PORT": str(port)})
    monkeypatch.setattr("server.__main__.configure_logging", lambda level: None)  # leave the root logger alone
    listening: list[tuple[str, int]] = []
    loops: list[str] = []

    def run_app(application: web.Application, *, sock: list[socket.socket], loop: asyncio.AbstractEventLoop,
                **_options: object) -> None:
        ran.append(application)
        loops.append(loop_name(loop))
        loop.close()  # as run_app does when it returns
        for one in sock:
            listening.append(one.getsockname()[:2])
            one.close()

    monkeypatch.setattr(web, "run_app", run_app)

    assert main(build) == 0
    assert [settings.port for settings in built] == [port]
    assert ran == [app]
    assert listening == [("127.0.0.1", port)]
    assert loops == ["uvloop"]


def test_a_builder_refusing_the_settings_exits_2_like_a_bad_setting(monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    def build(settings: Settings) -> web.Application:
        raise ConfigError("REDIS_URL is required")

    monkeypatch.setattr("server.__main__.load_environ", lambda: {"AUTH_MODE": "dev"})
    monkeypatch.setattr("server.__main__.configure_logging", lambda level: None)  # leave the root logger alone

    assert main(build) == 2
    assert capsys.readouterr().err == "configuration error: REDIS_URL is required\n"


def test_logging_is_configured_before_the_app_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """python-socketio and python-engineio pick their log handlers when the app builds them."""
    calls: list[str] = []

    def build(settings: Settings) -> web.Application:
        calls.append("build")
        return web.Application()

    def run_app(application: web.Application, *, sock: list[socket.socket], loop: asyncio.AbstractEventLoop,
                **_options: object) -> None:
        loop.close()
        for one in sock:
            one.close()

    monkeypatch.setattr("server.__main__.load_environ", lambda: {"AUTH_MODE": "dev", "PORT": str(free_port())})
    monkeypatch.setattr("server.__main__.configure_logging", lambda level: calls.append(f"logging {level}"))
    monkeypatch.setattr(web, "run_app", run_app)

    assert main(build) == 0
    assert calls == ["logging INFO", "build"]
