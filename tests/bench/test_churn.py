"""``python -m bench.churn``: its arguments, a tiny run end to end, and the churner's parts.

Nothing here is about speed: the run is far too short and CI machines are shared. The
10-minute run's figures live in bench/CHURN.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.churn import parse_args
from bench.churner import client_frame, refusal_code
from cluster.processes import REPO_ROOT

RUN_TIMEOUT = 120


def test_defaults_are_ten_minutes_of_churn_from_eight_addresses_and_the_shipped_window() -> None:
    args = parse_args([])

    assert (args.minutes, args.window, args.sources, args.replicas, args.sample) == (10.0, 120.0, 8, 2, 10.0)


@pytest.mark.parametrize("argv", [["--minutes", "0"], ["--window", "-1"], ["--sources", "0"], ["--rate", "0"]])
def test_arguments_out_of_range_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        parse_args(argv)

    assert stopped.value.code == 2


def test_a_refusal_is_read_by_its_code_from_an_http_body_or_a_connect_error() -> None:
    assert refusal_code('{"code": "RATE_LIMITED", "message": "over 10 handshakes"}') == "RATE_LIMITED"
    assert refusal_code('{"message": "no", "data": {"code": "TOO_MANY_CONNECTIONS"}}') == "TOO_MANY_CONNECTIONS"
    assert refusal_code("not json") == refusal_code("[1]") == "?"


@pytest.mark.parametrize("size", [5, 200, 70_000])
def test_a_client_frame_is_final_text_masked_with_its_length(size: int) -> None:
    frame = client_frame("x" * size)

    assert frame[0] == 0x81 and frame[1] & 0x80
    header = {5: 2, 200: 4, 70_000: 10}[size]
    mask, data = frame[header:header + 4], frame[header + 4:]
    assert bytes(b ^ mask[i % 4] for i, b in enumerate(data)) == b"x" * size


@pytest.mark.timeout(RUN_TIMEOUT + 30)
def test_a_tiny_churn_run_completes_and_reports_its_samples(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "bench.churn", "--minutes", "0.1", "--window", "2", "--after", "4",
                          "--sample", "2", "--sources", "2", "--rate", "10", "--out", str(tmp_path)],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT)

    assert run.returncode == 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    assert [p.name for p in sorted(tmp_path.glob("churn.*"))] == ["churn.json", "churn.md", "churn.png"]
    doc = json.loads((tmp_path / "churn.json").read_text())
    samples = doc["samples"]
    assert [s["phase"] for s in samples[:2]] == ["before", "churn"] and samples[-1]["phase"] == "after"
    assert samples[0]["keys"] > 0 and samples[0]["used_memory_mb"] > 0 and samples[0]["churn"] == {}
    assert doc["churn"]["counts"].get("connected", 0) > 0  # the churn opened sessions
    assert max(s["sessions"] for s in samples) > 0
    assert doc["healthy"]["sent"] > 0 and doc["healthy"]["received"] > 0
    assert sum(s["sent"] for s in samples) == doc["healthy"]["sent"]
    assert all(s["p50_ms"] is None or s["p50_ms"] >= 0 for s in samples)
    text = (tmp_path / "churn.md").read_text()
    assert "| t s | phase | Redis keys | used_memory MB | dataset MB |" in text
    assert (tmp_path / "churn.png").read_bytes().startswith(b"\x89PNG")
