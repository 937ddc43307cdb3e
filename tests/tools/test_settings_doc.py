"""tools/settings_doc.py: the README's settings table and .env.example are what the declarations say."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from server.config import settings_specs
from tools import settings_doc
from tools.settings_doc import ENV_EXAMPLE, README, TABLE_END, TABLE_START, env_example, markdown_table, replace_table

ROOT = Path(__file__).resolve().parents[2]
STALE = "differs from the declarations in server/config.py: run `make settings-docs`"


def test_readme_settings_table_is_the_generated_one() -> None:
    readme = (ROOT / README).read_text()

    assert readme == replace_table(readme, markdown_table()), f"{README}'s settings table {STALE}"


def test_env_example_is_the_generated_one() -> None:
    assert (ROOT / ENV_EXAMPLE).read_text() == env_example(), f"{ENV_EXAMPLE} {STALE}"


def test_each_variable_is_declared_once_and_gets_one_row() -> None:
    names = [spec.env for _, spec in settings_specs()]
    rows = markdown_table().splitlines()[2:]

    assert len(set(names)) == len(names)
    assert [row.split("`")[1] for row in rows] == names


def test_a_readme_without_the_markers_is_refused() -> None:
    with pytest.raises(ValueError, match="settings-table:start"):
        replace_table("## Settings\n\n| old | table |\n", markdown_table())


def test_replacing_the_table_keeps_the_text_around_it() -> None:
    readme = f"before\n{TABLE_START}\nold table\n{TABLE_END}\nafter\n"

    assert replace_table(readme, "| new |\n") == f"before\n{TABLE_START}\n\n| new |\n\n{TABLE_END}\nafter\n"


def test_write_regenerates_both_files(tmp_path: Path) -> None:
    (tmp_path / README).write_text(f"intro\n{TABLE_START}\n| stale |\n{TABLE_END}\nrest\n")
    (tmp_path / ENV_EXAMPLE).write_text("STALE=1\n")

    assert settings_doc.main(["--write", "--root", str(tmp_path)]) == 0

    assert (tmp_path / README).read_text() == f"intro\n{TABLE_START}\n\n{markdown_table()}\n{TABLE_END}\nrest\n"
    assert (tmp_path / ENV_EXAMPLE).read_text() == env_example()


@pytest.mark.parametrize(("option", "document"), [("--markdown", markdown_table), ("--env-example", env_example)])
def test_command_prints_either_document(option: str, document: Callable[[], str],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert settings_doc.main([option]) == 0
    assert capsys.readouterr().out == document()
