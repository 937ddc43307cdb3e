"""server/manager/local_delivery.py: what an emit writes to each socket of this replica, offsets included.

A ``LocalDelivery`` (the fan-out of every manager of ours) on a real ``SocketServer``,
with no HTTP: every Engine.IO packet written is recorded at its Engine.IO server's ``send_packet``.
Sockets have a recoverable session through a ``Recovery`` on a store that only
opens new sessions.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from engineio import packet as eio_packet

from kindmap_realtime.backends.base import Claim, Session, SessionStore
from kindmap_realtime.messages.envelope import decode
from kindmap_realtime.messages.rooms import user_room
from server.manager.local_delivery import LocalDelivery
from server.manager.recovery import Recovery, Tracked
from server.metrics import Metrics
from server.sio.server import SocketServer

START = "5-0"  # where every session of these tests starts
ROOM = user_room("ana")


class NewSessions(SessionStore):
    """Opens sessions that start at ``START`` with nothing stored after it."""

    @property
    def lifetime(self) -> float:
        return 130.0

    async def open(self, user_id: str, sid: str) -> Session:
        return Session(f"pid-{sid}", "epoch", START)

    async def claim(self, user_id: str, pid: str, offset: str | None) -> Claim | str:
        return "unknown"

    async def end(self, user_id: str, session: Session) -> None:
        raise AssertionError("no session is ended here")

    async def history(self, user_id: str, start: str) -> AsyncIterator[list[tuple[str, bytes]]]:
        return
        yield  # an async generator that yields nothing


class Replica:
    """A manager, its server and recovery, and what each Engine.IO session was written."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.manager = LocalDelivery()
        self.server = SocketServer(async_mode="aiohttp", client_manager=self.manager, max_outgoing_bytes=1 << 20)
        self.recovery = Recovery(NewSessions(), metrics=Metrics(), open_envelope=decode,
                                 send=self.manager.send_event, kick=self._never, max_age=130.0,
                                 max_replay_bytes=1 << 20)
        self.manager.recovery = self.recovery
        self.written: dict[str, list[Any]] = {}
        monkeypatch.setattr(self.server.eio, "send_packet", self._record)

    async def socket(self, eio_sid: str, *, session: bool = True, replayed: bool = True) -> str:
        """A socket in ``ROOM``: with a session (its replay done, unless not ``replayed``) or without."""
        sid = await self.manager.pre_connect(eio_sid, "/")
        assert sid is not None
        await self.manager.connect(sid, "/")
        if session:
            await self.recovery.start(sid, eio_sid, "ana", {})
        await self.manager.enter_room(sid, "/", ROOM)
        if session and replayed:
            await self.recovery.replay(sid)
        return str(sid)

    def tracked(self, sid: str) -> Tracked:
        return self.recovery.sockets[sid]

    async def _record(self, eio_sid: str, pkt: eio_packet.Packet) -> None:
        assert pkt.packet_type == eio_packet.MESSAGE and pkt.data.startswith("2[")
        self.written.setdefault(eio_sid, []).append(json.loads(pkt.data[1:]))

    async def _never(self, user_id: str, sid: str) -> None:
        raise AssertionError("nothing is kicked here")


@pytest.fixture
def replica(monkeypatch: pytest.MonkeyPatch) -> Replica:
    return Replica(monkeypatch)


async def test_a_stored_event_ends_with_its_offset_for_a_socket_with_a_session_and_without_for_another(
        replica: Replica) -> None:
    recovering = await replica.socket("eio-1")
    await replica.socket("eio-2", session=False)

    await replica.manager.emit("step", {"n": 1}, "/", room=ROOM, offset="7-0")

    assert replica.written == {"eio-1": [["step", {"n": 1}, "7-0"]], "eio-2": [["step", {"n": 1}]]}
    assert replica.tracked(recovering).last_offset == "7-0"


async def test_a_stored_event_of_several_arguments_gets_its_offset_after_the_last(replica: Replica) -> None:
    await replica.socket("eio-1")

    await replica.manager.emit("route", ("Seoul Station", {"line": 1}), "/", room=ROOM, offset="8-0")

    assert replica.written == {"eio-1": [["route", "Seoul Station", {"line": 1}, "8-0"]]}


async def test_an_event_not_stored_that_ends_with_a_string_gets_the_sockets_last_offset(replica: Replica) -> None:
    """socket.io-client takes a trailing string for an offset: it must be one it may resume from."""
    await replica.socket("eio-1")
    await replica.socket("eio-2", session=False)

    await replica.manager.emit("position", "City Hall", "/", room=ROOM)  # nothing stored yet: the session's start
    await replica.manager.emit("step", {"n": 1}, "/", room=ROOM, offset="7-0")
    await replica.manager.emit("position", "Seoul Station", "/", room=ROOM)

    assert replica.written["eio-1"] == [["position", "City Hall", START], ["step", {"n": 1}, "7-0"],
                                        ["position", "Seoul Station", "7-0"]]
    assert replica.written["eio-2"] == [["position", "City Hall"], ["step", {"n": 1}], ["position", "Seoul Station"]]


@pytest.mark.parametrize("data", [{"station": "City Hall"}, ("City Hall", 3), None],
                         ids=["an-object", "a-number-last", "no-data"])
async def test_an_event_not_stored_that_does_not_end_with_a_string_is_written_as_it_is(
        replica: Replica, data: Any) -> None:
    await replica.socket("eio-1")

    await replica.manager.emit("position", data, "/", room=ROOM)

    args = list(data) if isinstance(data, tuple) else [] if data is None else [data]
    assert replica.written == {"eio-1": [["position", *args]]}


async def test_a_socket_whose_replay_has_not_finished_is_written_nothing_until_it_is_released(
        replica: Replica) -> None:
    held = await replica.socket("eio-1", replayed=False)
    await replica.socket("eio-2", session=False)

    await replica.manager.emit("step", {"n": 1}, "/", room=ROOM, offset="7-0")
    await replica.manager.emit("position", "City Hall", "/", room=ROOM)

    assert "eio-1" not in replica.written and len(replica.written["eio-2"]) == 2
    assert replica.tracked(held).held == [("7-0", "step", [{"n": 1}]), (None, "position", ["City Hall"])]

    await replica.recovery.replay(held)

    assert replica.written["eio-1"] == [["step", {"n": 1}, "7-0"], ["position", "City Hall", "7-0"]]
    assert replica.tracked(held).held is None


async def test_a_replayed_event_is_written_to_a_held_socket_with_its_offset(replica: Replica) -> None:
    held = await replica.socket("eio-1", replayed=False)

    await replica.manager.send_event(held, "step", [{"n": 1}], "6-0")

    assert replica.written == {"eio-1": [["step", {"n": 1}, "6-0"]]}
    assert replica.tracked(held).last_offset == "6-0"


async def test_a_replayed_event_for_a_socket_without_a_session_is_not_written(replica: Replica) -> None:
    plain = await replica.socket("eio-1", session=False)

    await replica.manager.send_event(plain, "step", [{"n": 1}], "6-0")
    await replica.manager.send_event("no-such-sid", "step", [{"n": 1}], "6-0")

    assert replica.written == {}
