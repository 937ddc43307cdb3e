"""Typed settings, read once from the environment (and an optional ``.env``).

``Settings.from_env`` is the only place of a replica that reads environment variables,
by the rules the emit CLI reads its few with (``kindmap_realtime.environment``); everything else
receives a ``Settings`` object. A bad value raises
``ConfigError`` with a one-line message that names the variable.

Each setting is declared once, as a field of ``Settings``: its type, its default and
a ``Spec`` (variable, help text, allowed values). ``from_env`` parses and
``__post_init__`` checks by these declarations, and ``tools.settings_doc`` writes
the README's settings table and ``.env.example`` from them.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import Field, dataclass, field, fields
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from kindmap_realtime.backends import check_backend_url
from kindmap_realtime.environment import load_environ, parse_bool, raw_setting
from kindmap_realtime.errors import ConfigError
from kindmap_realtime.limits import (
    DEFAULT_CHANNEL,
    DEFAULT_MAX_QUEUE_MESSAGE_BYTES,
    QUEUE_MESSAGE_BYTES,
    QUEUE_REPLAY_WINDOW,
    Range,
    check_queue_message_bytes,
    check_queue_replay_window,
    check_signing_key,
)
from kindmap_realtime.messages.replay import DEFAULT_WINDOW

__all__ = [
    "Range",
    "Settings",
    "Spec",
    "check_queue_message_bytes",
    "check_queue_replay_window",
    "is_loopback_host",
    "load_environ",
    "settings_specs",
]

# RFC 7518 section 3.2: an HMAC key at least as long as the hash output.
JWT_ALGORITHMS = {"HS256": 32, "HS384": 48, "HS512": 64}
_HOST_NAME = re.compile(r"[a-z0-9.-]+|\[[0-9a-f:.]+\]")
# Upper bounds of the flood limits: past them a limit is no limit.
MAX_RATE = 10_000
MAX_BURST = 100_000
_SPEC = "spec"  # the key of a field's Spec in its metadata


def _default_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


# routing.lua's MOST_MESSAGES caps every history's limit at this, whatever its header says.
RECOVERY_MAX_MESSAGES = Range(1, 10_000)


@dataclass(frozen=True)
class Spec:
    """How a setting is read and documented, beside its field's type and default."""

    env: str  # the variable
    help: str  # Markdown: the README's table shows it as is, .env.example as plain text
    parse: Callable[[str, str], Any] | None = None  # (variable, stripped text); None: by the field's type
    choices: tuple[str, ...] = ()
    bounds: Range | None = None
    secret: bool = False  # a value of only spaces is refused: taken as unset it would turn its feature off
    default_doc: str | None = None  # the default in words, where its value says nothing to a reader
    section: str | None = None  # the heading of .env.example this setting opens


def _setting(env: str, default: Any, help: str, *, factory: Callable[[], Any] | None = None,
             parse: Callable[[str, str], Any] | None = None, choices: tuple[str, ...] = (),
             bounds: Range | None = None, secret: bool = False, default_doc: str | None = None,
             section: str | None = None) -> Any:
    """A ``Settings`` field with its ``Spec``; ``factory`` makes its default at construction."""
    spec = Spec(env, help, parse, choices, bounds, secret, default_doc, section)
    if factory is not None:
        return field(default_factory=factory, metadata={_SPEC: spec})
    return field(default=default, metadata={_SPEC: spec})


def _lower(_: str, raw: str) -> str:
    return raw.lower()


def _upper(_: str, raw: str) -> str:
    return raw.upper()


def _to_text(_: str, raw: str) -> str:
    return raw


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


# The parser of a field without its own, by the field's type.
_PARSERS: dict[object, Callable[[str, str], Any]] = {
    int: _to_int, float: _to_float, bool: parse_bool, str: _to_text, str | None: _to_text,
}


# How to make a key, as the help of JWT_SECRET and QUEUE_SIGNING_KEY says.
_GENERATE = 'Generate one: `python3 -c "import secrets; print(secrets.token_urlsafe(48))"`'


@dataclass(frozen=True)
class Settings:
    """Everything a replica needs to know, validated once at start-up."""

    host: str = _setting(
        "HOST", "127.0.0.1", "Address to listen on (`0.0.0.0` in containers).", section="Network")
    port: int = _setting("PORT", 8000, "Port to listen on.", bounds=Range(1, 65535))
    redis_url: str | None = _setting(
        "REDIS_URL", None,
        "`redis://`, `rediss://` or `unix://` URL; the port must be a number and the path a database number "
        "(`/0`), not anything redis-py would silently read as database 0. Unset: single replica on the "
        "in-memory backend, with connection state recovery as on Redis.")
    channel: str = _setting(
        "SOCKETIO_CHANNEL", DEFAULT_CHANNEL,
        "Name shared by replicas and emitters on one Redis: the prefix of every key they use (inboxes, presence, "
        "the registry of replicas).")
    instance_id: str = _setting(
        "INSTANCE_ID", None, "Name of this replica, in `connected`, logs and presence; printable characters only.",
        factory=_default_instance_id, default_doc="host name and pid")

    auth_mode: str = _setting(
        "AUTH_MODE", "jwt",
        "`jwt` in production; `dev` for local use only: clients may claim any user id, `GET /api/v1/dev/token` "
        "hands out tokens that may also use `POST /api/v1/emit`. Dev mode refuses a `JWT_SECRET` and a `HOST` "
        "beyond loopback, and answers only requests for loopback host names: see [Demo page](#demo-page).",
        parse=_lower, choices=("jwt", "dev"), section="Authentication")
    jwt_secret: str | None = _setting(
        "JWT_SECRET", None,
        f"HMAC secret of client tokens; required in `jwt` mode; at least 32 / 48 / 64 bytes for "
        f"HS256 / HS384 / HS512. {_GENERATE}", secret=True)
    jwt_algorithm: str = _setting(
        "JWT_ALGORITHM", "HS256", "Algorithm of client tokens.", choices=tuple(JWT_ALGORITHMS))
    jwt_audience: str | None = _setting("JWT_AUDIENCE", None, "When set, tokens must carry this `aud`.")
    jwt_issuer: str | None = _setting("JWT_ISSUER", None, "When set, tokens must carry this `iss`.")
    jwt_leeway: float = _setting(
        "JWT_LEEWAY_SECONDS", 0.0, "Clock skew allowed on `exp` / `nbf` / `iat`, in seconds.", bounds=Range(0, 300))
    cors_allowed_origins: tuple[str, ...] = _setting(
        "CORS_ALLOWED_ORIGINS", (),
        "Comma-separated origins allowed to connect from a browser (`scheme://host[:port]`, written as browsers "
        "send them: a trailing `/` is dropped, upper case lowered, a path refused), or `*`.",
        parse=_to_origins, default_doc="unset (same origin only)")
    dev_allowed_hosts: tuple[str, ...] = _setting(
        "DEV_ALLOWED_HOSTS", (),
        "Dev mode only: comma-separated host names (no scheme, no port) that requests may be for, besides "
        "loopback names, e.g. a laptop's LAN name.", parse=_to_host_names)
    dev_allow_non_loopback: bool = _setting(
        "DEV_ALLOW_NON_LOOPBACK", False,
        "Dev mode only: `true` lets it listen on a `HOST` beyond loopback (a container whose port is published "
        "on the host's 127.0.0.1). Anyone who reaches the port can connect as any user.")

    server_api_key: str | None = _setting(
        "SERVER_API_KEY", None,
        "Enables `POST /api/v1/emit` (`Authorization: Bearer <key>`); at least 16 characters.",
        secret=True, default_doc="unset (API disabled)", section="Backends")
    queue_signing_key: str | None = _setting(
        "QUEUE_SIGNING_KEY", None,
        "At least 32 bytes; **required** when `REDIS_URL` is set in `jwt` mode. Replicas and emitters sign every "
        "queue envelope (HMAC-SHA256) and drop unsigned, wrongly signed, stale or replayed ones, and presence "
        "entries carry an HMAC too; see [Redis neighbours](#redis-neighbours-what-signing-protects). Every "
        "replica and emitter on the channel needs the same key; an emitter with another key refuses to start. "
        f"{_GENERATE}", secret=True, default_doc="unset (unsigned)")
    allow_unsigned_queue: bool = _setting(
        "ALLOW_UNSIGNED_QUEUE", False,
        "`true` lets a `jwt`-mode replica (and the emit CLI) use Redis without `QUEUE_SIGNING_KEY`. Development "
        "only: anyone who can publish to Redis can then message or disconnect any user.")
    # Signed envelopes older or newer than this are dropped; bounds also the memory of seen ids.
    queue_replay_window: float = _setting(
        "QUEUE_REPLAY_WINDOW_SECONDS", DEFAULT_WINDOW,
        "A signed envelope is accepted this many seconds either side of the receiver's clock, and only once; "
        "also the clock skew allowed on signed presence entries. Keep hosts' clocks (NTP) well within it.",
        bounds=QUEUE_REPLAY_WINDOW)

    recovery_window: float = _setting(
        "RECOVERY_WINDOW_SECONDS", 120.0,
        "How long a socket whose connection was lost (not closed by its client) stays recoverable: a "
        "socket.io-client (4.6 or newer) reconnecting within it, to any replica, gets its socket id back and every "
        "message sent to its user meanwhile; sends to a user offline within it are stored (`\"stored\"`). "
        "`0` turns connection state recovery off (no session ids, offsets or histories); see "
        "[Connection state recovery](#connection-state-recovery).", bounds=Range(0.0, 3600.0), section="Recovery")
    recovery_max_messages: int = _setting(
        "RECOVERY_MAX_MESSAGES", 200,
        "Most messages a client may have missed and recover; a client that missed more gets a new session "
        "(`recovered` false). A user's history keeps this many (the oldest are dropped first), up to twice as "
        "many between two heartbeats.", bounds=RECOVERY_MAX_MESSAGES)
    recovery_max_sessions: int = _setting(
        "RECOVERY_MAX_SESSIONS", 20,
        "Most recoverable sessions one user has; a new one drops the expired ones, then the oldest (the one whose "
        "deadline is nearest), those of sockets still connected last.",
        bounds=Range(1, 1000))
    recovery_max_replay_bytes: int = _setting(
        "RECOVERY_MAX_REPLAY_BYTES", 1024 * 1024,
        "Most bytes of missed messages one recovery replays; a client that missed more gets a new session "
        "(`recovered` false).", bounds=Range(1024, 256 * 1024 * 1024))

    duplicate_connection_policy: str = _setting(
        "DUPLICATE_CONNECTION_POLICY", "allow",
        "`replace`: a new connection of a user disconnects the user's older sockets on every replica.",
        parse=_lower, choices=("allow", "replace"), section="Behaviour")
    max_payload_bytes: int = _setting(
        "MAX_PAYLOAD_BYTES", 64 * 1024,
        "Largest Socket.IO message from a client (a larger one gets `PAYLOAD_TOO_LARGE`; past 4× the connection "
        "is closed) and largest HTTP request body, in bytes.", bounds=Range(1024))
    max_queue_message_bytes: int = _setting(
        "MAX_QUEUE_MESSAGE_BYTES", DEFAULT_MAX_QUEUE_MESSAGE_BYTES,
        "Largest queue message (an emit as published to Redis), in bytes; a larger one is refused with "
        "`PAYLOAD_TOO_LARGE` before Redis sees it. Redis cuts a subscriber whose output buffer passes "
        "`client-output-buffer-limit pubsub` (`docker-compose.prod.yml`: 32 MB at once, or 8 MB for 60 s), and "
        "every message in flight to a replica shares that buffer: one 40 MB message made Redis drop every "
        "replica's subscription. Keep it well under the soft limit divided by the messages you expect in "
        "flight; give emitters and the CLI the same value.", bounds=QUEUE_MESSAGE_BYTES)
    # A socket's outgoing buffer: room for a burst of navigation messages, not for a backlog.
    max_outgoing_buffer_bytes: int = _setting(
        "MAX_OUTGOING_BUFFER_BYTES", 1024 * 1024,
        "Bytes a socket may have waiting to be sent: packets queued for it plus what its TCP connection has not "
        "yet sent. Past it the client is a slow consumer: disconnected with reason `SLOW_CONSUMER`, its buffer "
        "freed and its TCP connection aborted. Keep it above your largest message.",
        bounds=Range(64 * 1024, 256 * 1024 * 1024))
    websocket_compression: bool = _setting(
        "WEBSOCKET_COMPRESSION", False,
        "`true` accepts the `permessage-deflate` extension that browsers offer on every WebSocket. Off by "
        "default, as in Node's Socket.IO: for navigation-sized messages it costs more memory per connection "
        "and CPU per message than the bytes it saves are worth; see [Compression](#websocket-compression).")
    shutdown_timeout: float = _setting(
        "SHUTDOWN_TIMEOUT", 5.0, "Seconds the server waits for requests to finish after SIGTERM.",
        bounds=Range(0, low_open=True))
    log_level: str = _setting(
        "LOG_LEVEL", "INFO", "Logs are JSON lines on stderr.", parse=_upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"))

    rate_limit_events_per_second: float = _setting(
        "RATE_LIMIT_EVENTS_PER_SECOND", 20.0,
        "Packets per second one client session may send (events, handshakes, binary frames). Over it packets "
        "are dropped and answered `RATE_LIMITED` at most once a second.",
        bounds=Range(0.1, MAX_RATE), section="Flood limits")
    rate_limit_burst: int = _setting(
        "RATE_LIMIT_BURST", 40, "Packets a session may send at once above that rate.", bounds=Range(1, MAX_BURST))
    rate_limit_strikes: int = _setting(
        "RATE_LIMIT_STRIKES", 3, "A session over its limit in this many consecutive seconds is disconnected.",
        bounds=Range(1, 60))
    handshake_rate_per_second: float = _setting(
        "HANDSHAKE_RATE_PER_SECOND", 10.0,
        "New sessions per second one client address may open; over it HTTP 429 `RATE_LIMITED`.",
        bounds=Range(0.1, MAX_RATE))
    handshake_burst: int = _setting(
        "HANDSHAKE_BURST", 100, "New sessions one address may open at once above that rate.",
        bounds=Range(1, MAX_BURST))
    handshake_client_ip_header: str | None = _setting(
        "HANDSHAKE_CLIENT_IP_HEADER", None,
        "Header naming the client address, e.g. `X-Real-IP` behind the bundled Nginx (set in "
        "`docker-compose.prod.yml`). Set it only when clients cannot reach the replicas directly, or they can "
        "choose their own address.", default_doc="unset (the peer address)")
    connect_timeout: float = _setting(
        "CONNECT_TIMEOUT_SECONDS", 45.0,
        "A session that has not joined namespace `/` this long after it opened is closed (as Node's "
        "`connectTimeout`).", bounds=Range(1, 600))
    max_connections: int = _setting(
        "MAX_CONNECTIONS", 10_000,
        "Sessions (authenticated or not) one replica holds; past it a handshake gets HTTP 503 `SERVER_FULL`.",
        bounds=Range(1, 1_000_000))
    max_sockets_per_user: int = _setting(
        "MAX_SOCKETS_PER_USER", 10,
        "Live sockets one user may hold on all replicas together; past it a connection gets `connect_error` "
        "`TOO_MANY_CONNECTIONS` (with `DUPLICATE_CONNECTION_POLICY=replace` a user holds one anyway).",
        bounds=Range(1, 1000))

    def __post_init__(self) -> None:
        for spec, value in ((spec, getattr(self, f.name)) for f, spec in settings_specs()):
            if spec.choices and value not in spec.choices:
                raise ConfigError(f"{spec.env} must be one of {', '.join(spec.choices)}, got {value!r}")
            if spec.bounds is not None:
                spec.bounds.check(spec.env, value)
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
        if self.queue_signing_key is not None:
            check_signing_key("QUEUE_SIGNING_KEY", self.queue_signing_key)
        if self.redis_url is not None:
            check_backend_url("REDIS_URL", self.redis_url)
            if self.auth_mode == "jwt" and self.queue_signing_key is None and not self.allow_unsigned_queue:
                raise ConfigError("QUEUE_SIGNING_KEY is required with REDIS_URL in jwt mode: anyone who can "
                                  "publish to Redis could otherwise message or disconnect any user "
                                  "(ALLOW_UNSIGNED_QUEUE=true opts out, for development only)")
        if not self.channel:
            raise ConfigError("SOCKETIO_CHANNEL must not be empty")
        if not self.instance_id:
            raise ConfigError("INSTANCE_ID must not be empty")
        if not self.instance_id.isprintable():  # it is written into logs, metrics and presence entries
            raise ConfigError(f"INSTANCE_ID must not hold control characters, got {self.instance_id!r}")

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
        """Build settings from variables such as ``os.environ``; unset or blank means default."""
        values = {name: _read(environ, spec, parse) for name, spec, parse in _parsers()}
        return cls(**{name: value for name, value in values.items() if value is not None})




def _read(environ: Mapping[str, str], spec: Spec, parse: Callable[[str, str], Any]) -> Any:
    raw = raw_setting(environ, spec.env, secret=spec.secret)
    return None if raw is None else parse(spec.env, raw)


def settings_specs() -> Iterator[tuple[Field[Any], Spec]]:
    """Every field of ``Settings`` with its ``Spec``, in declaration order."""
    for f in fields(Settings):
        yield f, f.metadata[_SPEC]


@cache
def _parsers() -> tuple[tuple[str, Spec, Callable[[str, str], Any]], ...]:
    """Each field's name, spec and parser, resolved once (the annotations are strings until then)."""
    types = typing.get_type_hints(Settings)
    return tuple((f.name, spec, spec.parse or _PARSERS[types[f.name]]) for f, spec in settings_specs())


def is_loopback_host(name: str) -> bool:
    """``localhost`` (and ``*.localhost``, which browsers keep on loopback) or a loopback address."""
    name = name.lower().rstrip(".").removeprefix("[").removesuffix("]")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
