"""What this server takes from its libraries beyond their public API, in one place per library.

Each module here (``aiohttp``, ``engineio``, ``socketio``, ``redis``) lists the internals it
relies on (``INTERNALS``: the name, why it is needed, since which version, what upstream change
would remove it) and gives the rest of ``server`` small functions over them, and subclasses whose
overrides of private methods hand each call to a method of a public-looking name, so that no other
module touches a library's private attribute (``Internal.pattern`` finds a use of one, and
tests/unit/compat/test_confined.py finds none outside this package). ``check()`` asserts that
every listed name still exists in the installed versions: a unit test runs it against the pinned
ones, and every replica runs it at start-up, failing with one line naming the attribute instead of
at the first message. README.md here says what each module takes over, and how to check an upgrade.

May import: the libraries only.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Internal", "LibraryContractError", "assigned", "check", "check_libraries"]


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
    # A regex for the use of it that only server/compat may hold; "" derives one from the name
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
                                       f"it is needed because {internal.why} (server/compat)")


def check_libraries() -> None:
    """Every library's internals, as a replica starts (``create_app``)."""
    from .aiohttp import check_aiohttp
    from .engineio import check_engineio
    from .redis import check_redis
    from .socketio import check_socketio

    for check_one in (check_aiohttp, check_engineio, check_socketio, check_redis):
        check_one()
