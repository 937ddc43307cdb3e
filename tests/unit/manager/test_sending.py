"""kindmap_realtime/sending.py, the one rule for a backend sending to a user, through server/manager/sending.py's
``RoomSender`` (a manager that knows nothing of presence)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from kindmap_realtime.backends import Presence
from kindmap_realtime.backends.base import Session
from kindmap_realtime.errors import QueueUnavailableError, RequestError, UserNotConnectedError
from kindmap_realtime.messages.checks import (
    MAX_DATA_DEPTH,
    MAX_EVENT_LENGTH,
    RESERVED_EVENTS,
    check_data,
    check_event,
    check_user_id,
)
from kindmap_realtime.sending import send_to_user
from server.manager.sending import RoomSender
from server.metrics import Metrics


class RecordingManager:
    """Stands in for the client manager: records emits instead of sending."""

    def __init__(self) -> None:
        self.emits: list[tuple[str, Any, dict[str, Any]]] = []

    async def emit(self, event: str, data: Any, **kwargs: Any) -> None:
        self.emits.append((event, data, kwargs))


class FixedPresence(Presence):
    """Answers ``is_online`` from a fixed set (or raises), recording every question."""

    def __init__(self, online: Iterable[str] = (), error: Exception | None = None) -> None:
        self.online = set(online)
        self.error = error
        self.asked: list[str] = []

    async def add(self, user_id: str, sid: str, session: Session | None = None) -> None:
        raise AssertionError("delivery must not change presence")

    async def remove(self, user_id: str, sid: str, session: Session | None = None, *, keep: bool = False) -> None:
        raise AssertionError("delivery must not change presence")

    async def is_online(self, user_id: str) -> bool:
        self.asked.append(user_id)
        if self.error is not None:
            raise self.error
        return user_id in self.online


@pytest.fixture
def manager() -> RecordingManager:
    return RecordingManager()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


def dropped(metrics: Metrics, reason: str) -> float | None:
    return metrics.registry.get_sample_value("kindmap_messages_dropped_total", {"reason": reason})


async def test_connected_user_gets_the_event_in_their_room(manager: RecordingManager, metrics: Metrics) -> None:
    await send_to_user(RoomSender(manager, FixedPresence({"alice"})), metrics, "alice", "route_deviation", {"step": 3})

    assert manager.emits == [("route_deviation", {"step": 3}, {"namespace": "/", "room": "user:alice"})]


async def test_user_connected_nowhere_raises_and_is_counted_as_dropped(manager: RecordingManager,
                                                                      metrics: Metrics) -> None:
    with pytest.raises(UserNotConnectedError, match="alice"):
        await send_to_user(RoomSender(manager, FixedPresence()), metrics, "alice", "arrival", None)

    assert manager.emits == []
    assert dropped(metrics, "user_not_connected") == 1


@pytest.mark.parametrize(("user_id", "event"), [
    ("alice smith", "arrival"),
    (None, "arrival"),
    ("alice", "connect"),
    ("alice", ""),
    ("alice", 7),
])
async def test_bad_request_is_refused_before_presence_is_asked(manager: RecordingManager, metrics: Metrics,
                                                               user_id: Any, event: Any) -> None:
    presence = FixedPresence({"alice"})

    with pytest.raises(RequestError):
        await send_to_user(RoomSender(manager, presence), metrics, user_id, event, None)

    assert presence.asked == []
    assert manager.emits == []
    assert dropped(metrics, "user_not_connected") == 0


async def test_presence_failure_propagates_and_nothing_is_sent(manager: RecordingManager, metrics: Metrics) -> None:
    presence = FixedPresence(error=QueueUnavailableError("presence lookup failed"))

    with pytest.raises(QueueUnavailableError):
        await send_to_user(RoomSender(manager, presence), metrics, "alice", "arrival", None)

    assert manager.emits == []


@pytest.mark.parametrize("event", sorted(RESERVED_EVENTS))
def test_reserved_event_names_are_refused(event: str) -> None:
    with pytest.raises(RequestError, match="reserved"):
        check_event(event)


@pytest.mark.parametrize("event", ["navigation_update", "경로_안내", "x", "e" * MAX_EVENT_LENGTH, "connected"])
def test_ordinary_event_names_are_accepted(event: str) -> None:
    assert check_event(event) == event


@pytest.mark.parametrize("event", ["", "e" * (MAX_EVENT_LENGTH + 1), None, 1, ["arrival"], "\ud800", "arr\udfffival"])
def test_event_name_must_be_a_short_non_empty_string(event: Any) -> None:
    with pytest.raises(RequestError, match="event"):
        check_event(event)


@pytest.mark.parametrize("user_id", ["", "a b", "u" * 129, None, 42, "경로"])
def test_check_user_id_refuses_ids_unusable_as_room_names(user_id: Any) -> None:
    with pytest.raises(RequestError, match="user_id"):
        check_user_id(user_id)


def test_check_user_id_returns_a_good_id() -> None:
    assert check_user_id("temp_42") == "temp_42"


def nested(depth: int) -> Any:
    data: Any = "leaf"
    for level in range(depth):
        data = [data] if level % 2 else {"next": data}
    return data


@pytest.mark.parametrize("data", [
    pytest.param(float("nan"), id="nan"),
    pytest.param({"speed": float("inf")}, id="infinity"),
    pytest.param([float("-inf")], id="minus-infinity"),
    pytest.param(10 ** 5000, id="5000-digit-integer"),
    pytest.param({"at": object()}, id="not-json"),
    pytest.param(nested(MAX_DATA_DEPTH + 1), id="one-level-too-deep"),
    pytest.param(nested(100_000), id="deeper-than-the-stack"),
    pytest.param("\ud800", id="lone-surrogate"),
    pytest.param({"stops": ["ok", "\udfff"]}, id="lone-surrogate-inside"),
    pytest.param({"\ud800": 1}, id="lone-surrogate-key"),
])
def test_check_data_refuses_what_a_client_cannot_parse(data: Any) -> None:
    with pytest.raises(RequestError, match="data"):
        check_data(data)


@pytest.mark.parametrize("data", [
    None, 0, 2 ** 63, -1.5, "경로", [], {}, (1, 2), {"route": [{"lat": 37.5, "lon": 127.0}]},
    nested(MAX_DATA_DEPTH),
])
def test_check_data_accepts_plain_json(data: Any) -> None:
    assert check_data(data) is data


async def test_bad_data_is_refused_before_presence_is_asked(manager: RecordingManager, metrics: Metrics) -> None:
    presence = FixedPresence({"alice"})

    with pytest.raises(RequestError):
        await send_to_user(RoomSender(manager, presence), metrics, "alice", "arrival", {"eta": float("nan")})

    assert (presence.asked, manager.emits) == ([], [])
