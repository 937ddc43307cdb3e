"""``free_port``: ports for child processes that are chosen before any of them listens."""

from __future__ import annotations

import socket
from typing import Any, ClassVar

import pytest

from cluster import processes


class RepeatingSocket(socket.socket):
    """A socket whose kernel offers the same port again and again before moving on, as Linux may."""

    offers: ClassVar[list[int]] = [41001, 41001, 41001, 41002]

    def getsockname(self) -> Any:
        return ("127.0.0.1", RepeatingSocket.offers.pop(0))


def test_free_port_never_hands_out_a_port_twice_although_the_kernel_offers_it_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(processes, "_handed_out", set())
    monkeypatch.setattr(socket, "socket", RepeatingSocket)

    assert [processes.free_port(), processes.free_port()] == [41001, 41002]


def test_free_port_gives_distinct_ports_to_many_callers_before_any_listens() -> None:
    ports = [processes.free_port() for _ in range(200)]

    assert len(set(ports)) == len(ports)
