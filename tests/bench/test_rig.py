"""bench/rig.py: what a step refuses before it starts anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.rig import Rig
from bench.systems import SYSTEMS


@pytest.mark.parametrize("system", [name for name, system in SYSTEMS.items() if not system.volatile])
async def test_a_volatile_step_is_refused_for_a_system_whose_emitter_keeps_no_history(system: str,
                                                                                       tmp_path: Path) -> None:
    rig = Rig(system, replicas=1, users=["a"], log_dir=tmp_path)  # not entered: nothing runs

    with pytest.raises(ValueError, match=f"{system} has no volatile send"):
        await rig.step("targeted-volatile", rate=10, duration=1.0, volatile=True)


def test_only_ours_can_send_volatile() -> None:
    assert [name for name, system in SYSTEMS.items() if system.volatile] == ["ours"]
