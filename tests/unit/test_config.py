"""server/config.py: every setting parsed, every bad value refused by name."""

from __future__ import annotations

import dataclasses
import os
import socket
from pathlib import Path

import pytest

from kindmap_realtime.environment import load_environ
from kindmap_realtime.errors import ConfigError
from kindmap_realtime.limits import DEFAULT_CHANNEL
from server.config import Settings

# RFC 7518 section 3.2, written here rather than read from the code under test.
MIN_SECRET_BYTES = 32
SECRET = "s" * MIN_SECRET_BYTES
LONG_SECRET = "s" * 64
API_KEY = "k" * 16
SIGNING_KEY = "q" * 32


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
    assert settings.max_queue_message_bytes == 1024 * 1024
    assert settings.dev_allowed_hosts == ()
    assert settings.dev_allow_non_loopback is False
    assert settings.max_outgoing_buffer_bytes == 1024 * 1024
    assert settings.shutdown_timeout == 5.0
    assert settings.log_level == "INFO"
    assert settings.allow_unsigned_queue is False
    assert settings.queue_replay_window == 30.0


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
        "AUTH_MODE": "jwt",
        "INSTANCE_ID": "replica-7",
        "CORS_ALLOWED_ORIGINS": "https://kindmap.example, http://localhost:3000",
        "SERVER_API_KEY": API_KEY,
        "QUEUE_SIGNING_KEY": "q" * 32,
        "ALLOW_UNSIGNED_QUEUE": "yes",
        "QUEUE_REPLAY_WINDOW_SECONDS": "12.5",
        "JWT_AUDIENCE": "kindmap-realtime",
        "JWT_ISSUER": "kindmap-auth",
        "JWT_LEEWAY_SECONDS": "15",
        "DUPLICATE_CONNECTION_POLICY": "replace",
        "MAX_PAYLOAD_BYTES": "2048",
        "MAX_QUEUE_MESSAGE_BYTES": "4096",
        "MAX_OUTGOING_BUFFER_BYTES": "131072",
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
        auth_mode="jwt",
        instance_id="replica-7",
        cors_allowed_origins=("https://kindmap.example", "http://localhost:3000"),
        server_api_key=API_KEY,
        queue_signing_key="q" * 32,
        allow_unsigned_queue=True,
        queue_replay_window=12.5,
        jwt_audience="kindmap-realtime",
        jwt_issuer="kindmap-auth",
        jwt_leeway=15.0,
        duplicate_connection_policy="replace",
        max_payload_bytes=2048,
        max_queue_message_bytes=4096,
        max_outgoing_buffer_bytes=131072,
        shutdown_timeout=1.5,
        log_level="DEBUG",
    )


def test_bad_redis_url_error_does_not_echo_its_password() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings(jwt_secret=SECRET, redis_url="http://user:hunter2-password@cache:6379")
    assert "REDIS_URL" in str(caught.value) and "hunter2" not in str(caught.value)


def test_redis_in_jwt_mode_requires_a_signing_key_unless_explicitly_opted_out() -> None:
    with pytest.raises(ConfigError, match=r"QUEUE_SIGNING_KEY.*ALLOW_UNSIGNED_QUEUE"):
        Settings.from_env({"JWT_SECRET": SECRET, "REDIS_URL": "redis://cache:6379"})
    assert Settings.from_env({"JWT_SECRET": SECRET, "REDIS_URL": "redis://cache:6379",
                              "QUEUE_SIGNING_KEY": "q" * 32}).signing_key == b"q" * 32
    assert Settings.from_env({"JWT_SECRET": SECRET, "REDIS_URL": "redis://cache:6379",
                              "ALLOW_UNSIGNED_QUEUE": "true"}).signing_key is None
    assert Settings.from_env({"AUTH_MODE": "dev", "REDIS_URL": "redis://cache:6379"}).signing_key is None


def test_signing_key_is_handed_to_hmac_as_bytes_and_absent_by_default() -> None:
    assert Settings(jwt_secret=SECRET).signing_key is None
    assert Settings(jwt_secret=SECRET, queue_signing_key="ключ" * 8).signing_key == ("ключ" * 8).encode()


@pytest.mark.parametrize(("name", "raw", "attr", "expected"), [
    ("AUTH_MODE", "JWT", "auth_mode", "jwt"),
    ("DUPLICATE_CONNECTION_POLICY", "Replace", "duplicate_connection_policy", "replace"),
    ("LOG_LEVEL", "warning", "log_level", "WARNING"),
    ("PORT", "  8080 ", "port", 8080),
    ("CORS_ALLOWED_ORIGINS", "*", "cors_allowed_origins", ("*",)),
    ("CORS_ALLOWED_ORIGINS", " , ", "cors_allowed_origins", ()),
    ("REDIS_URL", "unix:///run/redis.sock", "redis_url", "unix:///run/redis.sock"),
    ("REDIS_URL", "rediss://cache:6380", "redis_url", "rediss://cache:6380"),
])
def test_values_are_normalised(name: str, raw: str, attr: str, expected: object) -> None:
    settings = Settings.from_env({"JWT_SECRET": SECRET, "ALLOW_UNSIGNED_QUEUE": "true", name: raw})

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
    ("REDIS_URL", "memory://"),  # a replica alone is REDIS_URL unset
    ("CORS_ALLOWED_ORIGINS", "kindmap.example"),
    ("CORS_ALLOWED_ORIGINS", "https://ok.example,ftp://files.example"),
    ("CORS_ALLOWED_ORIGINS", "http://[::1"),
    ("CORS_ALLOWED_ORIGINS", "http://[bad]"),
    ("HOST", "a" * 64 + ".example"),
    ("HOST", "a..b"),
    ("INSTANCE_ID", "replica\n1"),
    ("INSTANCE_ID", "replica\x1b[31m"),
    ("INSTANCE_ID", "replica\udcff"),
    ("HOST", "a\udcffb"),
    ("SERVER_API_KEY", "short-key"),
    ("QUEUE_SIGNING_KEY", "q" * 31),
    ("ALLOW_UNSIGNED_QUEUE", "maybe"),
    ("QUEUE_REPLAY_WINDOW_SECONDS", "0.5"),
    ("QUEUE_REPLAY_WINDOW_SECONDS", "301"),
    ("QUEUE_REPLAY_WINDOW_SECONDS", "nan"),
    ("JWT_LEEWAY_SECONDS", "-1"),
    ("JWT_LEEWAY_SECONDS", "301"),
    ("JWT_LEEWAY_SECONDS", "a while"),
    ("MAX_PAYLOAD_BYTES", "1023"),
    ("MAX_PAYLOAD_BYTES", "64k"),
    ("MAX_OUTGOING_BUFFER_BYTES", "65535"),
    ("MAX_OUTGOING_BUFFER_BYTES", str(256 * 1024 * 1024 + 1)),
    ("MAX_OUTGOING_BUFFER_BYTES", "1M"),
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


def test_hs256_secret_of_31_bytes_is_refused_and_of_32_accepted() -> None:
    with pytest.raises(ConfigError, match="JWT_SECRET"):
        Settings(jwt_secret="é" * 15 + "x")  # 16 characters, 31 bytes: counted in bytes
    assert Settings(jwt_secret="x" * 32).jwt_secret == "x" * 32


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


def test_load_environ_takes_values_of_the_env_file_as_written_without_expanding_variables(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("QUEUE_SIGNING_KEY=abc${HOME}def$PATH\n")

    assert load_environ(env_file, environ={"HOME": "/root"})["QUEUE_SIGNING_KEY"] == "abc${HOME}def$PATH"


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


# --- item by item: values that used to pass silently or end in a traceback ----------------


@pytest.mark.parametrize("url", [
    pytest.param("redis://cache:abc/0", id="port-not-a-number"),
    pytest.param("redis://cache:99999/0", id="port-too-large"),
    pytest.param("redis://cache:0/0", id="port-zero"),
    pytest.param("redis://cache:6379/abc", id="database-not-a-number"),
    pytest.param("redis://cache:6379/0?db=two", id="db-query-not-a-number"),
    pytest.param("redis://cache:6379/0?socket_timeout=soon", id="bad-query-option"),
    pytest.param("unix://", id="unix-without-path"),
])
def test_malformed_redis_url_is_refused_at_start_up(url: str) -> None:
    with pytest.raises(ConfigError, match="REDIS_URL"):
        Settings.from_env({"JWT_SECRET": SECRET, "REDIS_URL": url, "QUEUE_SIGNING_KEY": SIGNING_KEY})


@pytest.mark.parametrize("url", ["redis://cache", "redis://cache:6380/15", "rediss://:pw@cache/0",
                                 "redis://cache/?db=3", "unix:///run/redis.sock"])
def test_well_formed_redis_urls_are_accepted(url: str) -> None:
    assert Settings.from_env({"JWT_SECRET": SECRET, "REDIS_URL": url,
                              "QUEUE_SIGNING_KEY": SIGNING_KEY}).redis_url == url


@pytest.mark.parametrize("name", ["SERVER_API_KEY", "QUEUE_SIGNING_KEY", "JWT_SECRET"])
def test_a_key_of_spaces_is_refused_not_taken_as_unset(name: str) -> None:
    with pytest.raises(ConfigError, match=f"{name} is only whitespace"):
        Settings.from_env({"JWT_SECRET": SECRET, name: "      "})


def test_an_empty_key_means_unset() -> None:
    assert Settings.from_env({"JWT_SECRET": SECRET, "SERVER_API_KEY": ""}).server_api_key is None


@pytest.mark.parametrize(("raw", "expected"), [
    ("https://kindmap.example/", ("https://kindmap.example",)),
    ("HTTPS://KindMap.Example:8443/, http://localhost:3000", ("https://kindmap.example:8443",
                                                               "http://localhost:3000")),
    ("*", ("*",)),
])
def test_cors_origins_are_written_as_browsers_send_them(raw: str, expected: tuple[str, ...]) -> None:
    assert Settings.from_env({"JWT_SECRET": SECRET, "CORS_ALLOWED_ORIGINS": raw}).cors_allowed_origins == expected


@pytest.mark.parametrize("raw", ["https://kindmap.example/app", "https://kindmap.example?x=1", "https://",
                                 "kindmap.example"])
def test_cors_entry_that_is_not_an_origin_is_refused(raw: str) -> None:
    with pytest.raises(ConfigError, match="CORS_ALLOWED_ORIGINS"):
        Settings.from_env({"JWT_SECRET": SECRET, "CORS_ALLOWED_ORIGINS": raw})


def test_env_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_bytes(b"JWT_SECRET=caf\xe9-secret\n")

    with pytest.raises(ConfigError, match="not UTF-8"):
        load_environ(env_file, environ={})


@pytest.mark.parametrize(("raw", "expected"), [("1024", 1024), ("33554432", 32 * 1024 * 1024)])
def test_queue_message_limit_is_read(raw: str, expected: int) -> None:
    settings = Settings.from_env({"JWT_SECRET": SECRET, "MAX_QUEUE_MESSAGE_BYTES": raw})

    assert settings.max_queue_message_bytes == expected


@pytest.mark.parametrize("raw", ["1023", "0", "-1", "1MB", str(512 * 1024 * 1024 + 1)])
def test_queue_message_limit_out_of_range_is_refused(raw: str) -> None:
    with pytest.raises(ConfigError, match="MAX_QUEUE_MESSAGE_BYTES"):
        Settings.from_env({"JWT_SECRET": SECRET, "MAX_QUEUE_MESSAGE_BYTES": raw})


# --- dev mode cannot be switched on by accident ------------------------------------------------


def test_dev_mode_refuses_to_start_next_to_a_jwt_secret() -> None:
    with pytest.raises(ConfigError, match=r"AUTH_MODE=dev .*JWT_SECRET"):
        Settings.from_env({"AUTH_MODE": "dev", "JWT_SECRET": SECRET})


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "kindmap.example"])
def test_dev_mode_refuses_a_host_beyond_loopback(host: str) -> None:
    with pytest.raises(ConfigError, match="DEV_ALLOW_NON_LOOPBACK"):
        Settings.from_env({"AUTH_MODE": "dev", "HOST": host})


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.1.1", "::1", "localhost"])
def test_dev_mode_runs_on_a_loopback_host(host: str) -> None:
    assert Settings.from_env({"AUTH_MODE": "dev", "HOST": host}).dev_mode is True


def test_dev_mode_beyond_loopback_needs_the_explicit_opt_in() -> None:
    settings = Settings.from_env({"AUTH_MODE": "dev", "HOST": "0.0.0.0", "DEV_ALLOW_NON_LOOPBACK": "true"})

    assert (settings.host, settings.dev_allow_non_loopback) == ("0.0.0.0", True)


def test_dev_allowed_hosts_are_read_as_lower_case_names() -> None:
    settings = Settings.from_env({"AUTH_MODE": "dev", "DEV_ALLOWED_HOSTS": "Laptop.lan, devbox,[fd00::1]"})

    assert settings.dev_allowed_hosts == ("laptop.lan", "devbox", "[fd00::1]")


@pytest.mark.parametrize("raw", ["http://laptop.lan", "laptop.lan:8000", "*", "laptop lan"])
def test_dev_allowed_hosts_must_be_bare_host_names(raw: str) -> None:
    with pytest.raises(ConfigError, match="DEV_ALLOWED_HOSTS"):
        Settings.from_env({"AUTH_MODE": "dev", "DEV_ALLOWED_HOSTS": raw})


@pytest.mark.parametrize("environ", [{"DEV_ALLOWED_HOSTS": "laptop.lan"}, {"DEV_ALLOW_NON_LOOPBACK": "true"}])
def test_dev_settings_outside_dev_mode_are_refused(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="only with AUTH_MODE=dev"):
        Settings.from_env({"JWT_SECRET": SECRET, **environ})
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


@pytest.mark.parametrize(("host", "url"), [("127.0.0.1", "http://127.0.0.1:8080"), ("0.0.0.0", "http://127.0.0.1:8080"),
                                           ("::1", "http://[::1]:8080"), ("::", "http://[::1]:8080"),
                                           ("realtime.internal", "http://realtime.internal:8080")])
def test_public_url_is_where_a_person_reaches_the_replica(host: str, url: str) -> None:
    assert Settings.from_env({"JWT_SECRET": SECRET, "HOST": host, "PORT": "8080"}).public_url == url
