"""What every session store decides alike when a session is claimed, whatever keeps it.

A client that reconnects gets the same answer from every backend: where its replay starts
(or why it cannot), and whether it claims too often. The Redis store decides with what its
functions read; the memory store with its own maps; both through these rules.

Claims are bounded by a generic cell rate algorithm: one session may be claimed
``CLAIM_BURST`` times at once, then once per ``CLAIM_INTERVAL_MS``; its entry carries
``tat``, when the next claim is free of delay.
"""

from __future__ import annotations

__all__ = ["CLAIM_BURST", "CLAIM_INTERVAL_MS", "HISTORY_PAGE", "next_claim_tat", "replay_start", "too_frequent"]

# Elements a history read returns at a time.
HISTORY_PAGE = 100
# A rider whose signal comes and goes reconnects a few times in a row; a client claiming in a
# loop is slowed to one claim per interval.
CLAIM_BURST = 3
CLAIM_INTERVAL_MS = 5_000


def too_frequent(tat: int, now: int) -> bool:
    """Whether a session whose next claim is free at ``tat`` (ms) has used up its burst at ``now``."""
    return tat - now > (CLAIM_BURST - 1) * CLAIM_INTERVAL_MS


def next_claim_tat(tat: int, now: int) -> int:
    """A session's ``tat`` once claimed at ``now``."""
    return max(tat, now) + CLAIM_INTERVAL_MS


def replay_start(session_start: str, offset: str | None, generation: str | None, *, base: int, length: int,
                 unstored: int, limit: int) -> str | None:
    """Where a claimed session's replay starts: after the later of its own start and the client's
    ``offset`` (one of the current history; an older one starts nothing earlier), or ``None``
    when it cannot be recovered: the history is lost or of another generation, the offset is
    beyond anything it held, what follows the start was trimmed or went unstored (``unstored``:
    the sequence number of the last such marker, -1 for none), or more than ``limit`` followed.

    A history of ``generation`` numbers its elements ``base + 1`` to ``base + length - 1``.
    """
    if generation is None:
        return None
    own_generation, _, own_last = session_start.partition("-")
    if own_generation != generation:
        return None
    after, last = int(own_last), base + length - 1
    if offset is not None:
        offset_generation, _, offset_last = offset.partition("-")
        if offset_generation == generation and int(offset_last) > after:
            if int(offset_last) > last:
                return None
            after = int(offset_last)
    if after < base or unstored > after or last - after > limit:
        return None
    return f"{generation}-{after}"
