"""bench/__main__.py: the plan a command line asks for."""

from __future__ import annotations

import pytest

from bench.__main__ import parse_args, plan_of, with_system
from bench.scenarios import FULL, QUICK


def test_without_options_the_full_plan_measures_every_system_and_the_quick_one_leaves_node_out() -> None:
    assert plan_of(parse_args([])) == FULL
    assert FULL.systems == ("baseline", "ours", "node-classic", "node-sharded")
    assert plan_of(parse_args(["--quick"])) == QUICK
    assert QUICK.systems == ("baseline", "ours")


def test_systems_run_in_the_plans_order_however_they_are_named() -> None:
    plan = plan_of(parse_args(["--systems", "node-sharded", "ours", "node-classic"]))

    assert plan.systems == ("ours", "node-classic", "node-sharded")


def test_users_replicas_rates_and_repeats_shrink_the_plan_and_leave_the_rest() -> None:
    plan = plan_of(parse_args(["--users", "300", "--replicas", "3", "--rates", "1000", "250", "--repeats", "1"]))

    assert (plan.users, plan.replicas, plan.targeted_rates, plan.repeats) == (300, 3, (250.0, 1000.0), 1)
    assert (plan.step_s, plan.systems, plan.scaling_replicas) == (FULL.step_s, FULL.systems, FULL.scaling_replicas)


def test_quick_plan_shrinks_too() -> None:
    plan = plan_of(parse_args(["--quick", "--users", "300", "--replicas", "3", "--rates", "1000", "250"]))

    assert (plan.users, plan.replicas, plan.targeted_rates) == (300, 3, (250.0, 1000.0))
    assert (plan.step_s, plan.systems, plan.scaling_replicas) == (QUICK.step_s, QUICK.systems, QUICK.scaling_replicas)


@pytest.mark.parametrize("argv", [["--users", "0"], ["--rates", "-5"], ["--replicas", "two"], ["--repeats", "0"],
                                  ["--systems", "node"]])
def test_a_bad_value_stops_with_a_usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        parse_args(argv)

    assert stopped.value.code == 2
    assert "python -m bench: error: argument" in capsys.readouterr().err


def test_compression_modes_narrow_the_load_and_idle_scenarios() -> None:
    assert plan_of(parse_args([])).compression == (False, True)
    assert plan_of(parse_args(["--compression", "off"])).compression == (False,)
    assert plan_of(parse_args(["--compression", "on", "off"])).compression == (False, True)


def test_ours_at_a_commit_runs_right_before_ours_or_first_without_it() -> None:
    assert with_system(("baseline", "ours", "node-sharded"), "ours-869c95d") == (
        "baseline", "ours-869c95d", "ours", "node-sharded")
    assert with_system(("baseline",), "ours-869c95d") == ("ours-869c95d", "baseline")
