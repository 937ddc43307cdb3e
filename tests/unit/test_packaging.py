"""pyproject.toml: the installable library depends on what requirements.txt pins, no more."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def pins(lines: list[str]) -> dict[str, str]:
    """``name == version`` requirements by lower-case name."""
    found = {}
    for line in lines:
        requirement = line.split("#", 1)[0].strip()
        if "==" in requirement:
            name, version = requirement.split("==", 1)
            found[name.strip().lower().replace("_", "-")] = version.strip()
    return found


def test_the_library_pins_what_requirements_txt_pins() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    library = pins(project["dependencies"])
    replica = pins((ROOT / "requirements.txt").read_text().splitlines())

    assert library == {name: replica[name] for name in library}
    assert set(library) == {"redis", "hiredis", "orjson", "python-dotenv"}
