"""Refusing signed envelopes that are replayed: too old, too new, or seen already.

A signature proves who wrote an envelope, not when. Someone who can SUBSCRIBE to
the channel could record a signed ``disconnect_room`` and publish it again
later, to kick the user's next socket. Signed envelopes therefore carry the
sender's clock (``ts``, ms) and a random ``id`` inside the signed body; a replica
drops one whose ``ts`` is more than the window away from its own clock (in
either direction: clocks of hosts differ), and one whose ``id`` it has seen
within the window. A new guard remembers no ids, so it drops every envelope
stamped before it existed: a recording cannot be replayed to a replica that
starts (or restarts) within the window. A sender whose clock is behind loses at
most its skew's worth of messages right after a replica starts.

Memory stays bounded whatever the rate: at most ``max_ids`` ids are remembered.
When a burst of genuine messages overflows that, the oldest ids are forgotten
and the window shrinks to match: anything not newer than the last forgotten
``ts`` is dropped as stale, so a forgotten id can never pass twice.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from ..errors import InvalidEnvelopeError

__all__ = ["DEFAULT_WINDOW", "MAX_IDS", "ReplayGuard"]

# QUEUE_REPLAY_WINDOW_SECONDS by default: also the clock skew allowed on signed presence entries.
DEFAULT_WINDOW = 30.0
MAX_IDS = 100_000  # about 25 MB at most (measured: ~250 B per id)


class ReplayGuard:
    """Remembers the ids of the last ``window`` seconds of envelopes, one guard per replica.

    :param window: seconds an envelope stays acceptable, both ways from this host's clock.
    :param max_ids: ids remembered at most (see the module docstring for what happens past it).
    :param clock: wall-clock seconds; the senders' ``ts`` is wall-clock too.
    """

    def __init__(self, window: float, *, max_ids: int = MAX_IDS, clock: Callable[[], float] = time.time) -> None:
        self._window_ms = int(window * 1000)
        self._max_ids = max_ids
        self._clock = clock
        self._seen: OrderedDict[str, int] = OrderedDict()  # id -> ts, in order of arrival
        # Envelopes with ts <= this are refused: those stamped before this guard existed
        # (it cannot know which of them were delivered already, e.g. before a restart),
        # and those whose ids were forgotten early.
        self._floor_ms = int(clock() * 1000) - 1

    def __len__(self) -> int:
        return len(self._seen)

    def check(self, message: dict[str, Any]) -> None:
        """Accept ``message`` once, or raise ``InvalidEnvelopeError`` (``stale`` / ``replayed``)."""
        ts, envelope_id = message.get("ts"), message.get("id")
        if not isinstance(ts, int) or isinstance(ts, bool) or not isinstance(envelope_id, str) or not envelope_id:
            raise InvalidEnvelopeError("a signed envelope needs an integer 'ts' and a string 'id'",
                                       reason="invalid_envelope")
        now_ms = int(self._clock() * 1000)
        self._forget_before(now_ms - self._window_ms)
        if abs(now_ms - ts) > self._window_ms or ts <= self._floor_ms:
            raise InvalidEnvelopeError(f"envelope time is {(now_ms - ts) / 1000:.1f} s off this replica's clock",
                                       reason="stale")
        if envelope_id in self._seen:
            raise InvalidEnvelopeError("envelope id already seen", reason="replayed")
        self._seen[envelope_id] = ts
        if len(self._seen) > self._max_ids:
            _, forgotten_ts = self._seen.popitem(last=False)
            self._floor_ms = max(self._floor_ms, forgotten_ts)

    def _forget_before(self, oldest_ms: int) -> None:
        # Arrival order is close to ts order; an entry stuck behind a newer one waits
        # a little longer, still counted in max_ids.
        while self._seen:
            envelope_id, ts = next(iter(self._seen.items()))
            if ts >= oldest_ms:
                return
            del self._seen[envelope_id]
