"""kindmap_realtime/event_loop.py: replicas and the emit CLI run on uvloop when it is installed,
on asyncio's own loop when it is not."""

from __future__ import annotations

import asyncio
import sys

import pytest
import uvloop

from kindmap_realtime.event_loop import loop_name, new_event_loop


def test_the_loop_is_uvloop_when_uvloop_is_installed() -> None:
    loop = new_event_loop()
    try:
        assert isinstance(loop, uvloop.Loop)
        assert loop_name(loop) == "uvloop"
    finally:
        loop.close()


def test_without_uvloop_the_loop_is_asyncios_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # ``import uvloop`` now raises ImportError
    loop = new_event_loop()
    try:
        assert isinstance(loop, asyncio.SelectorEventLoop)
        assert loop_name(loop) == "asyncio"
    finally:
        loop.close()
