"""KindMap Realtime's replica: a horizontally scaled Socket.IO server for turn-by-turn guidance,
built on the library backend services install too (``kindmap_realtime``)."""

from kindmap_realtime import __version__

__all__ = ["__version__"]
