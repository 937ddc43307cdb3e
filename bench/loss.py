"""Message loss under faults: what the emitter was told against what the riders received.

Two witnesses: the emitter records each message id's status (``sent``, ``stored``,
``refused``, or the name of the error that failed it), and each rider lists the ids it
received, in order, and how each of its connections began. A message reported ``sent``
or ``stored`` that its user never received is lost; a refused one is not (the caller
knew). The emitter sends each user's messages one after the other, in id order, so a
rider that receives an id lower than one it already has got them out of order. Nothing
here does I/O, so it is unit-tested alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ACCEPTED", "LOST_LISTED", "Counts", "account"]

ACCEPTED = frozenset({"sent", "stored"})  # what a caller is told it may rely on
LOST_LISTED = 50  # lost ids kept in the report, for looking them up in the logs


@dataclass(frozen=True)
class Counts:
    """One run's accounting. These add up: ``sent + stored + refused + failed == attempted``,
    ``delivered + lost == sent + stored``, ``received == delivered + duplicates + unexpected``."""

    attempted: int
    sent: int
    stored: int
    refused: int
    failed: int  # errors other than a refusal (Redis trouble): reported, not counted as loss
    received: int  # every message a rider got, copies included
    delivered: int  # accepted messages their user received at least once
    lost: int
    duplicates: int  # copies beyond the first
    out_of_order: int  # received after a later message of the same user
    unexpected: int  # received, but refused, failed, unknown or meant for another user
    without_offset: int  # received with no offset: a client resumes from an earlier one, and gets it again
    reconnects: int
    recovered: int  # reconnects on which socket.recovered was true
    not_recovered: int
    lost_ids: list[int] = field(default_factory=list)  # the first LOST_LISTED

    def adds_up(self) -> bool:
        return (self.sent + self.stored + self.refused + self.failed == self.attempted
                and self.delivered + self.lost == self.sent + self.stored
                and self.received == self.delivered + self.duplicates + self.unexpected
                and self.recovered + self.not_recovered == self.reconnects)


def account(statuses: Mapping[int, str], recipients: Mapping[int, str], received: Mapping[str, Sequence[int]],
            connects: Mapping[str, Sequence[Mapping[str, Any]]], *, without_offset: int = 0) -> Counts:
    """Count a run.

    :param statuses: message id -> what the emitter was told.
    :param recipients: message id -> the user it was sent to.
    :param received: user -> the ids its rider received, in order.
    :param connects: user -> its rider's connections in order, each with ``recovered``.
    :param without_offset: how many messages the riders received without an offset.
    """
    accepted = {n for n, status in statuses.items() if status in ACCEPTED}
    delivered: set[int] = set()
    duplicates = out_of_order = unexpected = 0
    for user, ids in received.items():
        seen: set[int] = set()
        highest = -1
        for n in ids:
            if n in seen:
                duplicates += 1
                continue
            seen.add(n)
            if n not in accepted or recipients.get(n) != user:
                unexpected += 1
                continue
            delivered.add(n)
            if n < highest:
                out_of_order += 1
            highest = max(highest, n)
    reconnects = [c for user_connects in connects.values() for c in user_connects[1:]]
    recovered = sum(1 for c in reconnects if c.get("recovered") is True)
    lost = sorted(accepted - delivered)
    by_status = list(statuses.values())
    return Counts(
        attempted=len(statuses), sent=by_status.count("sent"), stored=by_status.count("stored"),
        refused=by_status.count("refused"),
        failed=sum(1 for status in by_status if status not in ACCEPTED and status != "refused"),
        received=sum(len(ids) for ids in received.values()), delivered=len(delivered), lost=len(lost),
        duplicates=duplicates, out_of_order=out_of_order, unexpected=unexpected,
        without_offset=without_offset, reconnects=len(reconnects),
        recovered=recovered, not_recovered=len(reconnects) - recovered, lost_ids=lost[:LOST_LISTED])
