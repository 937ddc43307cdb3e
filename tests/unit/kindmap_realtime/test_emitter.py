"""kindmap_realtime/emitter.py on an in-memory backend: the emitter builds from the same backend parts as a replica."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from kindmap_realtime.emitter import Emitter
from kindmap_realtime.errors import ConfigError, UserNotConnectedError
from kindmap_realtime.publisher import Tally
from tests.fakes.memory_backend import FlakyBroker, memory_backend
from tests.helpers.clients import RecordingClient, connected, make_token


async def test_emitter_on_the_replicas_backend_reaches_a_connected_user(
        broker: FlakyBroker, start_replica: Callable[..., Awaitable[Any]],
        make_client: Callable[..., RecordingClient]) -> None:
    replica = await start_replica()
    client = make_client()
    await client.connect(replica.url, auth={"token": make_token("alice")})

    async with Emitter(backend=memory_backend(broker)) as emitter:
        await emitter.send_to_user("alice", "arrival", {"station": "City Hall"})

    assert await client.wait_for("arrival") == {"station": "City Hall"}


async def test_emitter_refuses_a_user_connected_nowhere(broker: FlakyBroker,
                                                        start_replica: Callable[..., Awaitable[Any]]) -> None:
    await start_replica()

    async with Emitter(backend=memory_backend(broker)) as emitter:
        with pytest.raises(UserNotConnectedError):
            await emitter.send_to_user("nobody", "arrival", {})
    assert broker.waiting() == 0  # the one round trip addressed nobody


def test_emitter_needs_a_url_or_a_backend() -> None:
    with pytest.raises(ValueError, match="redis_url or backend"):
        Emitter()


async def test_send_many_reports_each_message_sent_or_refused_and_why(
        broker: FlakyBroker, start_replica: Callable[..., Awaitable[Any]], make_client: Callable[..., Any]) -> None:
    replica = await start_replica()
    alice = await connected(make_client, replica, "alice")
    bob = await connected(make_client, replica, "bob")

    async with Emitter(backend=memory_backend(broker), max_message_bytes=1024) as emitter:
        outcomes = await emitter.send_many([
            ("alice", "step", {"n": 1}),
            ("nobody", "step", {"n": 2}),
            ("has space", "step", {}),
            ("bob", "connect", {}),
            ("bob", "step", "x" * 2000),
            ("bob", "step", {"n": 3}),
        ])
        assert isinstance(emitter.counts, Tally)
        dropped = emitter.counts.dropped["user_not_connected"]

    assert [type(o.error).__name__ if o.error else "sent" for o in outcomes] == [
        "sent", "UserNotConnectedError", "RequestError", "RequestError", "PayloadTooLargeError", "sent"]
    assert (outcomes[0].user_id, outcomes[0].sent) == ("alice", True)
    assert await alice.wait_for("step") == {"n": 1}
    assert await bob.wait_for("step") == {"n": 3}
    assert bob.received("step") == [{"n": 3}]
    assert dropped == 1


def test_emitter_checks_presence_with_the_replicas_replay_window_as_clock_skew(
        broker: FlakyBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: dict[str, Any] = {}

    def open_backend(url: str, **options: Any) -> Any:
        opened.update(options)
        return memory_backend(broker)

    monkeypatch.setattr("kindmap_realtime.emitter.open_backend", open_backend)

    Emitter("redis://127.0.0.1:6379/0", replay_window=90)

    assert opened["clock_skew"] == 90


@pytest.mark.parametrize("window", [0.5, 301, float("nan")])
def test_emitter_refuses_a_replay_window_out_of_bounds(window: float) -> None:
    with pytest.raises(ConfigError, match="replay_window"):
        Emitter("redis://127.0.0.1:6379/0", replay_window=window)


async def test_emitter_counts_what_it_publishes_and_drops_into_the_counts_it_is_given(
        broker: FlakyBroker, start_replica: Callable[..., Awaitable[Any]], make_client: Callable[..., Any]) -> None:
    replica = await start_replica()
    await connected(make_client, replica, "alice")
    counts = Tally()

    async with Emitter(backend=memory_backend(broker), counts=counts) as emitter:
        await emitter.send_to_user("alice", "step", {"n": 1})
        with pytest.raises(UserNotConnectedError):
            await emitter.send_to_user("nobody", "step", {"n": 2})

    assert (counts.published, dict(counts.dropped)) == (2, {"user_not_connected": 1})


@pytest.mark.parametrize(("key", "reason"), [("", "must not be blank"), (" " * 40, "must not be blank"),
                                             ("k" * 31, "must be at least 32 bytes")], ids=["empty", "spaces", "short"])
def test_emitter_refuses_a_signing_key_no_replica_would_take(key: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=f"signing_key {reason}"):
        Emitter("redis://127.0.0.1:6379/0", signing_key=key)
