"""KindMap Realtime's replica: a horizontally scaled Socket.IO server for turn-by-turn guidance,
built on the library backend services install too (``kindmap_realtime``).

Each package here says what it adapts and what it may import; tests/unit/test_layers.py holds
the order of all of them.
"""

from kindmap_realtime import __version__

__all__ = ["__version__"]
