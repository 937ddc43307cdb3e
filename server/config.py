"""Typed settings, read once from the environment (and an optional ``.env``).

``Settings.from_env`` is the only place that looks at environment variables;
everything else receives a ``Settings`` object. A bad value raises
``ConfigError`` with a one-line message that names the variable.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

from .errors import ConfigError

__all__ = ["Settings", "check_redis_url", "load_environ"]

DEFAULT_CHANNEL = "kindmap_events"
AUTH_MODES = ("jwt", "dev")
DUPLICATE_POLICIES = ("allow", "replace")
# RFC 7518 section 3.2: an HMAC key at least as long as the hash output.
JWT_ALGORITHMS = {"HS256": 32, "HS384": 48, "HS512": 64}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
MAX_JWT_LEEWAY = 300
# Upper bounds of the flood limits: past them a limit is no limit.
MAX_RATE = 10_000
MAX_BURST = 100_000
MAX_STRIKES = 60
MAX_CONNECT_TIMEOUT = 600
MAX_CONNECTIONS_BOUND = 1_000_000



def load_environ(env_file: str | Path = ".env", environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The process environment laid over the values of ``env_file``, if it exists.

    Real environment variables win, so a deployment can override a checked-in file.
    """
    merged = {k: v for k, v in dotenv_values(env_file).items() if v is not None}
    merged.update(os.environ if environ is None else environ)
    return merged


def _default_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class Settings:
    """Everything a replica needs to know, validated once at start-up."""

    jwt_secret: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    redis_url: str | None = None
    channel: str = DEFAULT_CHANNEL
    jwt_algorithm: str = "HS256"
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_leeway: float = 0.0
    auth_mode: str = "jwt"
    instance_id: str = field(default_factory=_default_instance_id)
    cors_allowed_origins: tuple[str, ...] = ()
    server_api_key: str | None = None
    queue_signing_key: str | None = None
    duplicate_connection_policy: str = "allow"
    max_payload_bytes: int = 64 * 1024
    rate_limit_events_per_second: float = 20.0
    rate_limit_burst: int = 40
    rate_limit_strikes: int = 3
    handshake_rate_per_second: float = 10.0
    handshake_burst: int = 100
    handshake_client_ip_header: str | None = None
    connect_timeout: float = 45.0
    max_connections: int = 10_000
    shutdown_timeout: float = 5.0
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        _check_choice("AUTH_MODE", self.auth_mode, AUTH_MODES)
        _check_choice("JWT_ALGORITHM", self.jwt_algorithm, tuple(JWT_ALGORITHMS))
        _check_choice("DUPLICATE_CONNECTION_POLICY", self.duplicate_connection_policy, DUPLICATE_POLICIES)
        _check_choice("LOG_LEVEL", self.log_level, LOG_LEVELS)
        if not 0 < self.port < 65536:
            raise ConfigError(f"PORT must be between 1 and 65535, got {self.port}")
        if self.auth_mode == "jwt" and not self.jwt_secret:
            raise ConfigError("JWT_SECRET is required when AUTH_MODE=jwt (set AUTH_MODE=dev only for local use)")
        min_secret = JWT_ALGORITHMS[self.jwt_algorithm]
        if self.jwt_secret is not None and len(self.jwt_secret.encode()) < min_secret:
            raise ConfigError(f"JWT_SECRET must be at least {min_secret} bytes long for {self.jwt_algorithm}")
        if self.server_api_key is not None and len(self.server_api_key) < 16:
            raise ConfigError("SERVER_API_KEY must be at least 16 characters long")
        if self.queue_signing_key is not None and len(self.queue_signing_key.encode()) < 32:
            raise ConfigError("QUEUE_SIGNING_KEY must be at least 32 bytes long")
        if self.redis_url is not None:
            check_redis_url("REDIS_URL", self.redis_url)
        if not self.channel:
            raise ConfigError("SOCKETIO_CHANNEL must not be empty")
        if not self.instance_id:
            raise ConfigError("INSTANCE_ID must not be empty")
        if self.max_payload_bytes < 1024:
            raise ConfigError("MAX_PAYLOAD_BYTES must be at least 1024")
        if not 0 <= self.jwt_leeway <= MAX_JWT_LEEWAY:
            raise ConfigError(f"JWT_LEEWAY_SECONDS must be between 0 and {MAX_JWT_LEEWAY}")
        if not 0 < self.shutdown_timeout < float("inf"):
            raise ConfigError("SHUTDOWN_TIMEOUT must be positive")
        _check_range("RATE_LIMIT_EVENTS_PER_SECOND", self.rate_limit_events_per_second, 0.1, MAX_RATE)
        _check_range("RATE_LIMIT_BURST", self.rate_limit_burst, 1, MAX_BURST)
        _check_range("RATE_LIMIT_STRIKES", self.rate_limit_strikes, 1, MAX_STRIKES)
        _check_range("HANDSHAKE_RATE_PER_SECOND", self.handshake_rate_per_second, 0.1, MAX_RATE)
        _check_range("HANDSHAKE_BURST", self.handshake_burst, 1, MAX_BURST)
        _check_range("CONNECT_TIMEOUT_SECONDS", self.connect_timeout, 1, MAX_CONNECT_TIMEOUT)
        _check_range("MAX_CONNECTIONS", self.max_connections, 1, MAX_CONNECTIONS_BOUND)

    @property
    def dev_mode(self) -> bool:
        return self.auth_mode == "dev"

    @property
    def signing_key(self) -> bytes | None:
        """``QUEUE_SIGNING_KEY`` as the bytes HMAC wants, or ``None`` (unsigned envelopes)."""
        return None if self.queue_signing_key is None else self.queue_signing_key.encode()

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from variables such as ``os.environ``; unset means default."""
        values: dict[str, object] = {}

        def take(name: str, attr: str, cast: Callable[[str, str], object] = lambda _, v: v) -> None:
            raw = environ.get(name)
            if raw is not None and raw.strip() != "":
                values[attr] = cast(name, raw.strip())

        take("JWT_SECRET", "jwt_secret")
        take("HOST", "host")
        take("PORT", "port", _to_int)
        take("REDIS_URL", "redis_url")
        take("SOCKETIO_CHANNEL", "channel")
        take("JWT_ALGORITHM", "jwt_algorithm")
        take("JWT_AUDIENCE", "jwt_audience")
        take("JWT_ISSUER", "jwt_issuer")
        take("JWT_LEEWAY_SECONDS", "jwt_leeway", _to_float)
        take("AUTH_MODE", "auth_mode", lambda _, v: v.lower())
        take("INSTANCE_ID", "instance_id")
        take("CORS_ALLOWED_ORIGINS", "cors_allowed_origins", _to_origins)
        take("SERVER_API_KEY", "server_api_key")
        take("QUEUE_SIGNING_KEY", "queue_signing_key")
        take("DUPLICATE_CONNECTION_POLICY", "duplicate_connection_policy", lambda _, v: v.lower())
        take("MAX_PAYLOAD_BYTES", "max_payload_bytes", _to_int)
        take("SHUTDOWN_TIMEOUT", "shutdown_timeout", _to_float)
        take("RATE_LIMIT_EVENTS_PER_SECOND", "rate_limit_events_per_second", _to_float)
        take("RATE_LIMIT_BURST", "rate_limit_burst", _to_int)
        take("RATE_LIMIT_STRIKES", "rate_limit_strikes", _to_int)
        take("HANDSHAKE_RATE_PER_SECOND", "handshake_rate_per_second", _to_float)
        take("HANDSHAKE_BURST", "handshake_burst", _to_int)
        take("HANDSHAKE_CLIENT_IP_HEADER", "handshake_client_ip_header")
        take("CONNECT_TIMEOUT_SECONDS", "connect_timeout", _to_float)
        take("MAX_CONNECTIONS", "max_connections", _to_int)
        take("LOG_LEVEL", "log_level", lambda _, v: v.upper())
        return cls(**values)  # type: ignore[arg-type]


def check_redis_url(name: str, url: str) -> None:
    """Refuse at once a URL that redis-py would only reject on first use."""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        scheme = url.split("://", 1)[0] if "://" in url else "no scheme"  # never echo a password
        raise ConfigError(f"{name} must start with redis://, rediss:// or unix:// (got {scheme})")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:  # also refuses NaN
        raise ConfigError(f"{name} must be between {low:g} and {high:g}, got {value:g}")


def _to_int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def _to_float(name: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


def _to_origins(name: str, raw: str) -> tuple[str, ...]:
    origins = tuple(o.strip() for o in raw.split(",") if o.strip())
    for origin in origins:
        if origin != "*" and not origin.startswith(("http://", "https://")):
            raise ConfigError(f"{name} entries must be '*' or start with http:// or https://, got {origin!r}")
    return origins
