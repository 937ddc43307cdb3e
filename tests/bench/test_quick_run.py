"""``python -m bench --quick``, the CI smoke test: the suite runs end to end and writes its files.

It asserts nothing about speed: CI machines are shared and the quick sizes are too
small to mean anything. The full run's figures live in bench/RESULTS.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cluster.processes import REPO_ROOT

QUICK_RUN_TIMEOUT = 240


@pytest.mark.timeout(QUICK_RUN_TIMEOUT + 30)
def test_quick_run_measures_both_systems_in_every_scenario_and_writes_its_files(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=QUICK_RUN_TIMEOUT)

    assert run.returncode == 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    for name in ("results.json", "results.md", "targeted.png", "scaling.png", "overview.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    doc = json.loads((tmp_path / "results.json").read_text())
    measured = {(r.get("scenario", r["kind"]), r["system"], r["compression"]) for r in doc["results"]}
    for system in ("baseline", "ours"):
        for compression in (False, True):
            assert {("targeted", system, compression), ("broadcast", system, compression),
                    ("idle", system, compression)} <= measured
        assert {("emitter", system, False), ("emitter-single", system, False), ("scaling", system, False)} <= measured
    # Volatile sends beside the durable ones: ours only (stock keeps no history), without compression.
    assert {key for key in measured if key[0] == "targeted-volatile"} == {("targeted-volatile", "ours", False)}
    # Every targeted message reached its user and no client dropped: the load path works for both systems.
    steps = [r for r in doc["results"] if r["kind"] == "step"]
    assert all(r["lost"] == 0 and r["failed"] == 0 for r in steps if r["scenario"].startswith("targeted"))
    assert all(r["connections_open"] == r["users"] for r in steps)
    text = (tmp_path / "results.md").read_text()
    assert "## Summary" in text and "### Targeted to ours: durable vs volatile sends (deflate off)" in text
