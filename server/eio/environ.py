"""A request as python-engineio sees it: its query parameters, and its WSGI-style environ,
read from the aiohttp request instead of copied.

python-engineio reads the query with ``urllib.parse.parse_qs``, which drops blank values:
to it ``?sid=`` names no session (a handshake), where aiohttp's ``request.query`` holds
``sid=''``. Whatever decides how python-engineio will treat a request reads it as
python-engineio does (``engineio_query``); it also leaves aiohttp's parsed query uncached
on a request that may last as long as its WebSocket.

python-engineio's aiohttp driver (``translate_request``) builds a new dict for every
request: twenty fixed keys and every header again under an ``HTTP_*`` name, 1.8 KB for
a short handshake and more for a browser's. python-socketio keeps the handshake's for as
long as the connection lives, and so does the request's own coroutine. The aiohttp
request is kept anyway (its handler lasts as long as the WebSocket or long-poll, and the
environ refers to it), so ``RequestEnviron`` answers each key from it when asked, by the
driver's rules, for the price of one small object.
"""

from __future__ import annotations

import sys
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from aiohttp import web

__all__ = ["RequestEnviron", "engineio_query"]

# The driver's fixed keys, in its order; wsgi.url_scheme, PATH_INFO and SCRIPT_NAME follow the headers.
_BEFORE_HEADERS: dict[str, Callable[[web.Request], Any]] = {
    "wsgi.input": lambda r: r.content,
    "wsgi.errors": lambda r: sys.stderr,
    "wsgi.version": lambda r: (1, 0),
    "wsgi.async": lambda r: True,
    "wsgi.multithread": lambda r: False,
    "wsgi.multiprocess": lambda r: False,
    "wsgi.run_once": lambda r: False,
    "SERVER_SOFTWARE": lambda r: "aiohttp",
    "REQUEST_METHOD": lambda r: r.method,
    "QUERY_STRING": lambda r: r.query_string or "",
    "RAW_URI": lambda r: r.path_qs,
    "SERVER_PROTOCOL": lambda r: f"HTTP/{r.version[0]}.{r.version[1]}",
    "REMOTE_ADDR": lambda r: "127.0.0.1",
    "REMOTE_PORT": lambda r: "0",
    "SERVER_NAME": lambda r: "aiohttp",
    "SERVER_PORT": lambda r: "0",
    "aiohttp.request": lambda r: r,
}
_AFTER_HEADERS: dict[str, Callable[[web.Request], Any]] = {
    "wsgi.url_scheme": lambda r: _header(r, "HTTP_X_FORWARDED_PROTO") or "http",
    "PATH_INFO": lambda r: r.path,
    "SCRIPT_NAME": lambda r: "",
}
_UNPREFIXED = {"CONTENT-TYPE": "CONTENT_TYPE", "CONTENT-LENGTH": "CONTENT_LENGTH"}


def engineio_query(request: web.Request) -> dict[str, list[str]]:
    """The query parameters, parsed as python-engineio parses them (blank values dropped)."""
    return urllib.parse.parse_qs(request.query_string)


def _key(header: str) -> str:
    """The environ key of a header, as the driver names it."""
    name = header.upper()
    return _UNPREFIXED.get(name) or "HTTP_" + name.replace("-", "_")


def _header(request: web.Request, key: str) -> str | None:
    """The driver's value for ``key``: repeated headers joined by commas, but the last
    ``Content-Type`` or ``Content-Length`` alone."""
    values = [value for name, value in request.headers.items() if _key(name) == key]
    if not values:
        return None
    return values[-1] if not key.startswith("HTTP_") else ",".join(values)


class RequestEnviron(Mapping[str, Any]):
    """What python-engineio's ``translate_request`` returns for ``request``, as a read-only view.

    Neither library writes to the environ; ``get``, ``in`` and iteration behave as on the dict.
    """

    __slots__ = ("_request",)

    def __init__(self, request: web.Request) -> None:
        self._request = request

    def __getitem__(self, key: str) -> Any:
        fixed = _BEFORE_HEADERS.get(key) or _AFTER_HEADERS.get(key)
        if fixed is not None:
            return fixed(self._request)
        value = _header(self._request, key) if isinstance(key, str) else None
        if value is None:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[str]:
        yield from _BEFORE_HEADERS
        yield from dict.fromkeys(_key(name) for name in self._request.headers)
        yield from _AFTER_HEADERS

    def __len__(self) -> int:
        return sum(1 for _ in self)
