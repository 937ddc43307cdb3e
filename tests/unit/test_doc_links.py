"""Relative links in the Markdown documentation lead somewhere: the file exists, and so does
the heading an anchor names. The README sends readers to docs/ and back; moving a section
must not leave a link pointing at nothing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cluster.processes import REPO_ROOT

DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md")), REPO_ROOT / "bench" / "README.md"]
CODE_BLOCK = re.compile(r"```.*?```", re.DOTALL)
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#+ (.+)$", re.MULTILINE)


def prose(path: Path) -> str:
    return CODE_BLOCK.sub("", path.read_text())


def anchor(heading: str) -> str:
    """The fragment GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def relative_links(path: Path) -> list[str]:
    return [target for target in LINK.findall(prose(path)) if not re.match(r"[a-z]+:", target)]


def test_anchor_follows_githubs_rule() -> None:
    assert anchor("Dev mode stays on the developer's machine") == "dev-mode-stays-on-the-developers-machine"
    assert anchor("Redis neighbours: what signing protects") == "redis-neighbours-what-signing-protects"
    assert anchor("Drain (SIGTERM)") == "drain-sigterm"


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: str(doc.relative_to(REPO_ROOT)))
def test_every_relative_link_reaches_its_file_and_heading(doc: Path) -> None:
    assert relative_links(doc), "no links found: the pattern no longer matches"
    broken = []
    for target in relative_links(doc):
        path, _, fragment = target.partition("#")
        dest = (doc.parent / path).resolve() if path else doc
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif fragment and fragment not in {anchor(h) for h in HEADING.findall(prose(dest))}:
            broken.append(f"{target}: no such heading")
    assert broken == []
