"""How KindMap Realtime lists what it takes from a library beyond its public API, and checks it.

Each ``compat`` module (``kindmap_realtime.compat.redis`` here, ``server.compat.*`` for the
replica's web libraries) lists the internals it relies on as ``Internal``s: the name, why it is
needed, since which version, what upstream change would remove it. ``check()`` asserts that every
listed name still exists in the installed versions, failing with one line naming the attribute.

May import: the libraries only.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Internal", "LibraryContractError", "assigned", "check"]


class LibraryContractError(RuntimeError):
    """An internal this server relies on is missing from an installed library."""


@dataclass(frozen=True)
class Internal:
    """``owner`` (``module`` or ``module:Class``) has ``name``: a module or class attribute, or an
    attribute its instances get in the class's own code (``self.<name> = ...``)."""

    owner: str
    name: str
    why: str
    since: str  # a version known to have it: the pin it was written against (older ones not researched)
    removed_by: str  # the upstream change that would make it unnecessary
    # A regex for the use of it that only a compat package may hold; "" derives one from the name
    # (``pattern``); None: any module may use it (public, or read by the library's users as such).
    use: str | None = ""

    def pattern(self) -> re.Pattern[str] | None:
        """What finds a use of this internal in code: ``use``, or the name as a word when it is
        private or a module's, else the name as an attribute (``.name``: as a word, a public-looking
        name like ``connected`` is in prose too)."""
        if self.use is None:
            return None
        if self.use:
            return re.compile(self.use)
        name = re.escape(self.name)
        return re.compile(rf"\b{name}\b" if self.name.startswith("_") or ":" not in self.owner else rf"\.{name}\b")

    def present(self) -> bool:
        module_name, _, class_name = self.owner.partition(":")
        try:
            target: object = importlib.import_module(module_name)
        except ImportError:
            return False
        if class_name:
            target = getattr(target, class_name, None)
            if not inspect.isclass(target):
                return False
            if any(self.name in vars(klass) for klass in target.__mro__):
                return True
            try:
                return any(f"self.{self.name} =" in inspect.getsource(klass) or
                           f"self.{self.name}: " in inspect.getsource(klass) for klass in target.__mro__[:-1])
            except (OSError, TypeError):
                return False
        return hasattr(target, self.name)


def assigned(name: str) -> str:
    """The ``use`` of an attribute that other modules may read: assigning it."""
    return rf"\.{re.escape(name)}\s*=(?!=)"


def check(internals: Iterable[Internal], library: str, version: str) -> None:
    """Raise ``LibraryContractError`` naming the first internal missing from ``library``."""
    for internal in internals:
        if not internal.present():
            raise LibraryContractError(f"{library} {version}: {internal.owner}.{internal.name} is gone; "
                                       f"it is needed because {internal.why} (see the compat README)")
