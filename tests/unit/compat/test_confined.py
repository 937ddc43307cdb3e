"""server/compat and kindmap_realtime/compat: a library internal their lists name is used nowhere else
in ``server/`` or ``kindmap_realtime/`` (docstrings and comments too: they send a reader to the
library's private code), and each one listed is used there, so the lists and the code cannot drift
apart. What a use is comes from the list (``Internal.pattern``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from types import ModuleType

import pytest

import kindmap_realtime
import server
from kindmap_realtime.compat import Internal
from kindmap_realtime.compat import redis as redis_internals
from server.compat import aiohttp as aiohttp_internals
from server.compat import engineio as engineio_internals
from server.compat import socketio as socketio_internals

PACKAGES = [Path(server.__file__).parent, Path(kindmap_realtime.__file__).parent]
COMPAT = [package / "compat" for package in PACKAGES]
MODULES = [aiohttp_internals, engineio_internals, socketio_internals, redis_internals]
RESERVED = [(internal, pattern) for module in MODULES for internal in module.INTERNALS
            if (pattern := internal.pattern()) is not None]


def _id(reserved: tuple[Internal, re.Pattern[str]]) -> str:
    return f"{reserved[0].owner}.{reserved[0].name}"


@pytest.mark.parametrize("reserved", RESERVED, ids=_id)
def test_no_module_outside_compat_uses_a_listed_internal(reserved: tuple[Internal, re.Pattern[str]]) -> None:
    internal, pattern = reserved
    found = [f"{path.relative_to(package.parent)}:{number}: {line.strip()}"
             for package in PACKAGES for path in sorted(package.rglob("*.py"))
             if not any(compat in path.parents for compat in COMPAT)
             for number, line in enumerate(path.read_text().splitlines(), start=1) if pattern.search(line)]

    assert found == [], f"{internal.owner}.{internal.name} is used outside the compat packages ({pattern.pattern})"


def _code(module: ModuleType) -> str:
    """The module's code without its ``INTERNALS``, docstrings and comments."""
    assert module.__file__ is not None
    tree = ast.parse(Path(module.__file__).read_text())
    tree.body = [node for node in tree.body
                 if not (isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] == ["INTERNALS"])]
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]
    return ast.unparse(tree)


@pytest.mark.parametrize("module", MODULES, ids=lambda module: module.__name__)
def test_each_internal_a_compat_module_lists_is_used_in_its_code(module: ModuleType) -> None:
    code = _code(module)

    unused = [internal.name for internal in module.INTERNALS
              if (pattern := internal.pattern()) is not None and not pattern.search(code)]

    assert unused == []

