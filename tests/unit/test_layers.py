"""The import graph of ``kindmap_realtime/`` and ``server/``, drawn from the code: every import goes
down the layers below, never up, and no two units import each other.

A unit is a package of either (``kindmap_realtime.backends``, ``server.eio``, ...) or a module at
its top. The layers, lowest first, are written once here; a unit may import only units of lower
layers. The library's layers all lie below the replica's: ``kindmap_realtime``, which backend
services install, never imports ``server``, nor the web libraries the replica runs on.
"""

from __future__ import annotations

import ast
from pathlib import Path

import kindmap_realtime
import server

ROOTS = {"kindmap_realtime": Path(kindmap_realtime.__file__).parent, "server": Path(server.__file__).parent}
PACKAGES = {"kindmap_realtime": {"backends", "compat", "messages"},
            "server": {"compat", "eio", "http", "manager", "sio"}}
LAYERS = [
    # kindmap_realtime: what a backend service installs
    {"kindmap_realtime.errors", "kindmap_realtime.log_throttle", "kindmap_realtime.event_loop",
     "kindmap_realtime.compat"},
    {"kindmap_realtime.limits", "kindmap_realtime.environment"},  # what replicas and emitters agree on
    {"kindmap_realtime.messages"},  # envelopes, replay window, rooms, checks: data only
    {"kindmap_realtime.backends"},  # Redis, Redis Cluster and memory, behind one interface
    {"kindmap_realtime.publisher"},  # putting messages on the queue: the manager's and the emitter's
    {"kindmap_realtime.sending"},  # the rule of sending to a user: the emitter's and the HTTP API's
    {"kindmap_realtime.emitter"},  # what backend services send with
    {"kindmap_realtime.cli"},  # its command line, kindmap-emit
    {"kindmap_realtime"},  # the names a backend service imports
    # server: the replica
    {"server", "server.logs", "server.metrics", "server.compat"},
    {"server.config"},  # the settings, validated with the library's own rules
    {"server.eio"},  # Engine.IO on aiohttp
    {"server.manager"},  # python-socketio's client manager, local fan-out, recovery, sending
    {"server.sio"},  # Socket.IO: servers, packet guard, gateway, auth
    {"server.http"},  # the emit API, the dev API, the demo page
    {"server.app"},  # the app factory
    {"server.__main__"},
]
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}
# What the replica runs on and a backend service must not have to install (uvloop, which the
# command line uses where it is installed, is not required).
WEB_STACK = {"aiohttp", "socketio", "engineio", "prometheus_client", "jwt"}


def unit_of(module: str) -> str:
    """A package's top name and the module or package under it: ``server.eio.socket`` is ``server.eio``."""
    return ".".join(module.split(".")[:2])


def _imports_of(root: str) -> list[tuple[str, str]]:
    """``(importing module, imported module)`` for every import in the package ``root``."""
    found = []
    for path in sorted(ROOTS[root].rglob("*.py")):
        parts = list(path.relative_to(ROOTS[root].parent).with_suffix("").parts)
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
            found += [(module, target) for target in targets]
    return found


def imports() -> list[tuple[str, str, str]]:
    """``(importing module, its unit, imported unit)`` for every import of either package in either."""
    return [(module, unit_of(module), unit_of(target)) for root in ROOTS for module, target in _imports_of(root)
            if target.split(".")[0] in ROOTS]


def test_every_unit_has_a_layer() -> None:
    units = {unit for _, unit, _ in imports()}
    units |= {f"{root}.{path.stem}" for root, folder in ROOTS.items() for path in folder.glob("*.py")
              if path.stem != "__init__"}
    units |= {f"{root}.{package}" for root, packages in PACKAGES.items() for package in packages}

    assert units <= set(RANK), sorted(units - set(RANK))


def test_imports_only_go_down_the_layers() -> None:
    upward = [f"{module} imports {target} ({unit} may import only lower layers)"
              for module, unit, target in imports()
              if target != unit and target in RANK and RANK[target] >= RANK.get(unit, -1)]

    assert upward == []


def test_the_library_imports_nothing_of_the_replica_or_its_web_stack() -> None:
    forbidden = [f"{module} imports {target}" for module, target in _imports_of("kindmap_realtime")
                 if target.split(".")[0] in WEB_STACK | {"server"}]

    assert forbidden == []
