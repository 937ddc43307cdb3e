"""bench/profile.py: summarising py-spy's raw stacks."""

from __future__ import annotations

from bench.profile import summarize_stacks

RAW = [
    "<module> (server/__main__.py:44);run_forever (asyncio/base_events.py:607);"
    "_run_once (asyncio/base_events.py:1884);EpollSelector.select (selectors.py:468) 60",
    "<module> (server/__main__.py:44);_run_once (asyncio/base_events.py:1922);Handle._run (asyncio/events.py:80);"
    "_receive (server/manager/client_manager.py:230);decode (kindmap_realtime/messages/envelope.py:70);"
    "loads (json/__init__.py:346) 30",
    "<module> (server/__main__.py:44);_run_once (asyncio/base_events.py:1922);Handle._run (asyncio/events.py:80);"
    "_receive (server/manager/client_manager.py:231);_receive (server/manager/client_manager.py:240);emit (x.py:1) 10",
    "",
]


def test_idle_samples_are_left_out_and_the_rest_shared_by_function() -> None:
    summary = summarize_stacks(RAW)

    assert (summary.busy, summary.idle) == (40, 60)
    inclusive = dict(summary.inclusive)
    # Lines of one function merge, and a recursive frame counts once per sample.
    assert inclusive["_receive (server/manager/client_manager.py)"] == 40
    assert inclusive["decode (kindmap_realtime/messages/envelope.py)"] == 30
    assert summary.own[0] == ("loads (json/__init__.py)", 30)


def test_stages_share_the_busy_samples_and_the_rest_is_everything_else() -> None:
    stages = dict(summarize_stacks(RAW).stages())

    assert stages["Queue envelope decode and validation (every message)"] == 30
    assert stages["Redis inbox read: the XREAD round trips (messages for this replica's users only)"] == 0
    assert stages["everything else (event loop, timers, pings)"] == 10


def test_event_loop_frames_are_not_listed_as_costs() -> None:
    inclusive = dict(summarize_stacks(RAW).inclusive)

    assert not any("_run_once" in frame or "<module>" in frame or "Handle._run" in frame for frame in inclusive)


def test_the_text_gives_shares_of_busy_samples() -> None:
    text = summarize_stacks(RAW).text(top=2)

    assert "busy samples: 40, idle samples left out: 60" in text
    assert " 75.0%  Queue envelope decode and validation (every message)" in text
    assert "100.0%  _receive (server/manager/client_manager.py)" in text
    assert " 75.0%  loads (json/__init__.py)" in text
