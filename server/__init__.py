"""KindMap Realtime: a horizontally scaled Socket.IO server for turn-by-turn guidance."""

__version__ = "0.1.0"

__all__ = ["__version__"]
