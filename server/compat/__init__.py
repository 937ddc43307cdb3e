"""What this server takes from its libraries beyond their public API, in one place per library.

Each module here (``aiohttp``, ``engineio``, ``socketio``; redis-py's is the library's,
``kindmap_realtime.compat.redis``, as the backends that need it are) lists the internals it
relies on (``INTERNALS``: the name, why it is needed, since which version, what upstream change
would remove it) and gives the rest of ``server`` small functions over them, and subclasses whose
overrides of private methods hand each call to a method of a public-looking name, so that no other
module touches a library's private attribute (``Internal.pattern`` finds a use of one, and
tests/unit/compat/test_confined.py finds none outside this package). ``check()`` asserts that
every listed name still exists in the installed versions: a unit test runs it against the pinned
ones, and every replica runs it at start-up, failing with one line naming the attribute instead of
at the first message. README.md here says what each module takes over, and how to check an upgrade.

May import: the libraries, and ``kindmap_realtime.compat`` (how an internal is listed and checked).
"""

from __future__ import annotations

from kindmap_realtime.compat import Internal, LibraryContractError, assigned, check

__all__ = ["Internal", "LibraryContractError", "assigned", "check", "check_libraries"]


def check_libraries() -> None:
    """Every library's internals, as a replica starts (``create_app``)."""
    from kindmap_realtime.compat.redis import check_redis

    from .aiohttp import check_aiohttp
    from .engineio import check_engineio
    from .socketio import check_socketio

    for check_one in (check_aiohttp, check_engineio, check_socketio, check_redis):
        check_one()
