"""The import graph of ``server/``, drawn from the code: every import goes down the layers below,
never up, and no two packages import each other.

A unit is a package under ``server/`` (``eio``, ``sio``, ...) or a module at its top. The layers,
lowest first, are written once here; a unit may import only units of lower layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import server

SERVER = Path(server.__file__).parent
PACKAGES = {"backends", "compat", "eio", "http", "manager", "messages", "sio"}
LAYERS = [
    {"server", "server.errors", "server.logs", "server.metrics", "server.event_loop", "server.compat"},
    {"server.limits", "server.environment"},  # what replicas and emitters agree on, and read settings by
    {"server.messages"},  # envelopes, replay window, rooms, checks: data only
    {"server.backends"},  # Redis and the replica alone, behind one interface
    {"server.publisher"},  # putting messages on the queue: the manager's and the emitter's
    {"server.sending"},  # the rule of sending to a user: the emitter's and the HTTP API's
    {"server.config"},  # the settings, validated with the backends' and messages' own rules
    {"server.eio"},  # Engine.IO on aiohttp
    {"server.manager"},  # python-socketio's client manager, local fan-out, recovery, sending
    {"server.sio"},  # Socket.IO: servers, packet guard, gateway, auth
    {"server.emitter"},  # the library backends send with
    {"server.emit"},  # its command line
    {"server.http"},  # the emit API, the dev API, the demo page
    {"server.app"},  # the app factory
    {"server.__main__"},
]
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def unit_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in PACKAGES:
        return f"server.{parts[1]}"
    return ".".join(parts[:2])


def imports() -> list[tuple[str, str, str]]:
    """``(importing module, its unit, imported unit)`` for every import of ``server`` in ``server/``."""
    found = []
    for path in sorted(SERVER.rglob("*.py")):
        parts = list(path.relative_to(SERVER.parent).with_suffix("").parts)
        package = parts[:-1]  # a module's package; an __init__'s is its own
        module = ".".join(package if parts[-1] == "__init__" else parts)
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                base = package[:len(package) - node.level + 1] if node.level else []
                target = ".".join([*base, *([node.module] if node.module else [])])
                targets = [target] if node.module else [f"{target}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            for target in targets:
                if target == "server" or target.startswith("server."):
                    found.append((module, unit_of(module), unit_of(target)))
    return found


def test_every_unit_of_server_has_a_layer() -> None:
    units = {unit for _, unit, _ in imports()} | {unit_of(f"server.{path.stem}") for path in SERVER.glob("*.py")}
    units |= {f"server.{package}" for package in PACKAGES}

    assert units - {"server.__init__"} <= set(RANK), sorted(units - set(RANK))


def test_server_imports_only_go_down_its_layers() -> None:
    upward = [f"{module} imports {target} ({unit} may import only lower layers)"
              for module, unit, target in imports()
              if target != unit and target in RANK and RANK[target] >= RANK.get(unit, -1)]

    assert upward == []
