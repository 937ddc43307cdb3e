"""server/eio/deadlines.py: many deadlines under one event-loop timer."""

from __future__ import annotations

import asyncio

from server.eio.deadlines import Deadlines


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, float]] = []
        self.done = asyncio.Event()

    def __call__(self, item: str, when: float) -> None:
        self.calls.append((item, when))
        if item == "last":
            self.done.set()


async def test_each_item_is_called_back_once_its_time_comes_in_time_order() -> None:
    recorder = Recorder()
    deadlines: Deadlines[str] = Deadlines(recorder)
    loop = asyncio.get_running_loop()

    whens = {item: deadlines.add(delay, item) for item, delay in [("last", 0.06), ("first", 0.01), ("second", 0.03)]}
    await asyncio.wait_for(recorder.done.wait(), 5)

    assert [item for item, _ in recorder.calls] == ["first", "second", "last"]
    assert all(when == whens[item] and when <= loop.time() for item, when in recorder.calls)
    assert len(deadlines) == 0


async def test_an_earlier_deadline_added_later_is_not_held_up_by_a_later_one() -> None:
    recorder = Recorder()
    deadlines: Deadlines[str] = Deadlines(recorder)
    deadlines.add(60.0, "an hour away, nearly")

    deadlines.add(0.01, "last")

    await asyncio.wait_for(recorder.done.wait(), 5)
    assert [item for item, _ in recorder.calls] == ["last"]
    assert len(deadlines) == 1
    deadlines.close()


async def test_items_due_together_come_first_in_first_out_and_a_failing_callback_stops_none() -> None:
    calls: list[str] = []
    done = asyncio.Event()

    def callback(item: str, _when: float) -> None:
        calls.append(item)
        if item == "boom":
            raise RuntimeError("boom")
        if item == "last":
            done.set()

    deadlines: Deadlines[str] = Deadlines(callback)
    for item in ("a", "boom", "b", "last"):
        deadlines.add(0.0, item)
    await asyncio.wait_for(done.wait(), 5)

    assert calls == ["a", "boom", "b", "last"]


async def test_close_forgets_every_deadline() -> None:
    recorder = Recorder()
    deadlines: Deadlines[str] = Deadlines(recorder)
    deadlines.add(0.0, "forgotten")

    deadlines.close()
    deadlines.add(0.0, "last")  # due with it: it would come first, had it been kept
    await asyncio.wait_for(recorder.done.wait(), 5)

    assert [item for item, _ in recorder.calls] == ["last"]


async def test_prune_keeps_only_the_entries_still_wanted() -> None:
    recorder = Recorder()
    deadlines: Deadlines[str] = Deadlines(recorder)
    for item in ("abandoned", "wanted", "abandoned too"):
        deadlines.add(0.0 if item == "wanted" else 3600.0, item)

    deadlines.prune(lambda item, _when: not item.startswith("abandoned"))

    assert len(deadlines) == 1
    deadlines.add(0.0, "last")
    await asyncio.wait_for(recorder.done.wait(), 5)
    assert [item for item, _ in recorder.calls] == ["wanted", "last"]
