"""kindmap_realtime/cli.py: argument parsing and exit codes of ``python -m kindmap_realtime.cli`` (no Redis needed)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from kindmap_realtime.cli import EXIT_FAILED, EXIT_USAGE, main, parse_args
from kindmap_realtime.limits import DEFAULT_CHANNEL

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No REDIS_URL / SOCKETIO_CHANNEL / QUEUE_SIGNING_KEY in the environment, an unsigned
    queue allowed, and no .env in the working directory."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("SOCKETIO_CHANNEL", raising=False)
    monkeypatch.delenv("QUEUE_SIGNING_KEY", raising=False)
    monkeypatch.delenv("AUTH_MODE", raising=False)
    monkeypatch.setenv("ALLOW_UNSIGNED_QUEUE", "true")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def dead_redis_url() -> str:
    """A Redis URL on a loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def test_parse_args_reads_the_target_event_and_data() -> None:
    args = parse_args(["--user", "alice", "--event", "arrival", "--data", '{"exit": 3}'], {})

    assert (args.user, args.broadcast, args.event, args.data) == ("alice", False, "arrival", '{"exit": 3}')


def test_parse_args_defaults_come_from_the_environment() -> None:
    args = parse_args(["--broadcast", "--event", "notice"],
                      {"REDIS_URL": "redis://cache:6379", "SOCKETIO_CHANNEL": "kindmap_b"})

    assert (args.redis_url, args.channel, args.data) == ("redis://cache:6379", "kindmap_b", "null")


def test_parse_args_without_environment_uses_the_default_channel() -> None:
    args = parse_args(["--broadcast", "--event", "notice"], {})

    assert (args.redis_url, args.channel) == (None, DEFAULT_CHANNEL)


def test_command_line_options_beat_the_environment() -> None:
    args = parse_args(["--user", "u", "--event", "e", "--redis-url", "redis://cli:1", "--channel", "cli"],
                      {"REDIS_URL": "redis://env:1", "SOCKETIO_CHANNEL": "env"})

    assert (args.redis_url, args.channel) == ("redis://cli:1", "cli")


@pytest.mark.parametrize("argv", [
    pytest.param(["--event", "arrival"], id="no-target"),
    pytest.param(["--user", "alice", "--broadcast", "--event", "arrival"], id="user-and-broadcast"),
    pytest.param(["--user", "alice"], id="no-event"),
    pytest.param(["--user", "alice", "--event", "arrival", "--colour", "red"], id="unknown-option"),
])
def test_bad_arguments_exit_2(clean_environment: Path, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)

    assert exited.value.code == EXIT_USAGE
    assert "error:" in capsys.readouterr().err


def test_missing_redis_url_exits_2_with_a_one_line_reason(clean_environment: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--user", "alice", "--event", "arrival"])

    assert code == EXIT_USAGE
    assert "REDIS_URL" in one_line(capsys.readouterr().err)


def test_a_memory_url_exits_2_it_is_a_replicas_own(clean_environment: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--user", "alice", "--event", "arrival", "--redis-url", "memory://"])

    assert code == EXIT_USAGE
    assert "must name the Redis the replicas share" in one_line(capsys.readouterr().err)


def test_redis_url_is_read_from_an_env_file(clean_environment: Path, dead_redis_url: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    (clean_environment / ".env").write_text(f"REDIS_URL={dead_redis_url}\n")

    code = main(["--user", "alice", "--event", "arrival"])

    # It got past "no Redis URL" and tried the file's Redis, which is not there.
    assert code == EXIT_FAILED
    assert "REDIS_URL" not in capsys.readouterr().err


@pytest.mark.parametrize("data", ["{not json", "", "{'single': 'quotes'}", "undefined"])
def test_data_that_is_not_json_exits_2(clean_environment: Path, dead_redis_url: str, data: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--user", "alice", "--event", "arrival", "--data", data, "--redis-url", dead_redis_url])

    assert code == EXIT_USAGE
    assert "--data is not valid JSON" in one_line(capsys.readouterr().err)


@pytest.mark.parametrize("data", [
    pytest.param('{"speed": NaN}', id="nan"),
    pytest.param("[Infinity]", id="infinity"),
    pytest.param("7" * 5000, id="5000-digit-integer"),
    pytest.param("[" * 33 + "]" * 33, id="nested-33-deep"),
    pytest.param("[" * 100_000 + "]" * 100_000, id="nested-past-the-parser"),
    pytest.param('{"stop": "\\ud800"}', id="lone-surrogate"),
])
@pytest.mark.parametrize("target", [["--user", "alice"], ["--broadcast"]], ids=["user", "broadcast"])
def test_data_the_http_api_refuses_exits_2_before_connecting(clean_environment: Path, dead_redis_url: str,
                                                              data: str, target: list[str],
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    code = main([*target, "--event", "arrival", "--data", data, "--redis-url", dead_redis_url])

    assert code == EXIT_USAGE
    assert "data" in one_line(capsys.readouterr().err)


@pytest.mark.parametrize("target", [["--user", "alice"], ["--broadcast"]], ids=["user", "broadcast"])
def test_event_with_an_undecodable_byte_exits_2_before_connecting(clean_environment: Path, dead_redis_url: str,
                                                                   target: list[str],
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    event = b"arr\xffival".decode(errors="surrogateescape")  # how Python hands such argv bytes over

    code = main([*target, "--event", event, "--data", "1", "--redis-url", dead_redis_url])

    assert code == EXIT_USAGE
    assert "event" in one_line(capsys.readouterr().err)


@pytest.mark.parametrize(("option", "value", "variable"), [
    *[("--max-message-bytes", limit, "MAX_QUEUE_MESSAGE_BYTES")
      for limit in ["1023", "lots", str(512 * 1024 * 1024 + 1)]],
    *[("--replay-window", window, "QUEUE_REPLAY_WINDOW_SECONDS") for window in ["0.5", "soon", "nan", "301"]],
])
def test_a_bad_number_option_exits_2_naming_its_variable(clean_environment: Path, dead_redis_url: str, option: str,
                                                         value: str, variable: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--user", "alice", "--event", "arrival", "--redis-url", dead_redis_url, option, value])

    assert code == EXIT_USAGE
    assert variable in one_line(capsys.readouterr().err)


def test_replay_window_defaults_to_the_environment_setting() -> None:
    args = parse_args(["--broadcast", "--event", "notice"], {"QUEUE_REPLAY_WINDOW_SECONDS": "90"})

    assert args.replay_window == "90"


def test_message_limit_defaults_to_the_environment_setting() -> None:
    args = parse_args(["--broadcast", "--event", "notice"], {"MAX_QUEUE_MESSAGE_BYTES": "2048"})

    assert args.max_message_bytes == "2048"


def test_env_file_that_is_not_utf8_exits_2(clean_environment: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (clean_environment / ".env").write_bytes(b"REDIS_URL=redis://caf\xe9:6379/0\n")

    code = main(["--broadcast", "--event", "notice"])

    assert code == EXIT_USAGE
    assert ".env is not UTF-8" in one_line(capsys.readouterr().err)


@pytest.mark.parametrize("target", [["--user", "alice"], ["--broadcast"]], ids=["user", "broadcast"])
def test_unreachable_redis_exits_1_with_a_one_line_reason(clean_environment: Path, dead_redis_url: str,
                                                          target: list[str],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    code = main([*target, "--event", "arrival", "--data", "{}", "--redis-url", dead_redis_url])

    assert code == EXIT_FAILED
    assert "Redis unreachable" in one_line(capsys.readouterr().err)


def test_without_a_signing_key_or_the_opt_out_it_exits_2_naming_both(clean_environment: Path, dead_redis_url: str,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("ALLOW_UNSIGNED_QUEUE")

    code = main(["--user", "alice", "--event", "arrival", "--redis-url", dead_redis_url])

    assert code == EXIT_USAGE
    reason = one_line(capsys.readouterr().err)
    assert "QUEUE_SIGNING_KEY" in reason and "ALLOW_UNSIGNED_QUEUE" in reason


@pytest.mark.parametrize("value", ["on", "TRUE", "1"])
def test_the_opt_out_reads_as_a_replica_reads_it(value: str) -> None:
    args = parse_args(["--user", "alice", "--event", "arrival"], {"ALLOW_UNSIGNED_QUEUE": value})

    assert args.unsigned_allowed is True


def test_a_signing_key_of_only_spaces_exits_2_as_it_stops_a_replica(clean_environment: Path, dead_redis_url: str,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("QUEUE_SIGNING_KEY", "   ")

    code = main(["--user", "alice", "--event", "arrival", "--redis-url", dead_redis_url])

    assert code == EXIT_USAGE
    assert "QUEUE_SIGNING_KEY is only whitespace" in one_line(capsys.readouterr().err)


def test_a_signing_key_shorter_than_the_replicas_take_exits_2(clean_environment: Path, dead_redis_url: str,
                                                                capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUEUE_SIGNING_KEY", "k" * 31)

    code = main(["--user", "alice", "--event", "arrival", "--redis-url", dead_redis_url])

    assert code == EXIT_USAGE
    assert "QUEUE_SIGNING_KEY must be at least 32 bytes long" in one_line(capsys.readouterr().err)


def test_settings_from_the_environment_are_read_without_surrounding_spaces_as_a_replica_reads_them() -> None:
    args = parse_args(["--broadcast", "--event", "notice"], {"REDIS_URL": " redis://cache:6379 ",
                                                           "MAX_QUEUE_MESSAGE_BYTES": " 2048 "})

    assert (args.redis_url, args.max_message_bytes) == ("redis://cache:6379", "2048")


def test_malformed_redis_url_exits_2_with_a_one_line_reason(tmp_path: Path) -> None:
    # A subprocess: the half-built Emitter this currently leaves behind must not disturb this test run.
    result = subprocess.run(
        [sys.executable, "-m", "kindmap_realtime.cli", "--user", "alice", "--event", "arrival",
         "--redis-url", "http://127.0.0.1:6379"],
        cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True, text=True, timeout=30,
    )

    assert result.returncode == EXIT_USAGE
    assert "redis" in one_line(result.stderr).lower()
