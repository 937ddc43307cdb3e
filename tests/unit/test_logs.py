"""server/logs.py: JSON lines, logging set up only by entry points, throttled repeats
(kindmap_realtime/log_throttle.py)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from kindmap_realtime import log_throttle
from kindmap_realtime.log_throttle import LogThrottle
from server.logs import JsonFormatter, ThrottleFilter

ROOT = Path(__file__).resolve().parents[2]


def record(message: str, *args: Any, level: int = logging.INFO, exc_info: Any = None,
           **extra: Any) -> logging.LogRecord:
    logger = logging.Logger("server.test")  # not attached to the root: no handler sees it
    return logger.makeRecord(logger.name, level, "test.py", 1, message, args, exc_info, extra=extra)


def test_formatter_writes_one_json_object_with_the_standard_fields() -> None:
    line = JsonFormatter().format(record("user %s connected", "alice", level=logging.WARNING))

    entry = json.loads(line)
    assert "\n" not in line
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "server.test"
    assert entry["message"] == "user alice connected"
    assert set(entry) == {"time", "level", "logger", "message"}


def test_formatter_time_is_utc_iso_with_milliseconds_and_z() -> None:
    entry = json.loads(JsonFormatter().format(record("tick")))

    assert entry["time"].endswith("Z")
    date, clock = entry["time"][:-1].split("T")
    assert len(date) == 10 and len(clock) == len("12:34:56.789")


@pytest.fixture
def local_time_is_seoul(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "KST-9")  # POSIX form: needs no tz database
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("local_time_is_seoul")
def test_formatter_time_is_in_utc_not_local_time(monkeypatch: pytest.MonkeyPatch) -> None:
    assert time.localtime(0).tm_hour == 9  # the fixture took effect
    item = record("tick")
    monkeypatch.setattr(item, "created", 0.0)
    monkeypatch.setattr(item, "msecs", 5.0)

    assert json.loads(JsonFormatter().format(item))["time"] == "1970-01-01T00:00:00.005Z"


def test_formatter_adds_extra_fields() -> None:
    entry = json.loads(JsonFormatter().format(record("client connected", user_id="alice", sid="abc", sockets=3)))

    assert entry["user_id"] == "alice"
    assert entry["sid"] == "abc"
    assert entry["sockets"] == 3


def test_formatter_writes_values_json_cannot_encode_as_text() -> None:
    entry = json.loads(JsonFormatter().format(record("odd", path=Path("/tmp/x"))))

    assert entry["path"] == "/tmp/x"


def test_formatter_keeps_non_ascii_text_readable() -> None:
    line = JsonFormatter().format(record("경로 안내 %s", "시작"))

    assert "경로 안내 시작" in line


def test_formatter_includes_the_exception() -> None:
    try:
        raise RuntimeError("listener broke")
    except RuntimeError:
        item = record("failed", level=logging.ERROR, exc_info=sys.exc_info())

    entry = json.loads(JsonFormatter().format(item))

    assert "RuntimeError: listener broke" in entry["exception"]


def run_python(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=30,
                          env={"PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"})


def test_configure_logging_sends_json_lines_at_the_configured_level_to_stderr(tmp_path: Path) -> None:
    result = run_python(
        "import logging; from server.logs import configure_logging\n"
        "configure_logging('INFO')\n"
        "logging.getLogger('server.sio.gateway').info('client connected', extra={'user_id': 'alice'})\n"
        "logging.getLogger('server.sio.gateway').debug('per-message detail')\n",
        tmp_path,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert [json.loads(line)["message"] for line in lines] == ["client connected"]
    assert json.loads(lines[0])["user_id"] == "alice"


def test_configure_logging_quiets_library_info_but_not_their_warnings(tmp_path: Path) -> None:
    result = run_python(
        "import logging; from server.logs import configure_logging\n"
        "configure_logging('DEBUG')\n"
        "for name in ('socketio', 'engineio', 'aiohttp.access'):\n"
        "    logging.getLogger(name).info('chatter')\n"
        "    logging.getLogger(name).warning('trouble')\n"
        "logging.getLogger('server').debug('ours')\n",
        tmp_path,
    )

    messages = [(e["logger"], e["message"]) for e in map(json.loads, result.stderr.splitlines())]
    assert messages == [("socketio", "trouble"), ("engineio", "trouble"), ("aiohttp.access", "trouble"),
                        ("server", "ours")]


def test_importing_the_server_adds_no_log_handlers(tmp_path: Path) -> None:
    result = run_python(
        "import logging, server.app, kindmap_realtime.emitter, server.__main__\n"
        "print(len(logging.getLogger().handlers), len(logging.getLogger('server').handlers))\n",
        tmp_path,
    )

    assert result.stdout.split() == ["0", "0"], result.stderr


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(log_throttle, "time", SimpleNamespace(monotonic=fake.monotonic))
    return fake


def test_throttle_lets_the_first_line_through(clock: FakeClock) -> None:
    assert LogThrottle(interval=1.0).allow("publish_failed") == 0


def test_throttle_holds_repeats_within_the_interval(clock: FakeClock) -> None:
    throttle = LogThrottle(interval=1.0)
    throttle.allow("publish_failed")
    clock.now += 0.5

    assert throttle.allow("publish_failed") is None


def test_throttle_reports_how_many_lines_it_held_back(clock: FakeClock) -> None:
    throttle = LogThrottle(interval=1.0)
    throttle.allow("publish_failed")
    for _ in range(3):
        clock.now += 0.2
        throttle.allow("publish_failed")
    clock.now += 1.0

    assert throttle.allow("publish_failed") == 3
    clock.now += 1.0
    assert throttle.allow("publish_failed") == 0


def test_throttle_counts_each_key_on_its_own(clock: FakeClock) -> None:
    throttle = LogThrottle(interval=1.0)
    throttle.allow("invalid_json")

    assert throttle.allow("unknown_method") == 0
    assert throttle.allow("invalid_json") is None


def test_throttle_filter_lets_one_record_per_template_through_and_counts_the_rest(clock: FakeClock) -> None:
    throttle = ThrottleFilter(interval=1.0)
    first, repeat, other = (record("Cannot send to sid %s", "a"), record("Cannot send to sid %s", "b"),
                            record("message async handler error"))

    assert throttle.filter(first) and throttle.filter(other)
    assert not throttle.filter(repeat)
    clock.now += 1.0
    later = record("Cannot send to sid %s", "c")
    assert throttle.filter(later) and later.suppressed == 1  # type: ignore[attr-defined]


def test_library_lines_repeated_per_packet_are_logged_once_a_second(tmp_path: Path) -> None:
    result = run_python(
        "import logging; from server.logs import configure_logging\n"
        "configure_logging('INFO')\n"
        "for sid in range(100):\n"
        "    logging.getLogger('engineio').warning('Cannot send to sid %s', sid)\n",
        tmp_path,
    )

    assert [json.loads(line)["message"] for line in result.stderr.splitlines()] == ["Cannot send to sid 0"]


def test_the_replica_builds_its_socketio_server_without_log_handlers_of_its_own(tmp_path: Path) -> None:
    """python-socketio and python-engineio add a plain-text handler to a logger they are not given."""
    result = run_python(
        "import logging; from server.app import create_app; from server.config import Settings\n"
        "app = create_app(Settings(auth_mode='dev'))\n"
        "print(sum(len(logging.getLogger(n).handlers) for n in ('socketio', 'socketio.server', 'engineio',\n"
        "                                                       'engineio.server')))\n",
        tmp_path,
    )

    assert result.stdout.split() == ["0"], result.stderr
