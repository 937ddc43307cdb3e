"""bench/message.py and the load generator's recorder: what counts as a delivery of which step."""

from __future__ import annotations

import json

import pytest

from bench.loadgen import Recorder
from bench.message import EVENT, parse_delivery, payload, user_room
from kindmap_realtime.messages import rooms


def frame(data: object, event: str = EVENT) -> str:
    """A Socket.IO EVENT packet as python-socketio writes it in a WebSocket frame."""
    return "42" + json.dumps([event, data], separators=(",", ":"))


def test_a_sent_payload_is_read_back_with_its_step_and_send_time() -> None:
    data = payload(step=7, seq=3)

    delivery = parse_delivery(frame(data))

    assert delivery is not None
    assert (delivery.step, delivery.sent_at) == (7, data["t"])


def test_the_baseline_publishes_to_the_room_a_replica_puts_the_user_in() -> None:
    assert user_room("alice") == rooms.user_room("alice")


@pytest.mark.parametrize("text", ["2", "40{\"sid\":\"x\"}", frame({"user_id": "a"}, event="connected"), "3probe"])
def test_other_frames_are_not_deliveries(text: str) -> None:
    assert parse_delivery(text) is None


def test_the_recorder_counts_per_user_and_keeps_latencies_of_the_current_step() -> None:
    recorder = Recorder()
    recorder.begin(step=2)

    recorder.record("alice", step=2, sent_at=10.0, now=10.004)
    recorder.record("alice", step=2, sent_at=10.1, now=10.102)
    recorder.record("bob", step=2, sent_at=10.2, now=10.201)

    report = recorder.report()
    assert report["received"] == {"alice": 2, "bob": 1}
    assert report["latencies"] == pytest.approx([0.004, 0.002, 0.001])
    assert (report["first"], report["last"], report["late"]) == (10.004, 10.201, 0)
    assert recorder.total() == 3


def test_a_message_of_an_earlier_step_is_late_not_a_delivery() -> None:
    recorder = Recorder()
    recorder.begin(step=3)

    recorder.record("alice", step=2, sent_at=1.0, now=9.0)

    assert (recorder.total(), recorder.report()["late"], recorder.report()["received"]) == (0, 1, {})


def test_beginning_a_step_forgets_the_previous_one() -> None:
    recorder = Recorder()
    recorder.begin(step=1)
    recorder.record("alice", step=1, sent_at=1.0, now=1.5)

    recorder.begin(step=2)

    assert recorder.report() == {"step": 2, "received": {}, "late": 0, "first": None, "last": None, "latencies": []}
