"""KindMap Realtime's library: what a backend service installs to send to riders, and what every
replica speaks with it.

``Emitter`` (``emitter``) and its command line ``kindmap-emit`` (``cli``) send to users through
the queue that links the replicas; beneath them, the layers every replica (``server/``) builds on
too: ``messages`` (the signed envelope, replay window, rooms, checks), ``backends`` (Redis, Redis
Cluster and the in-memory one, behind one interface), ``publisher`` and ``sending`` (putting a
message on the queue, and the rule of sending to a user). It needs redis-py, hiredis, orjson and
python-dotenv; nothing of aiohttp or python-socketio.

May import: its own modules only (tests/unit/test_layers.py holds their order), never ``server``.
"""

from .emitter import Emitter
from .errors import (
    ConfigError,
    PayloadTooLargeError,
    PublishError,
    QueueBusyError,
    QueueUnavailableError,
    RealtimeError,
    RequestError,
    UserNotConnectedError,
)
from .publisher import SendCounts, Tally
from .sending import Outcome

__version__ = "0.1.0"

__all__ = ["ConfigError", "Emitter", "Outcome", "PayloadTooLargeError", "PublishError", "QueueBusyError",
           "QueueUnavailableError", "RealtimeError", "RequestError", "SendCounts", "Tally", "UserNotConnectedError",
           "__version__"]
