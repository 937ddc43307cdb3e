"""server/backends/local.py, LocalPresence: a user is online when their room here is not empty."""

from __future__ import annotations

import pytest

from server.backends.local import LocalPresence
from server.backends.memory.presence import MemoryPresence
from server.http.app_keys import PRESENCE
from server.manager.client_manager import LocalManager
from tests.helpers.clients import MakeClient, make_token
from tests.helpers.in_process import StartReplica
from tests.helpers.waiting import eventually


def join(manager: LocalManager, sid: str, room: str, namespace: str = "/") -> None:
    """Put a socket in a room the way the server does, without a server."""
    manager.basic_enter_room(sid, namespace, None, eio_sid=f"eio-{sid}")
    manager.basic_enter_room(sid, namespace, room, eio_sid=f"eio-{sid}")


@pytest.fixture
def manager() -> LocalManager:
    return LocalManager()


async def test_nobody_is_online_on_an_empty_replica(manager: LocalManager) -> None:
    assert await LocalPresence(manager).is_online("alice") is False


async def test_user_with_a_socket_in_their_room_is_online(manager: LocalManager) -> None:
    join(manager, "sid-1", "user:alice")

    presence = LocalPresence(manager)

    assert await presence.is_online("alice") is True
    assert await presence.is_online("bob") is False


async def test_user_is_offline_once_their_last_socket_leaves(manager: LocalManager) -> None:
    join(manager, "sid-1", "user:alice")
    join(manager, "sid-2", "user:alice")
    presence = LocalPresence(manager)

    manager.basic_leave_room("sid-1", "/", "user:alice")
    assert await presence.is_online("alice") is True
    manager.basic_leave_room("sid-2", "/", "user:alice")
    assert await presence.is_online("alice") is False


async def test_add_and_remove_do_not_override_room_membership(manager: LocalManager) -> None:
    join(manager, "sid-1", "user:alice")
    presence = LocalPresence(manager)

    await presence.add("bob", "sid-9")
    await presence.remove("alice", "sid-1")

    assert await presence.is_online("bob") is False
    assert await presence.is_online("alice") is True


async def test_presence_looks_only_at_its_namespace(manager: LocalManager) -> None:
    join(manager, "sid-1", "user:alice", namespace="/admin")

    assert await LocalPresence(manager).is_online("alice") is False
    assert await LocalPresence(manager, namespace="/admin").is_online("alice") is True


async def test_start_and_close_leave_the_answer_unchanged(manager: LocalManager) -> None:
    join(manager, "sid-1", "user:alice")
    presence = LocalPresence(manager)

    await presence.start()
    await presence.close()

    assert await presence.is_online("alice") is True


@pytest.mark.parametrize(("queue", "kind"), [(False, LocalPresence), (True, MemoryPresence)],
                         ids=["single-replica", "with-queue"])
async def test_replica_sees_a_client_online_while_connected_and_offline_after(
        start_replica: StartReplica, make_client: MakeClient, queue: bool, kind: type) -> None:
    replica = await start_replica(queue=queue)
    presence = replica.app[PRESENCE]
    assert isinstance(presence, kind)
    client = make_client()

    await client.connect(replica.url, auth={"token": make_token("alice")})
    assert await presence.is_online("alice") is True

    await client.disconnect()

    async def offline() -> bool:
        return not await presence.is_online("alice")
    await eventually(offline)
