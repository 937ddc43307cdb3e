"""Reading settings from the environment as every process of the service reads them.

A replica (``server.config``) and the emit CLI read the same variables (``REDIS_URL``,
``SOCKETIO_CHANNEL``, ``QUEUE_SIGNING_KEY`` ...) from the same ``.env`` file, with the same
rules: a real environment variable wins over the file, surrounding spaces are dropped, a
blank value is unset, and a secret of only spaces is refused rather than taken as unset.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values

from .errors import ConfigError

__all__ = ["load_environ", "parse_bool", "raw_setting"]

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def load_environ(env_file: str | Path = ".env", environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The process environment laid over the values of ``env_file``, if it exists.

    Real environment variables win, so a deployment can override a checked-in file.
    """
    try:
        values = dotenv_values(env_file, interpolate=False)  # a secret's "$" is the secret's, not a variable
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{env_file} is not UTF-8 text (byte {exc.start}); fix or remove it") from None
    except OSError as exc:
        raise ConfigError(f"{env_file} cannot be read: {exc.strerror or exc}") from None
    merged = {k: v for k, v in values.items() if v is not None}
    merged.update(os.environ if environ is None else environ)
    return merged


def raw_setting(environ: Mapping[str, str], name: str, *, secret: bool = False) -> str | None:
    """Variable ``name`` without surrounding spaces, ``None`` when unset or blank. A ``secret``
    of only spaces raises: taken as unset, it would turn its feature off."""
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        if raw and secret:
            raise ConfigError(f"{name} is only whitespace: leave it empty to unset it, or give a real value")
        return None
    return raw.strip()


def parse_bool(name: str, raw: str) -> bool:
    """``true``/``false`` (also 1/0, yes/no, on/off), in any case."""
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")
