"""The routing functions' own constants agree with the settings they bound."""

from __future__ import annotations

import re
from pathlib import Path

import kindmap_realtime.backends.redis
from server.config import RECOVERY_MAX_MESSAGES

ROUTING = Path(kindmap_realtime.backends.redis.__file__).with_name("routing.lua").read_text()


def test_the_most_messages_a_history_keeps_is_the_bound_of_recovery_max_messages() -> None:
    found = re.search(r"^local MOST_MESSAGES = (\d+)$", ROUTING, re.MULTILINE)

    assert found is not None and int(found.group(1)) == RECOVERY_MAX_MESSAGES.high
