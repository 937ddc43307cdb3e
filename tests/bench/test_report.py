"""bench/report.py: the summary figures, the Markdown and the plots, from a results document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import report, systems


def step(system: str, rate: float | None, *, scenario: str = "targeted", compression: bool = False,
         **fields: Any) -> dict[str, Any]:
    row = {"kind": "step", "scenario": scenario, "system": system, "compression": compression, "replicas": 3,
           "users": 1500, "offered_rate": rate, "duration_s": 8.0, "sent": 100, "failed": 0,
           "achieved_rate": rate or 2000.0, "emitter_short": False, "expected": 100, "delivered": 100, "lost": 0,
           "extra": 0, "late": 0, "connections_open": 1500, "delivered_fraction": 1.0, "p50_ms": 2.0,
           "p99_ms": 10.0, "max_ms": 20.0,
           "deliveries_per_s": 1000.0, "wall_s": 8.5, "cpu_s": {"replica-1": 1.0, "redis": 0.1, "emitter": 0.5,
                                                                 "loadgen": 0.4},
           "others_cpu_s": 0.2, "server_cpu_s": 1.0, "server_cpu_ms_per_msg": 1.0, "emitter_cpu_us_per_msg": 300.0,
           "saturated": []}
    row.update(fields)
    return row


def idle(system: str, compression: bool, per_connection: float) -> dict[str, Any]:
    return {"kind": "idle", "system": system, "compression": compression, "connections": 100,
            "rss_before_bytes": 0, "rss_after_bytes": int(per_connection * 100), "connect_s": 1.0,
            "bytes_per_connection": per_connection}


def document(rows: list[dict[str, Any]]) -> dict[str, Any]:
    machine = {"cpu": "Test CPU", "cores": 2, "memory_gib": 24.0, "kernel": "6.1", "python": "3.11.7",
               "redis": "7.0.15", "packages": {"python-socketio": "5.18.1"}}
    return {"mode": "quick", "started": "2026-11-26T10:00:00+00:00", "machine": machine, "load_before": [0.1],
            "load_after": [0.2], "others_share": 0.05, "results": rows}


ROWS = [
    step("baseline", 500, p99_ms=5.0), step("baseline", 1000, p99_ms=80.0), step("baseline", 2000, p99_ms=20.0),
    step("ours", 500, p99_ms=5.0, server_cpu_ms_per_msg=1.2), step("ours", 1000, p99_ms=8.0),
    step("ours", 2000, emitter_short=True, server_cpu_ms_per_msg=0.9),
    step("baseline", 20, scenario="broadcast", deliveries_per_s=12_000.0, p99_ms=12_000.0),
    step("ours", 20, scenario="broadcast", deliveries_per_s=15_000.0, p99_ms=6_000.0),
    step("baseline", None, scenario="emitter", achieved_rate=2000.0, emitter_cpu_us_per_msg=200.0),
    step("ours", None, scenario="emitter", achieved_rate=1000.0, emitter_cpu_us_per_msg=400.0),
    step("baseline", 500, scenario="scaling", replicas=1), step("ours", 500, scenario="scaling", replicas=1),
    idle("baseline", False, 30 * 1024), idle("ours", False, 33 * 1024),
]


def test_a_rate_is_held_only_if_every_rate_below_it_held_too() -> None:
    # baseline: 1,000 broke p99 < 50 ms, so 2,000 does not count although it passed.
    assert report.highest_rate_held(report.select(ROWS, scenario="targeted", system="baseline")) == 500
    # ours: 2,000 passed on latency but the emitter could not offer it.
    assert report.highest_rate_held(report.select(ROWS, scenario="targeted", system="ours")) == 1000


def test_repeats_of_a_rate_hold_on_their_median_p99_but_any_loss_or_short_emitter_breaks_them() -> None:
    noisy = [step("ours", 500, p99_ms=5.0), step("ours", 500, p99_ms=90.0), step("ours", 500, p99_ms=6.0),
             step("ours", 1000, p99_ms=5.0), step("ours", 1000, p99_ms=5.0, lost=3)]

    assert report.highest_rate_held(noisy) == 500


def test_a_loss_or_a_failed_first_step_means_nothing_was_held() -> None:
    assert report.highest_rate_held([step("ours", 500, lost=1)]) is None
    assert report.highest_rate_held([]) is None


def test_the_summary_gives_each_system_measured_and_ours_over_each_other() -> None:
    rows = {h.label: (h.values["baseline"], h.values["ours"], h.ratios["baseline"]) for h in report.headline(ROWS)}

    assert rows["targeted, highest rate held with p99 < 50 ms, no loss (deflate off)"] == (
        "500 msg/s", "1,000 msg/s", "2.00×")
    assert rows["server CPU per delivered targeted message at the lowest rate offered (deflate off)"] == (
        "1.000 ms", "1.200 ms", "1.20×")
    assert rows["broadcast to every user: deliveries per second (deflate off)"] == ("12,000/s", "15,000/s", "1.25×")
    assert rows["idle memory per connection (deflate off)"] == ("30.0 KiB", "33.0 KiB", "1.10×")
    assert rows["emitter: CPU per message (deflate off)"] == ("200 µs", "400 µs", "2.00×")
    assert rows["idle memory per connection (deflate on)"] == ("–", "–", "–")  # not measured in these rows


NODE_ROWS = [*ROWS, step("node-classic", 500, server_cpu_ms_per_msg=0.3, p99_ms=3.0),
             step("node-sharded", 500, server_cpu_ms_per_msg=0.4, p99_ms=4.0),
             step("node-sharded", 500, scenario="scaling", replicas=1, server_cpu_ms_per_msg=0.5),
             idle("node-sharded", False, 10 * 1024)]


def test_node_systems_get_their_values_in_the_summary_and_ours_is_compared_with_each() -> None:
    rows = {h.label: h for h in report.headline(NODE_ROWS)}
    cpu = rows["server CPU per delivered targeted message at the lowest rate offered (deflate off)"]
    memory = rows["idle memory per connection (deflate off)"]

    assert cpu.values == {"baseline": "1.000 ms", "ours": "1.200 ms", "node-classic": "0.300 ms",
                          "node-sharded": "0.400 ms"}
    assert cpu.ratios == {"baseline": "1.20×", "node-classic": "4.00×", "node-sharded": "3.00×"}
    assert memory.values["node-classic"] == "–"  # measured for the sharded one only
    assert memory.ratios["node-sharded"] == "3.30×"


def test_every_table_has_a_value_per_system_measured_in_order_and_ratios_of_ours_to_each() -> None:
    text = report.markdown(document(NODE_ROWS))

    assert ("| figure | baseline | ours | node-classic | node-sharded | ours / baseline | ours / node-classic "
            "| ours / node-sharded | reference, stock |") in text
    assert ("| offered msg/s | achieved b / o / nc / ns | delivered % b / o / nc / ns | p50 ms b / o / nc / ns "
            "| p99 ms b / o / nc / ns | max ms b / o / nc / ns | server CPU ms/msg b / o / nc / ns "
            "| CPU ratio o/b / o/nc / o/ns |") in text
    assert "| 500 | 500 / 500 / 500 / 500 | 100.00 / 100.00 / 100.00 / 100.00 | 2.0 / 2.0 / 2.0 / 2.0 " in text
    assert ("| 5.0 / 5.0 / 3.0 / 4.0 | 20 / 20 / 20 / 20 | 1.000 / 1.200 / 0.300 / 0.400 "
            "| 1.20× / 4.00× / 3.00× |") in text
    # Scaling: node-classic measured no scaling step, so its cells are empty and ours has no ratio to it.
    assert ("| 1 | 500 / 500 / – / 500 | 1.000 / 1.000 / – / 0.500 | 1.000 / 1.000 / – / 0.500 "
            "| 1.00× / – / 2.00× |") in text


def test_a_run_without_ours_shows_the_systems_it_measured_and_no_ratios() -> None:
    rows = [step("node-classic", 500), step("node-sharded", 500)]

    assert all(h.ratios == {} for h in report.headline(rows))
    text = report.markdown(document(rows))
    assert "| figure | node-classic | node-sharded | reference, stock |" in text
    assert "| offered msg/s | achieved nc / ns |" in text and "| CPU ratio |" in text


def test_others_share_is_their_cpu_over_the_machine_capacity_during_the_steps() -> None:
    rows = [step("ours", 500, wall_s=10.0, others_cpu_s=4.0), step("ours", 1000, wall_s=10.0, others_cpu_s=0.0),
            idle("ours", False, 1024)]

    assert report.others_share(rows, cores=2) == pytest.approx(4.0 / 40.0)
    assert report.others_share([], cores=2) == 0.0


def test_the_markdown_has_the_machine_the_summary_and_a_table_per_scenario() -> None:
    text = report.markdown(document(ROWS))

    assert "Machine: Test CPU, 2 cores" in text
    for heading in ("## Summary", "### Targeted, deflate off", "### Scaling", "### CPU seconds per step"):
        assert heading in text
    assert "| 2,000 (emitter short: ours) | 2,000 / 2,000 | 100.00 / 100.00 | 2.0 / 2.0 | 20.0 / 10.0 |" in text
    assert "| 1 | 500 / 500 | 1.000 / 1.000 | 1.000 / 1.000 | 1.00× | 10.0 / 10.0 |" in text
    assert "| ours / baseline |" in text and "node" not in text.split("## Summary")[1]  # only what was measured


@pytest.mark.parametrize("rows", [pytest.param(NODE_ROWS, id="full"), pytest.param([], id="empty")])
def test_every_file_is_written_even_for_a_run_with_few_results(tmp_path: Path, rows: list[dict[str, Any]]) -> None:
    paths = report.write(document(rows), tmp_path)

    assert [p.name for p in paths] == ["results.json", "results.md", *report.PLOTS]
    for png in paths[2:]:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_report_has_a_short_name_for_every_system_the_suite_runs_in_the_suites_order() -> None:
    assert list(report.SYSTEMS) == list(systems.SYSTEMS)
    assert len(set(report.SYSTEMS.values())) == len(report.SYSTEMS)


def volatile_rows() -> list[dict[str, Any]]:
    """Ours at two rates, durable and volatile (two repeats of 500), and a baseline with no volatile steps."""
    def sent(rate: float, volatile: bool, server: float, redis: float, p99: float, **fields: Any) -> dict[str, Any]:
        cpu = {"replica-1": server, "redis": redis, "emitter": 0.03, "loadgen": 0.4}
        return step("ours", rate, scenario="targeted-volatile" if volatile else "targeted", delivered=1000,
                    server_cpu_ms_per_msg=server, cpu_s=cpu, p99_ms=p99, **fields)

    return [step("baseline", 500), step("baseline", 1000),
            sent(500, False, 0.24, 0.050, 4.0), sent(500, True, 0.20, 0.030, 3.0),
            sent(500, False, 0.26, 0.070, 6.0), sent(500, True, 0.20, 0.030, 5.0),
            sent(1000, False, 0.22, 0.100, 8.0, emitter_short=True), sent(1000, True, 0.20, 0.080, 7.0),
            sent(1000, True, 0.30, 0.080, 7.0, compression=True)]


def test_ours_durable_and_volatile_steps_are_shown_side_by_side_with_their_ratios() -> None:
    text = report.markdown(document(volatile_rows()))
    table = text.split("### Targeted to ours: durable vs volatile sends (deflate off)")[1].split("###")[0]

    assert ("| offered msg/s | achieved d / v | delivered % d / v | p50 ms d / v | p99 ms d / v "
            "| server CPU ms/msg d / v | d/v | Redis CPU µs/msg d / v | d/v "
            "| emitter CPU µs/msg d / v | d/v |") in table
    # 500: medians of the two repeats; Redis CPU per delivered message from its CPU seconds.
    assert ("| 500 | 500 / 500 | 100.00 / 100.00 | 2.0 / 2.0 | 5.0 / 4.0 | 0.250 / 0.200 | 1.25× "
            "| 60.0 / 30.0 | 2.00× | 300 / 300 | 1.00× |") in table
    # The deflate-on volatile step is not this table's.
    assert ("| 1,000 (emitter short) | 1,000 / 1,000 | 100.00 / 100.00 | 2.0 / 2.0 | 8.0 / 7.0 | 0.220 / 0.200 "
            "| 1.10× | 100.0 / 80.0 | 1.25× |") in table


def test_volatile_steps_stay_out_of_the_summary_and_the_other_tables() -> None:
    rows = volatile_rows()
    durable_only = [r for r in rows if r["scenario"] != "targeted-volatile"]

    assert report.headline(rows) == report.headline(durable_only)
    with_volatile, without = report.markdown(document(rows)), report.markdown(document(durable_only))
    before, table_and_after = with_volatile.split("### Targeted to ours")
    after = table_and_after[table_and_after.index("### "):]
    assert before.split("### Targeted")[0] == without.split("### Targeted")[0]  # the summary
    assert (before + after).split("### CPU")[0] == without.split("### CPU")[0]  # the targeted and scaling tables
    assert after.split("### CPU")[1].count("targeted-volatile") == 4  # each step's CPU is listed


def test_a_run_without_volatile_steps_has_no_durable_vs_volatile_table() -> None:
    assert "durable vs volatile" not in report.markdown(document(NODE_ROWS))


def then_and_now_rows() -> list[dict[str, Any]]:
    """Ours at an older commit, ours now, stock and Node at one rate; ours' volatile steps too."""
    def sent(system: str, server: float, redis: float, p99: float, **fields: Any) -> dict[str, Any]:
        cpu = {"replica-1": server, "redis": redis, "emitter": 0.03, "loadgen": 0.4}
        return step(system, 1000, delivered=1000, server_cpu_ms_per_msg=server, cpu_s=cpu, p99_ms=p99, **fields)

    return [sent("baseline", 0.50, 0.020, 4.0), sent("ours-869c95d", 0.20, 0.050, 5.0),
            sent("ours", 0.25, 0.100, 6.0), sent("ours", 0.25, 0.080, 6.0),
            sent("node-sharded", 0.10, 0.025, 3.0),
            sent("ours-869c95d", 0.18, 0.030, 4.0, scenario="targeted-volatile"),
            sent("ours", 0.20, 0.040, 5.0, scenario="targeted-volatile")]


def test_ours_at_an_older_commit_comes_right_before_ours_with_a_short_name_of_its_own() -> None:
    rows = then_and_now_rows()

    assert report.measured_systems(rows) == ["baseline", "ours-869c95d", "ours", "node-sharded"]
    assert [report.short_name(s) for s in report.measured_systems(rows)] == ["b", "o@869c95d", "o", "ns"]
    text = report.markdown(document(rows))
    assert "| p99 ms b / o@869c95d / o / ns |" in text
    assert "| CPU ratio o/b / o/o@869c95d / o/ns |" in text


def test_ours_then_and_now_is_a_table_of_every_system_with_ours_now_over_each() -> None:
    text = report.markdown(document(then_and_now_rows()))
    table = text.split("### Ours then and now (targeted, deflate off)")[1].split("###")[0]

    assert ("| offered msg/s | system | achieved | delivered % | p50 ms | p99 ms | server CPU ms/msg "
            "| Redis CPU µs/msg | emitter CPU µs/msg | ours / this: p50 | ours / this: p99 "
            "| ours / this: server CPU | ours / this: Redis CPU |") in table
    assert ("| 1,000 | ours-869c95d | 1,000 | 100.00 | 2.0 | 5.0 | 0.200 | 50.0 | 300 "
            "| 1.00× | 1.20× | 1.25× | 1.80× |") in table
    assert "| 1,000 | ours | 1,000 | 100.00 | 2.0 | 6.0 | 0.250 | 90.0 | 300 | – | – | – | – |" in table
    assert ("| 1,000 | baseline | 1,000 | 100.00 | 2.0 | 4.0 | 0.500 | 20.0 | 300 "
            "| 1.00× | 1.50× | 0.50× | 4.50× |") in table
    assert "### Targeted to ours-869c95d: durable vs volatile sends (deflate off)" in text
    assert "### Targeted to ours: durable vs volatile sends (deflate off)" in text


def test_without_an_older_commit_there_is_no_then_and_now_table() -> None:
    assert "Ours then and now" not in report.markdown(document(ROWS))
