"""tools/settings_doc.py: the settings table of docs/configuration.md and .env.example are what the
declarations say, and the table's links lead to the headings they name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from server.config import settings_specs
from tools import settings_doc
from tools.settings_doc import (
    ENV_EXAMPLE,
    TABLE_DOC,
    TABLE_END,
    TABLE_START,
    env_example,
    markdown_table,
    replace_table,
)

ROOT = Path(__file__).resolve().parents[2]
STALE = "differs from the declarations in server/config.py: run `make settings-docs`"


def test_configuration_guides_settings_table_is_the_generated_one() -> None:
    document = (ROOT / TABLE_DOC).read_text()

    assert document == replace_table(document, markdown_table()), f"{TABLE_DOC}'s settings table {STALE}"


def test_env_example_is_the_generated_one() -> None:
    assert (ROOT / ENV_EXAMPLE).read_text() == env_example(), f"{ENV_EXAMPLE} {STALE}"


def test_each_variable_is_declared_once_and_gets_one_row() -> None:
    names = [spec.env for _, spec in settings_specs()]
    rows = markdown_table().splitlines()[2:]

    assert len(set(names)) == len(names)
    assert [row.split("`")[1] for row in rows] == names


def test_a_document_without_the_markers_is_refused() -> None:
    with pytest.raises(ValueError, match="settings-table:start"):
        replace_table("## Settings\n\n| old | table |\n", markdown_table())


def test_replacing_the_table_keeps_the_text_around_it() -> None:
    readme = f"before\n{TABLE_START}\nold table\n{TABLE_END}\nafter\n"

    assert replace_table(readme, "| new |\n") == f"before\n{TABLE_START}\n\n| new |\n\n{TABLE_END}\nafter\n"


def test_write_regenerates_both_files(tmp_path: Path) -> None:
    (tmp_path / TABLE_DOC).parent.mkdir()
    (tmp_path / TABLE_DOC).write_text(f"intro\n{TABLE_START}\n| stale |\n{TABLE_END}\nrest\n")
    (tmp_path / ENV_EXAMPLE).write_text("STALE=1\n")

    assert settings_doc.main(["--write", "--root", str(tmp_path)]) == 0

    assert (tmp_path / TABLE_DOC).read_text() == f"intro\n{TABLE_START}\n\n{markdown_table()}\n{TABLE_END}\nrest\n"
    assert (tmp_path / ENV_EXAMPLE).read_text() == env_example()


def test_a_help_link_is_written_relative_to_the_table_to_the_document_holding_its_heading(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("# Title\n\n## Demo page\n")
    (tmp_path / TABLE_DOC).write_text("# Configuration\n\n## WebSocket compression\n")
    (tmp_path / "docs" / "delivery.md").write_text("```\n# Not a heading\n```\n## Connection state recovery\n")
    monkeypatch.setattr(settings_doc, "ROOT", tmp_path)

    assert settings_doc._markdown("see [Demo page](#demo-page), [Compression](#websocket-compression) and "
                                  "[recovery](#connection-state-recovery)") == (
        "see [Demo page](../README.md#demo-page), [Compression](#websocket-compression) and "
        "[recovery](delivery.md#connection-state-recovery)")
    assert settings_doc._plain("see [recovery](#connection-state-recovery).") == \
        "see recovery\xa0(docs/delivery.md)."
    with pytest.raises(ValueError, match="#not-a-heading"):
        settings_doc._markdown("see [it](#not-a-heading)")


@pytest.mark.parametrize(("option", "document"), [("--markdown", markdown_table), ("--env-example", env_example)])
def test_command_prints_either_document(option: str, document: Callable[[], str],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert settings_doc.main([option]) == 0
    assert capsys.readouterr().out == document()
