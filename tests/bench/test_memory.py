"""bench/memory.py: charging each allocation to a line of ours or of the libraries."""

from __future__ import annotations

import tracemalloc

from bench.memory import attribute
from cluster.processes import REPO_ROOT

PACKAGES = "/venv/lib/python3.11/site-packages"


def frame(filename: str, lineno: int) -> tracemalloc.Frame:
    return tracemalloc.Frame((filename, lineno))


def test_an_allocation_is_charged_to_the_innermost_frame_of_ours_or_of_engineio_or_socketio() -> None:
    frames = [frame("/usr/lib/python3.11/asyncio/queues.py", 37), frame(f"{REPO_ROOT}/server/eio/outgoing.py", 67),
              frame(f"{PACKAGES}/engineio/base_socket.py", 10)]

    assert attribute(frames) == "server/eio/outgoing.py:67"


def test_without_such_a_frame_it_goes_to_the_innermost_package_not_to_the_entry_point() -> None:
    frames = [frame("/usr/lib/python3.11/asyncio/selector_events.py", 1009),
              frame(f"{PACKAGES}/aiohttp/web_protocol.py", 446), frame(f"{REPO_ROOT}/server/__main__.py", 42)]

    assert attribute(frames) == "aiohttp/web_protocol.py:446"
