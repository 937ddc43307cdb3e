"""The memory queue transport: envelopes handed from one replica's sender to others' inboxes.

It keeps the Redis transport's promises in one process: a message for a user reaches
only the replicas holding a socket of theirs, in the same step as the presence lookup
and the storing for recovery; one stored for recovery comes back to the sender too
when it holds the user (each replica writes a user's stored messages in the order of
their offsets, ``QueueManager.emit``); one not stored never does.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator

from ...errors import PublishError, QueueUnavailableError
from ...log_throttle import LogThrottle
from ..base import QueueTransport, Received, Routed
from .broker import Member, MemoryBroker

__all__ = ["MemoryTransport"]

logger = logging.getLogger(__name__)


class MemoryTransport(QueueTransport):
    """A replica's (or emitter's) end of a ``MemoryBroker``: ``member`` names it and holds its inbox.

    Nothing here fails but an inbox nobody reads filling up: every step is a few dict
    operations in this process.
    """

    def __init__(self, broker: MemoryBroker, member: Member) -> None:
        self.broker = broker
        self.member = member
        self.channels: set[str] = set()  # what it listens to
        self._throttle = LogThrottle()

    async def connect(self) -> None:
        """Nothing to reach."""

    async def close(self) -> None:
        for channel in list(self.channels):
            await self.unsubscribe(channel)

    async def publish(self, channel: str, data: bytes) -> int:
        others = self.broker.listeners(channel) - {self.member}
        return sum(self._put(member, (data, None)) for member in others)

    async def publish_to_user(self, channel: str, user_id: str, data: bytes, *, volatile: bool = False) -> Routed:
        user = self.broker.user(channel, user_id)
        if user is None:
            return Routed(False)
        offset = None
        if not volatile and user.history is not None and user.recoverable(self.broker.now()):
            offset = user.history.append(data, self.broker.now())
            if offset is not None:
                self.broker.settle(channel, user_id)
        holders = set(user.sockets.values())
        unreached = {member for member in holders
                     if (offset is not None or member is not self.member) and not self._put(member, (data, offset))}
        if unreached and holders <= unreached:
            raise PublishError("the replicas holding this user are not reading their inboxes (full); not delivered")
        return Routed(bool(holders), offset)

    def _put(self, member: Member, received: Received) -> bool:
        if member.inbox.put(received):
            return True
        held = self._throttle.allow("inbox_full")
        if held is not None:
            logger.error("a replica's inbox is full: it does not read; the message is dropped for it",
                         extra={"replica": member.name, "suppressed": held})
        return False

    async def subscribe(self, channel: str) -> None:
        self.channels.add(channel)
        self.broker.listen(channel, self.member)

    async def unsubscribe(self, channel: str) -> None:
        self.channels.discard(channel)
        self.broker.stop_listening(channel, self.member)
        self.member.inbox.wake()

    async def messages(self) -> AsyncGenerator[Received, None]:
        """What was sent to this replica, in order; once it listens to no channel, what is still
        in its inbox, then ``QueueUnavailableError``."""
        inbox = self.member.inbox
        while True:
            received = inbox.take()
            if received is not None:
                yield received
            elif not self.channels:
                raise QueueUnavailableError("not subscribed")
            else:
                await inbox.wait()

    async def ping(self) -> bool:
        return True
