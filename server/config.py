"""Typed settings, read once from the environment (and an optional ``.env``).

``Settings.from_env`` is the only place that looks at environment variables;
everything else receives a ``Settings`` object. A bad value raises
``ConfigError`` with a one-line message that names the variable.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import dotenv_values
from redis.asyncio.connection import parse_url

from .errors import ConfigError

__all__ = ["Settings", "check_queue_message_bytes", "check_redis_url", "is_loopback_host", "load_environ"]

DEFAULT_CHANNEL = "kindmap_events"
AUTH_MODES = ("jwt", "dev")
DUPLICATE_POLICIES = ("allow", "replace")
# RFC 7518 section 3.2: an HMAC key at least as long as the hash output.
JWT_ALGORITHMS = {"HS256": 32, "HS384": 48, "HS512": 64}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
MAX_JWT_LEEWAY = 300
# The largest queue message. Redis cuts a subscriber whose output buffer passes
# `client-output-buffer-limit pubsub` (docker-compose.prod.yml: 32 MB at once, or 8 MB
# for 60 s), and every message in flight to a replica shares that buffer: one message of
# 40 MB, or 9 of 1 MB held for a minute, make Redis drop every replica's subscription.
# 1 MiB leaves room for a burst of several such messages under the 8 MB soft limit.
DEFAULT_MAX_QUEUE_MESSAGE_BYTES = 1024 * 1024
MIN_QUEUE_MESSAGE_BYTES = 1024
MAX_QUEUE_MESSAGE_BYTES = 512 * 1024 * 1024  # Redis's proto-max-bulk-len: no larger PUBLISH exists
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
_HOST_NAME = re.compile(r"[a-z0-9.-]+|\[[0-9a-f:.]+\]")
# A socket's outgoing buffer: room for a burst of navigation messages, not for a backlog.
MIN_OUTGOING_BUFFER = 64 * 1024
MAX_OUTGOING_BUFFER = 256 * 1024 * 1024
# Upper bounds of the flood limits: past them a limit is no limit.
MAX_RATE = 10_000
MAX_BURST = 100_000
MAX_STRIKES = 60
MAX_CONNECT_TIMEOUT = 600
MAX_CONNECTIONS_BOUND = 1_000_000

# Signed envelopes older or newer than this are dropped; bounds also the memory of seen ids.
MIN_REPLAY_WINDOW, MAX_REPLAY_WINDOW = 1.0, 300.0


def load_environ(env_file: str | Path = ".env", environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The process environment laid over the values of ``env_file``, if it exists.

    Real environment variables win, so a deployment can override a checked-in file.
    """
    try:
        values = dotenv_values(env_file)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{env_file} is not UTF-8 text (byte {exc.start}); fix or remove it") from None
    except OSError as exc:
        raise ConfigError(f"{env_file} cannot be read: {exc.strerror or exc}") from None
    merged = {k: v for k, v in values.items() if v is not None}
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
    allow_unsigned_queue: bool = False
    queue_replay_window: float = 30.0
    duplicate_connection_policy: str = "allow"
    max_payload_bytes: int = 64 * 1024
    max_queue_message_bytes: int = DEFAULT_MAX_QUEUE_MESSAGE_BYTES
    dev_allowed_hosts: tuple[str, ...] = ()
    dev_allow_non_loopback: bool = False
    max_outgoing_buffer_bytes: int = 1024 * 1024
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
        try:  # what getaddrinfo does with a name; it would fail there with a traceback
            self.host.encode("idna")
        except UnicodeError:
            raise ConfigError(f"HOST must be an address or a host name (labels of 1-63 characters), "
                              f"got {self.host!r}") from None
        self._check_dev_mode()
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
            if self.auth_mode == "jwt" and self.queue_signing_key is None and not self.allow_unsigned_queue:
                raise ConfigError("QUEUE_SIGNING_KEY is required with REDIS_URL in jwt mode: anyone who can "
                                  "publish to Redis could otherwise message or disconnect any user "
                                  "(ALLOW_UNSIGNED_QUEUE=true opts out, for development only)")
        if not MIN_REPLAY_WINDOW <= self.queue_replay_window <= MAX_REPLAY_WINDOW:
            raise ConfigError(f"QUEUE_REPLAY_WINDOW_SECONDS must be between {MIN_REPLAY_WINDOW:g} "
                              f"and {MAX_REPLAY_WINDOW:g}")
        if not self.channel:
            raise ConfigError("SOCKETIO_CHANNEL must not be empty")
        if not self.instance_id:
            raise ConfigError("INSTANCE_ID must not be empty")
        if not self.instance_id.isprintable():  # it is written into logs, metrics and presence entries
            raise ConfigError(f"INSTANCE_ID must not hold control characters, got {self.instance_id!r}")
        if self.max_payload_bytes < 1024:
            raise ConfigError("MAX_PAYLOAD_BYTES must be at least 1024")
        check_queue_message_bytes("MAX_QUEUE_MESSAGE_BYTES", self.max_queue_message_bytes)
        if not MIN_OUTGOING_BUFFER <= self.max_outgoing_buffer_bytes <= MAX_OUTGOING_BUFFER:
            raise ConfigError(f"MAX_OUTGOING_BUFFER_BYTES must be between {MIN_OUTGOING_BUFFER} and "
                              f"{MAX_OUTGOING_BUFFER}, got {self.max_outgoing_buffer_bytes}")
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

    def _check_dev_mode(self) -> None:
        """Dev mode lets anyone claim any user id, so it must never start by accident in
        production: not next to a production secret, not listening beyond loopback
        unless ``DEV_ALLOW_NON_LOOPBACK`` says so on purpose (a container publishing
        its port on 127.0.0.1 only)."""
        if not self.dev_mode:
            if self.dev_allowed_hosts or self.dev_allow_non_loopback:
                raise ConfigError("DEV_ALLOWED_HOSTS and DEV_ALLOW_NON_LOOPBACK apply only with AUTH_MODE=dev")
            return
        if self.jwt_secret is not None:
            raise ConfigError("AUTH_MODE=dev refuses to start with a JWT_SECRET set: a production secret means "
                              "this is not a developer's machine (unset one of them)")
        if not is_loopback_host(self.host) and not self.dev_allow_non_loopback:
            raise ConfigError(f"AUTH_MODE=dev listens on loopback only, got HOST={self.host!r} "
                              "(set DEV_ALLOW_NON_LOOPBACK=true if the port is reachable from this machine only)")

    @property
    def public_url(self) -> str:
        """Where this replica answers, as a person would type it (a wildcard host as loopback)."""
        host = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(self.host, self.host)
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

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

        def take(name: str, attr: str, cast: Callable[[str, str], object] = lambda _, v: v, *,
                 secret: bool = False) -> None:
            raw = environ.get(name)
            if raw is None or raw == "":
                return  # unset or empty: the default
            if raw.strip() == "":
                if secret:  # a key of spaces was meant as a key: unset it would silently disable its feature
                    raise ConfigError(f"{name} is only whitespace: leave it empty to unset it, or give a real value")
                return
            values[attr] = cast(name, raw.strip())

        take("JWT_SECRET", "jwt_secret", secret=True)
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
        take("SERVER_API_KEY", "server_api_key", secret=True)
        take("QUEUE_SIGNING_KEY", "queue_signing_key", secret=True)
        take("ALLOW_UNSIGNED_QUEUE", "allow_unsigned_queue", _to_bool)
        take("QUEUE_REPLAY_WINDOW_SECONDS", "queue_replay_window", _to_float)
        take("DUPLICATE_CONNECTION_POLICY", "duplicate_connection_policy", lambda _, v: v.lower())
        take("MAX_PAYLOAD_BYTES", "max_payload_bytes", _to_int)
        take("MAX_QUEUE_MESSAGE_BYTES", "max_queue_message_bytes", _to_int)
        take("DEV_ALLOWED_HOSTS", "dev_allowed_hosts", _to_host_names)
        take("DEV_ALLOW_NON_LOOPBACK", "dev_allow_non_loopback", _to_bool)
        take("MAX_OUTGOING_BUFFER_BYTES", "max_outgoing_buffer_bytes", _to_int)
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
    """Refuse at once a URL that redis-py would reject only on first use, or read
    differently from what it says (``/abc`` as a database is silently database 0).

    Messages never echo the URL: it may hold a password.
    """
    if not url.startswith(("redis://", "rediss://", "unix://")):
        scheme = url.split("://", 1)[0] if "://" in url else "no scheme"
        raise ConfigError(f"{name} must start with redis://, rediss:// or unix:// (got {scheme})")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises for a port that is not a number in 0-65535
        kwargs = parse_url(url)
    except ValueError as exc:
        reason = "invalid port" if "port" in str(exc).lower() else "malformed"
        raise ConfigError(f"{name} is not a valid Redis URL ({reason})") from None
    if parts.scheme == "unix":
        if not parts.path:
            raise ConfigError(f"{name}: a unix:// URL needs a socket path")
        return
    if port == 0:
        raise ConfigError(f"{name} is not a valid Redis URL (invalid port)")
    database = parts.path.lstrip("/")
    if database and "db" not in kwargs and not database.isdigit():
        raise ConfigError(f"{name}: the path must be a database number such as /0, got /{database}")


def check_queue_message_bytes(name: str, value: int) -> None:
    """The queue message limit, shared by the replicas, the emitter and its CLI."""
    if not MIN_QUEUE_MESSAGE_BYTES <= value <= MAX_QUEUE_MESSAGE_BYTES:
        raise ConfigError(f"{name} must be between {MIN_QUEUE_MESSAGE_BYTES} and {MAX_QUEUE_MESSAGE_BYTES}, "
                          f"got {value}")


def is_loopback_host(name: str) -> bool:
    """``localhost`` (and ``*.localhost``, which browsers keep on loopback) or a loopback address."""
    name = name.lower().rstrip(".").removeprefix("[").removesuffix("]")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


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


def _to_bool(name: str, raw: str) -> bool:
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _to_origins(name: str, raw: str) -> tuple[str, ...]:
    """Origins as browsers send them (``scheme://host[:port]``, lower case, no slash),
    which python-socketio compares character for character."""
    origins = []
    for entry in (o.strip() for o in raw.split(",") if o.strip()):
        if entry == "*":
            origins.append(entry)
            continue
        try:
            parts = urlsplit(entry)
        except ValueError:  # an unclosed or invalid [IPv6] host
            raise ConfigError(f"{name} entries must be origins (scheme://host[:port]), got {entry!r}") from None
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"{name} entries must be '*' or start with http:// or https://, got {entry!r}")
        if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
            raise ConfigError(f"{name} entries are origins (scheme://host[:port]), not URLs, got {entry!r}")
        origins.append(f"{parts.scheme}://{parts.netloc.lower()}")
    return tuple(origins)


def _to_host_names(name: str, raw: str) -> tuple[str, ...]:
    hosts = tuple(h.strip().lower() for h in raw.split(",") if h.strip())
    for host in hosts:
        if not _HOST_NAME.fullmatch(host):
            raise ConfigError(f"{name} entries are host names without scheme or port, got {host!r}")
    return hosts
