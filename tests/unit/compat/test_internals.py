"""server/compat: every library internal the server relies on exists in the pinned versions, and one
that is gone is named in one line (a replica checks at start-up, ``create_app``)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kindmap_realtime import Emitter
from kindmap_realtime.compat import Internal, LibraryContractError, assigned, check
from kindmap_realtime.compat import redis as redis_internals
from server.app import create_app
from server.compat import aiohttp as aiohttp_internals
from server.compat import engineio as engineio_internals
from server.compat import socketio as socketio_internals
from server.config import Settings

ALL = [*aiohttp_internals.INTERNALS, *engineio_internals.INTERNALS, *socketio_internals.INTERNALS,
       *redis_internals.INTERNALS]


@pytest.mark.parametrize("internal", ALL, ids=lambda internal: f"{internal.owner}.{internal.name}")
def test_each_internal_exists_in_the_pinned_library(internal: Internal) -> None:
    assert internal.present(), f"{internal.owner}.{internal.name} is gone: {internal.why}"


def test_a_gone_internal_is_named_in_one_line() -> None:
    gone = Internal("aiohttp.web_ws:WebSocketResponse", "_no_such_writer", "it is a test", "aiohttp 3.14.5", "-")

    with pytest.raises(LibraryContractError) as raised:
        check([*aiohttp_internals.INTERNALS, gone], "aiohttp", "3.14.5")

    assert str(raised.value).splitlines() == [
        "aiohttp 3.14.5: aiohttp.web_ws:WebSocketResponse._no_such_writer is gone; it is needed because it is a test "
        "(see the compat README)"]


@pytest.mark.parametrize("owner", ["no_such_module", "aiohttp.web_ws:NoSuchClass"])
def test_an_internal_of_a_module_or_class_that_is_gone_is_gone_too(owner: str) -> None:
    assert not Internal(owner, "anything", "-", "-", "-").present()


@pytest.mark.parametrize(("owner", "name", "use", "found", "not_found"), [
    ("aiohttp.web_ws:WebSocketResponse", "_writer", "", ["ws._writer", "def _writer(self)"],
     ["writer_of(ws)", "websocket_writer(ws)", "ws._writers"]),
    ("engineio.async_socket:AsyncSocket", "connected", "", ["if socket.connected:"],
     ["a socket connected to '/'", "manager.is_connected(sid)"]),
    ("aiohttp._websocket.writer", "MAX_SIZE", "", ["import MAX_SIZE", "size > MAX_SIZE"], ["MAX_SIZES"]),
    ("engineio.async_socket:AsyncSocket", "upgraded", assigned("upgraded"),
     ["socket.upgraded = True", "s.connected = s.upgraded = True"], ["if socket.upgraded:", "s.upgraded == x"]),
])
def test_a_use_is_found_by_a_private_name_as_a_word_and_by_a_public_looking_one_as_an_attribute(
        owner: str, name: str, use: str, found: list[str], not_found: list[str]) -> None:
    pattern = Internal(owner, name, "-", "-", "-", use=use).pattern()

    assert pattern is not None
    assert [code for code in found if not pattern.search(code)] == []
    assert [code for code in not_found if pattern.search(code)] == []


def test_an_internal_any_module_may_use_has_no_pattern() -> None:
    assert Internal("engineio.async_server:AsyncServer", "create_queue", "-", "-", "-", use=None).pattern() is None


def test_a_replica_will_not_build_on_a_library_without_an_internal(
        monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings]) -> None:
    gone = Internal("redis.asyncio.cluster:NodesManager", "no_such_cache", "it is a test", "redis-py 8.1.0", "-")
    monkeypatch.setattr(redis_internals, "INTERNALS", (*redis_internals.INTERNALS, gone))

    with pytest.raises(LibraryContractError, match=r"NodesManager\.no_such_cache is gone"):
        create_app(make_settings())


def test_an_emitter_will_not_build_on_a_redis_py_without_an_internal(monkeypatch: pytest.MonkeyPatch) -> None:
    gone = Internal("redis.asyncio.cluster:NodesManager", "no_such_cache", "it is a test", "redis-py 8.1.0", "-")
    monkeypatch.setattr(redis_internals, "INTERNALS", (*redis_internals.INTERNALS, gone))

    with pytest.raises(LibraryContractError, match=r"NodesManager\.no_such_cache is gone"):
        Emitter("redis://127.0.0.1:6379/0")
