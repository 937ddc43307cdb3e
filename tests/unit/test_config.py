"""server/config.py: every setting parsed, every bad value refused by name."""

from __future__ import annotations

import dataclasses
import os
import socket
from pathlib import Path

import pytest

from server.config import DEFAULT_CHANNEL, JWT_ALGORITHMS, Settings, load_environ
from server.errors import ConfigError

MIN_SECRET_BYTES = JWT_ALGORITHMS["HS256"]
SECRET = "s" * MIN_SECRET_BYTES
LONG_SECRET = "s" * JWT_ALGORITHMS["HS512"]
API_KEY = "k" * 16


def test_unset_variables_give_the_documented_defaults() -> None:
    settings = Settings.from_env({"JWT_SECRET": SECRET})

    assert settings.host == "127.0.0.1"
    assert settings.port == 8000
    assert settings.redis_url is None
    assert settings.channel == DEFAULT_CHANNEL == "kindmap_events"
    assert settings.jwt_algorithm == "HS256"
    assert settings.auth_mode == "jwt"
    assert settings.dev_mode is False
    assert settings.cors_allowed_origins == ()
    assert settings.server_api_key is None
    assert settings.duplicate_connection_policy == "allow"
    assert settings.max_payload_bytes == 64 * 1024
    assert settings.shutdown_timeout == 5.0
    assert settings.log_level == "INFO"


def test_default_instance_id_is_host_name_and_pid() -> None:
    settings = Settings.from_env({"JWT_SECRET": SECRET})

    assert settings.instance_id == f"{socket.gethostname()}-{os.getpid()}"


def test_every_setting_is_parsed_from_the_environment() -> None:
    environ = {
        "JWT_SECRET": LONG_SECRET,
        "HOST": "0.0.0.0",
        "PORT": "9001",
        "REDIS_URL": "redis://cache:6379/2",
        "SOCKETIO_CHANNEL": "kindmap_test",
        "JWT_ALGORITHM": "HS512",
        "AUTH_MODE": "dev",
        "INSTANCE_ID": "replica-7",
        "CORS_ALLOWED_ORIGINS": "https://kindmap.example, http://localhost:3000",
        "SERVER_API_KEY": API_KEY,
        "QUEUE_SIGNING_KEY": "q" * 32,
        "JWT_AUDIENCE": "kindmap-realtime",
        "JWT_ISSUER": "kindmap-auth",
        "JWT_LEEWAY_SECONDS": "15",
        "DUPLICATE_CONNECTION_POLICY": "replace",
        "MAX_PAYLOAD_BYTES": "2048",
        "SHUTDOWN_TIMEOUT": "1.5",
        "LOG_LEVEL": "DEBUG",
    }

    settings = Settings.from_env(environ)

    assert settings == Settings(
        jwt_secret=LONG_SECRET,
        host="0.0.0.0",
        port=9001,
        redis_url="redis://cache:6379/2",
        channel="kindmap_test",
        jwt_algorithm="HS512",
        auth_mode="dev",
        instance_id="replica-7",
        cors_allowed_origins=("https://kindmap.example", "http://localhost:3000"),
        server_api_key=API_KEY,
        queue_signing_key="q" * 32,
        jwt_audience="kindmap-realtime",
        jwt_issuer="kindmap-auth",
        jwt_leeway=15.0,
        duplicate_connection_policy="replace",
        max_payload_bytes=2048,
        shutdown_timeout=1.5,
        log_level="DEBUG",
    )


def test_bad_redis_url_error_does_not_echo_its_password() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings(jwt_secret=SECRET, redis_url="http://user:hunter2-password@cache:6379")
    assert "REDIS_URL" in str(caught.value) and "hunter2" not in str(caught.value)


def test_signing_key_is_handed_to_hmac_as_bytes_and_absent_by_default() -> None:
    assert Settings(jwt_secret=SECRET).signing_key is None
    assert Settings(jwt_secret=SECRET, queue_signing_key="ключ" * 8).signing_key == ("ключ" * 8).encode()


@pytest.mark.parametrize(("name", "raw", "attr", "expected"), [
    ("AUTH_MODE", "DEV", "auth_mode", "dev"),
    ("DUPLICATE_CONNECTION_POLICY", "Replace", "duplicate_connection_policy", "replace"),
    ("LOG_LEVEL", "warning", "log_level", "WARNING"),
    ("PORT", "  8080 ", "port", 8080),
    ("CORS_ALLOWED_ORIGINS", "*", "cors_allowed_origins", ("*",)),
    ("CORS_ALLOWED_ORIGINS", " , ", "cors_allowed_origins", ()),
    ("REDIS_URL", "unix:///run/redis.sock", "redis_url", "unix:///run/redis.sock"),
    ("REDIS_URL", "rediss://cache:6380", "redis_url", "rediss://cache:6380"),
])
def test_values_are_normalised(name: str, raw: str, attr: str, expected: object) -> None:
    settings = Settings.from_env({"JWT_SECRET": SECRET, name: raw})

    assert getattr(settings, attr) == expected


@pytest.mark.parametrize("name", ["PORT", "REDIS_URL", "SOCKETIO_CHANNEL", "INSTANCE_ID", "LOG_LEVEL"])
def test_blank_value_means_the_default(name: str) -> None:
    blank = Settings.from_env({"JWT_SECRET": SECRET, name: "   "})

    assert blank == Settings.from_env({"JWT_SECRET": SECRET})


@pytest.mark.parametrize(("name", "raw"), [
    ("PORT", "eighty"),
    ("PORT", "80.5"),
    ("PORT", "0"),
    ("PORT", "-1"),
    ("PORT", "65536"),
    ("AUTH_MODE", "oauth"),
    ("JWT_ALGORITHM", "RS256"),
    ("JWT_ALGORITHM", "none"),
    ("JWT_ALGORITHM", "hs256"),
    ("DUPLICATE_CONNECTION_POLICY", "kick"),
    ("LOG_LEVEL", "LOUD"),
    ("REDIS_URL", "http://cache:6379"),
    ("REDIS_URL", "cache:6379"),
    ("CORS_ALLOWED_ORIGINS", "kindmap.example"),
    ("CORS_ALLOWED_ORIGINS", "https://ok.example,ftp://files.example"),
    ("SERVER_API_KEY", "short-key"),
    ("QUEUE_SIGNING_KEY", "q" * 31),
    ("JWT_LEEWAY_SECONDS", "-1"),
    ("JWT_LEEWAY_SECONDS", "301"),
    ("JWT_LEEWAY_SECONDS", "a while"),
    ("MAX_PAYLOAD_BYTES", "1023"),
    ("MAX_PAYLOAD_BYTES", "64k"),
    ("SHUTDOWN_TIMEOUT", "0"),
    ("SHUTDOWN_TIMEOUT", "-3"),
    ("SHUTDOWN_TIMEOUT", "soon"),
    ("SHUTDOWN_TIMEOUT", "nan"),
    ("JWT_SECRET", "s" * (MIN_SECRET_BYTES - 1)),
])
def test_bad_value_raises_config_error_naming_the_variable(name: str, raw: str) -> None:
    environ = {"JWT_SECRET": SECRET, name: raw}

    with pytest.raises(ConfigError) as caught:
        Settings.from_env(environ)

    assert name in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("name", "overrides"), [
    ("SOCKETIO_CHANNEL", {"channel": ""}),
    ("INSTANCE_ID", {"instance_id": ""}),
    ("PORT", {"port": 0}),
])
def test_settings_built_directly_are_validated_too(name: str, overrides: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings(jwt_secret=SECRET, **overrides)  # type: ignore[arg-type]


def test_jwt_mode_without_secret_is_refused() -> None:
    with pytest.raises(ConfigError, match="JWT_SECRET"):
        Settings.from_env({})


def test_dev_mode_runs_without_a_secret() -> None:
    settings = Settings.from_env({"AUTH_MODE": "dev"})

    assert settings.dev_mode is True
    assert settings.jwt_secret is None


@pytest.mark.parametrize("auth_mode", ["jwt", "dev"])
def test_short_secret_is_refused_in_every_auth_mode(auth_mode: str) -> None:
    with pytest.raises(ConfigError, match="JWT_SECRET"):
        Settings(jwt_secret="x" * (MIN_SECRET_BYTES - 1), auth_mode=auth_mode)


@pytest.mark.parametrize(("algorithm", "hash_bytes"), [("HS384", 48), ("HS512", 64)])
def test_secret_shorter_than_the_algorithms_hash_is_refused(algorithm: str, hash_bytes: int) -> None:
    with pytest.raises(ConfigError, match="JWT_SECRET"):
        Settings(jwt_secret="s" * (hash_bytes - 1), jwt_algorithm=algorithm)


def test_secret_length_is_counted_in_bytes() -> None:
    # Two-byte characters: half as many characters as MIN_SECRET_BYTES, but long enough in bytes.
    secret = "é" * (MIN_SECRET_BYTES // 2)

    assert Settings(jwt_secret=secret).jwt_secret == secret


def test_settings_are_frozen() -> None:
    settings = Settings(jwt_secret=SECRET)

    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.port = 1  # type: ignore[misc]


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        Settings.from_env({"JWT_SECRET": SECRET, "PORT": "x"})


def test_load_environ_gives_the_environment_priority_over_the_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("PORT=9000\nHOST=0.0.0.0\nLOG_LEVEL=DEBUG\n")

    merged = load_environ(env_file, environ={"PORT": "9100", "INSTANCE_ID": "from-env"})

    assert merged == {"PORT": "9100", "HOST": "0.0.0.0", "LOG_LEVEL": "DEBUG", "INSTANCE_ID": "from-env"}


def test_load_environ_without_env_file_returns_the_environment(tmp_path: Path) -> None:
    merged = load_environ(tmp_path / "missing.env", environ={"PORT": "9100"})

    assert merged == {"PORT": "9100"}


def test_load_environ_skips_env_file_keys_without_a_value(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("REDIS_URL\nPORT=9000\n")

    merged = load_environ(env_file, environ={})

    assert merged == {"PORT": "9000"}


def test_load_environ_reads_the_process_environment_by_default(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("KINDMAP_UNIT_PROBE=from-file\n")
    monkeypatch.setenv("KINDMAP_UNIT_PROBE", "from-process")

    merged = load_environ(env_file)

    assert merged["KINDMAP_UNIT_PROBE"] == "from-process"


def test_env_file_values_reach_settings(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f"JWT_SECRET={SECRET}\nPORT=9000\n")

    settings = Settings.from_env(load_environ(env_file, environ={"SOCKETIO_CHANNEL": "from_env"}))

    assert (settings.port, settings.channel) == (9000, "from_env")


def test_flood_limits_have_defaults_a_real_app_tolerates_and_are_read_from_the_environment() -> None:
    defaults = Settings.from_env({"JWT_SECRET": SECRET})
    rates = (defaults.rate_limit_events_per_second, defaults.rate_limit_burst, defaults.rate_limit_strikes)
    assert rates == (20, 40, 3)
    assert (defaults.handshake_rate_per_second, defaults.handshake_burst) == (10, 100)
    assert defaults.handshake_client_ip_header is None
    assert (defaults.connect_timeout, defaults.max_connections) == (45, 10_000)

    settings = Settings.from_env({
        "JWT_SECRET": SECRET, "RATE_LIMIT_EVENTS_PER_SECOND": "2.5", "RATE_LIMIT_BURST": "5",
        "RATE_LIMIT_STRIKES": "2", "HANDSHAKE_RATE_PER_SECOND": "1", "HANDSHAKE_BURST": "3",
        "HANDSHAKE_CLIENT_IP_HEADER": "X-Real-IP", "CONNECT_TIMEOUT_SECONDS": "5", "MAX_CONNECTIONS": "7",
    })
    assert settings == Settings(
        jwt_secret=SECRET, rate_limit_events_per_second=2.5, rate_limit_burst=5, rate_limit_strikes=2,
        handshake_rate_per_second=1, handshake_burst=3, handshake_client_ip_header="X-Real-IP",
        connect_timeout=5, max_connections=7,
    )


@pytest.mark.parametrize(("name", "raw"), [
    ("RATE_LIMIT_EVENTS_PER_SECOND", "0"),
    ("RATE_LIMIT_EVENTS_PER_SECOND", "nan"),
    ("RATE_LIMIT_EVENTS_PER_SECOND", "10001"),
    ("RATE_LIMIT_BURST", "0"),
    ("RATE_LIMIT_BURST", "1.5"),
    ("RATE_LIMIT_STRIKES", "0"),
    ("RATE_LIMIT_STRIKES", "61"),
    ("HANDSHAKE_RATE_PER_SECOND", "-1"),
    ("HANDSHAKE_BURST", "100001"),
    ("CONNECT_TIMEOUT_SECONDS", "0.5"),
    ("CONNECT_TIMEOUT_SECONDS", "inf"),
    ("MAX_CONNECTIONS", "0"),
    ("MAX_CONNECTIONS", "lots"),
])
def test_flood_limit_out_of_bounds_raises_config_error_naming_the_variable(name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({"JWT_SECRET": SECRET, name: raw})
