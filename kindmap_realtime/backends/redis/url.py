"""Redis URLs checked when the settings are read, not on first use."""

from __future__ import annotations

from urllib.parse import urlsplit

from redis.asyncio.connection import parse_url

from ...errors import ConfigError

__all__ = ["SCHEMES", "check_url"]

SCHEMES = ("redis", "rediss", "unix")


def check_url(name: str, url: str) -> None:
    """Refuse at once a URL that redis-py would reject only on first use, or read
    differently from what it says (``/abc`` as a database is silently database 0).

    Messages never echo the URL: it may hold a password.
    """
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
