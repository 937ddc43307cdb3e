"""server/eio/environ.py: the environ python-engineio's aiohttp driver would build, read from the request."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request
from engineio.async_drivers.aiohttp import translate_request
from multidict import CIMultiDict

from server.eio.environ import RequestEnviron, engineio_query

HEADERS = [
    pytest.param([], id="none"),
    pytest.param([("Host", "example.com"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
                  ("Authorization", "Bearer x.y.z"), ("Origin", "https://app.example")], id="handshake"),
    pytest.param([("Accept", "a"), ("accept", "b"), ("X-Forwarded-Proto", "https, http")], id="repeated"),
    pytest.param([("Content-Type", "text/plain"), ("Content-Length", "5"), ("Content-Length", "7")],
                 id="content-headers"),
    pytest.param([("X_Odd", "underscore"), ("X-Odd", "dash")], id="names-that-collide"),
]


@pytest.mark.parametrize("headers", HEADERS)
def test_the_view_holds_what_the_driver_builds_in_its_order(headers: list[tuple[str, str]]) -> None:
    request = make_mocked_request("GET", "/socket.io/?EIO=4&transport=websocket&token=t", headers=CIMultiDict(headers))

    built = translate_request(request)
    view = RequestEnviron(request)

    assert dict(view) == built
    assert list(view) == list(built)
    assert len(view) == len(built)


def test_keys_it_lacks_behave_as_the_dicts_do() -> None:
    view = RequestEnviron(make_mocked_request("GET", "/socket.io/", headers=CIMultiDict([("Upgrade", "websocket")])))

    assert view.get("HTTP_ORIGIN") is None and "HTTP_ORIGIN" not in view
    assert view.get("HTTP_UPGRADE") == "websocket" and "HTTP_UPGRADE" in view
    with pytest.raises(KeyError):
        view["HTTP_ORIGIN"]


def test_the_query_is_read_as_python_engineio_reads_it_blank_values_dropped() -> None:
    request = make_mocked_request("GET", "/socket.io/?EIO=4&transport=polling&transport=websocket&sid=")

    assert engineio_query(request) == {"EIO": ["4"], "transport": ["polling", "websocket"]}
