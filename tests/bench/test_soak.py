"""The soak run's arguments and its report files (the run itself is too long for CI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.hostile import ATTACKS
from bench.soak import parse_args, write


def test_defaults_are_ten_minutes_three_replicas_and_every_attack() -> None:
    args = parse_args([])
    assert (args.minutes, args.replicas, args.users) == (10.0, 3, 3000)
    assert args.attacks == list(ATTACKS)


@pytest.mark.parametrize("argv", [["--minutes", "0"], ["--users", "0"], ["--rate", "-1"], ["--attacks", "nope"]])
def test_arguments_out_of_range_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2


def test_write_gives_json_a_table_row_per_window_and_a_plot(tmp_path: Path) -> None:
    doc = {"args": {"minutes": 1}, "rss_start_mb": [50.0, 51.0],
           "samples": [{"window": 1, "elapsed_s": 30.0, "rss_mb": [60.0, 52.0], "sent": 100, "lost": 0,
                        "p50_ms": 2.0, "p99_ms": 9.5, "connections_open": 10, "attacks": {}},
                       {"window": 2, "elapsed_s": 60.0, "rss_mb": [61.0, 52.5], "sent": 100, "lost": 1,
                        "p50_ms": None, "p99_ms": None, "connections_open": 10, "attacks": {}}],
           "attacks": {"ping_flood": {"opened": 3, "error:RATE_LIMITED": 2}}}

    paths = write(doc, tmp_path / "out")

    assert [p.name for p in paths] == ["soak.json", "soak.md", "soak.png"]
    assert json.loads(paths[0].read_text()) == doc
    table = paths[1].read_text()
    assert "| 1 | 30 | 60 | 52 | 100 | 0 | 2.0 | 9.5 | 10 |" in table
    assert "| 2 | 60 | 61 | 52 | 100 | 1 | - | - | 10 |" in table
    assert "**ping_flood**: error:RATE_LIMITED 2, opened 3" in table
    assert paths[2].read_bytes().startswith(b"\x89PNG")
