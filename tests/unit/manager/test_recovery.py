"""server/manager/recovery.py: claiming, starting and replaying sessions, with a fake session store.

No Redis and no sockets: ``send`` and ``kick`` record what they are asked to do, and the
store answers as each test sets it up (``tests/integration/test_redis_sessions.py``
pins the Redis store itself).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from kindmap_realtime.backends.base import Claim, HistoryGone, Session, SessionStore
from kindmap_realtime.errors import QueueUnavailableError
from kindmap_realtime.messages import envelope
from kindmap_realtime.messages.rooms import user_room
from server.manager.recovery import MAX_PID_LENGTH, Recovery, Tracked
from server.metrics import Metrics
from tests.helpers.envelopes import emit_envelope
from tests.helpers.waiting import eventually

KEY = b"recovery-test-signing-key-0123456789"
USER = "ana"
EIO = "eio-1"
OLD = Session("pid-1", "epoch-old", "100-0")
CLAIM = Claim("sid-1", Session("pid-1", "epoch-new", "100-0", claimed=True), "replica-a:1", vouched=True)
# Older signed messages in a history were not put there by a sender (see Recovery.max_age).
MAX_AGE = 130.0
MAX_REPLAY_BYTES = 10_000


def _position(offset: str) -> tuple[int, int]:
    generation, _, sequence = offset.partition("-")
    return int(generation), int(sequence)


class FakeStore(SessionStore):
    """Sessions as a test sets them: ``claims`` answers ``claim``, ``pages`` is the history (a
    page may be an exception to raise there), of which ``history`` gives what follows its start;
    ``during_page`` runs before each page is given."""

    def __init__(self) -> None:
        self.claim_result: Claim | str | Exception = "unknown"
        self.open_error: Exception | None = None
        self.pages: list[list[tuple[str, bytes]] | Exception] = []
        self.during_page: list[Any] = []
        self.claims: list[tuple[str, str, str | None]] = []
        self.opened: list[tuple[str, str]] = []
        self.ended: list[tuple[str, Session]] = []

    @property
    def lifetime(self) -> float:
        return 130.0

    async def open(self, user_id: str, sid: str) -> Session:
        if self.open_error is not None:
            raise self.open_error
        self.opened.append((user_id, sid))
        return Session(f"pid-of-{sid}", "epoch-1", "200-0")

    async def claim(self, user_id: str, pid: str, offset: str | None) -> Claim | str:
        self.claims.append((user_id, pid, offset))
        if isinstance(self.claim_result, Exception):
            raise self.claim_result
        return self.claim_result

    async def end(self, user_id: str, session: Session) -> None:
        self.ended.append((user_id, session))

    async def history(self, user_id: str, start: str) -> AsyncIterator[list[tuple[str, bytes]]]:
        for n, page in enumerate(self.pages):
            if n < len(self.during_page):
                self.during_page[n]()
            if isinstance(page, Exception):
                raise page
            after = [(offset, data) for offset, data in page if _position(offset) > _position(start)]
            if after or not page:
                yield after


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, list[Any], str | None]] = []
        self.kicked: list[tuple[str, str]] = []
        self.kick_error: Exception | None = None
        self.on_send: list[Any] = []  # run, one each, as the next events are sent

    async def send(self, sid: str, event: str, args: list[Any], offset: str | None) -> None:
        self.sent.append((sid, event, args, offset))
        if self.on_send:
            self.on_send.pop(0)()

    async def kick(self, user_id: str, sid: str) -> None:
        self.kicked.append((user_id, sid))
        if self.kick_error is not None:
            raise self.kick_error

    def events(self) -> list[tuple[str, list[Any], str | None]]:
        return [(event, args, offset) for _, event, args, offset in self.sent]


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def recovery(store: FakeStore, recorder: Recorder, metrics: Metrics) -> Recovery:
    return Recovery(store, metrics=metrics, open_envelope=lambda raw: envelope.decode(raw, KEY), send=recorder.send,
                    kick=recorder.kick, max_age=MAX_AGE, max_replay_bytes=MAX_REPLAY_BYTES)


def identify(auth: Mapping[str, Any]) -> str:
    if auth.get("token") != "good":
        raise ValueError("bad credentials")
    return USER


def failed(metrics: Metrics, reason: str) -> float:
    return metrics.registry.get_sample_value("kindmap_recoveries_failed_total", {"reason": reason}) or 0.0


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def stored(event: str, data: list[Any], *, user: str = USER, key: bytes = KEY, **fields: Any) -> bytes:
    return envelope.encode(emit_envelope(event, data, room=user_room(user), **fields), key)


# --- before_connect: which CONNECT packets claim a session ----------------------------------


@pytest.mark.parametrize("auth", [None, "pid", ["pid"], {"token": "good"}, {"token": "good", "recovery": False,
                                                                             "pid": "pid-1"}],
                         ids=["none", "a-string", "a-list", "no-pid", "opted-out"])
async def test_a_connect_that_names_no_session_to_recover_claims_nothing_and_counts_no_failure(
        recovery: Recovery, store: FakeStore, metrics: Metrics, auth: Any) -> None:
    await recovery.before_connect(EIO, auth, identify)

    assert store.claims == [] and recovery.claimed_sid(EIO) is None
    assert sum(failed(metrics, reason) for reason in ("unknown", "invalid_offset", "unavailable")) == 0


@pytest.mark.parametrize("pid", [7, None, "", "x" * (MAX_PID_LENGTH + 1)],
                         ids=["a-number", "null", "empty", "over-long"])
async def test_a_pid_that_cannot_name_a_session_counts_as_unknown_without_asking_the_store(
        recovery: Recovery, store: FakeStore, metrics: Metrics, pid: Any) -> None:
    await recovery.before_connect(EIO, {"token": "good", "pid": pid}, identify)

    assert store.claims == [] and failed(metrics, "unknown") == 1


@pytest.mark.parametrize("offset", ["0001-0", "01-0", "abc", "1-2-3", "1", "-1-0", "1-", " 1-0", "1-0\n",
                                    "18446744073709551616-0", "1-18446744073709551616", 5, 1.5, [], {}],
                         ids=["leading-zeros", "a-leading-zero", "letters", "three-parts", "no-sequence", "negative",
                              "empty-sequence", "a-space", "a-newline", "ms-beyond-64-bits",
                              "sequence-beyond-64-bits", "an-int", "a-float", "a-list", "an-object"])
async def test_an_offset_that_is_no_stream_entry_id_fails_as_invalid_offset_without_asking_the_store(
        recovery: Recovery, store: FakeStore, metrics: Metrics, offset: Any) -> None:
    await recovery.before_connect(EIO, {"token": "good", "pid": "pid-1", "offset": offset}, identify)

    assert store.claims == [] and failed(metrics, "invalid_offset") == 1


@pytest.mark.parametrize("offset", [None, "0-0", "1764000000000-0", "18446744073709551615-18446744073709551615"])
async def test_a_well_formed_offset_or_none_is_passed_to_the_store(
        recovery: Recovery, store: FakeStore, offset: str | None) -> None:
    auth = {"token": "good", "pid": "pid-1"} | ({} if offset is None else {"offset": offset})

    await recovery.before_connect(EIO, auth, identify)

    assert store.claims == [(USER, "pid-1", offset)]


async def test_a_connect_whose_credentials_are_refused_claims_nothing(
        recovery: Recovery, store: FakeStore, metrics: Metrics) -> None:
    """The connect handler refuses it, and answers; no failed recovery is counted for it."""
    await recovery.before_connect(EIO, {"token": "bad", "pid": "pid-1"}, identify)

    assert store.claims == [] and recovery.claimed_sid(EIO) is None
    assert failed(metrics, "unknown") == 0


async def test_a_store_out_of_reach_fails_as_unavailable(
        recovery: Recovery, store: FakeStore, metrics: Metrics) -> None:
    store.claim_result = QueueUnavailableError("Redis unreachable")

    await recovery.before_connect(EIO, {"token": "good", "pid": "pid-1"}, identify)

    assert failed(metrics, "unavailable") == 1 and recovery.claimed_sid(EIO) is None


@pytest.mark.parametrize("reason", ["unknown", "expired", "gone", "too_frequent", "taken"])
async def test_a_session_the_store_cannot_recover_is_counted_by_its_reason(
        recovery: Recovery, store: FakeStore, recorder: Recorder, metrics: Metrics, reason: str) -> None:
    store.claim_result = reason

    await recovery.before_connect(EIO, {"token": "good", "pid": "pid-1"}, identify)

    assert failed(metrics, reason) == 1
    assert recovery.claimed_sid(EIO) is None and recorder.kicked == []


async def test_a_claimed_session_gives_the_connection_its_socket_id_and_kicks_the_old_socket(
        recovery: Recovery, store: FakeStore, recorder: Recorder, metrics: Metrics) -> None:
    store.claim_result = CLAIM

    await recovery.before_connect(EIO, {"token": "good", "pid": "pid-1", "offset": "150-0"}, identify)

    assert recovery.claimed_sid(EIO) == "sid-1" and recorder.kicked == [(USER, "sid-1")]
    assert store.claims == [(USER, "pid-1", "150-0")]
    assert sum(sample(metrics, "kindmap_recoveries_failed_total", reason=r)
               for r in ("unknown", "expired", "gone", "invalid_offset", "unavailable")) == 0


async def test_a_claim_stands_when_the_old_socket_cannot_be_kicked(
        recovery: Recovery, store: FakeStore, recorder: Recorder) -> None:
    """Its replica is gone, or the queue is: the old socket closes by itself."""
    store.claim_result = CLAIM
    recorder.kick_error = RuntimeError("queue down")

    await recovery.before_connect(EIO, {"token": "good", "pid": "pid-1"}, identify)

    assert recovery.claimed_sid(EIO) == "sid-1"


async def test_an_engineio_session_that_closes_drops_its_unused_claim(
        recovery: Recovery, store: FakeStore) -> None:
    store.claim_result = CLAIM
    await recovery.before_connect(EIO, {"token": "good", "pid": "pid-1"}, identify)

    recovery.abandon(EIO)

    assert recovery.claimed_sid(EIO) is None


# --- start: the socket's session, recovered or new -----------------------------------------


async def test_a_connection_that_claimed_a_session_starts_with_it_recovered(
        recovery: Recovery, store: FakeStore) -> None:
    store.claim_result = CLAIM
    await recovery.before_connect(EIO, {"token": "good", "pid": "pid-1"}, identify)

    tracked = await recovery.start("sid-1", EIO, USER, {"token": "good", "pid": "pid-1"})

    assert tracked == Tracked(USER, CLAIM.session, True, CLAIM.session.start)
    assert store.opened == [] and recovery.pid_of("sid-1") == "pid-1"
    assert recovery.claimed_sid(EIO) is None  # used once


@pytest.mark.parametrize(("sid", "user"), [("sid-2", USER), ("sid-1", "bo")], ids=["another-sid", "another-user"])
async def test_a_claim_that_does_not_match_the_connected_socket_is_not_used(
        recovery: Recovery, store: FakeStore, sid: str, user: str) -> None:
    store.claim_result = CLAIM
    await recovery.before_connect(EIO, {"token": "good", "pid": "pid-1"}, identify)

    tracked = await recovery.start(sid, EIO, user, {"token": "good"})

    assert tracked is not None and tracked.recovered is False and store.opened == [(user, sid)]


async def test_a_new_connection_opens_a_new_session_whose_replay_starts_at_its_start(
        recovery: Recovery, store: FakeStore) -> None:
    tracked = await recovery.start("sid-9", EIO, USER, {"token": "good"})

    assert tracked == Tracked(USER, Session("pid-of-sid-9", "epoch-1", "200-0"), False, "200-0")
    assert store.opened == [(USER, "sid-9")] and recovery.pid_of("sid-9") == "pid-of-sid-9"
    assert tracked.held == []  # its live events are held until the replay


async def test_a_client_that_opted_out_gets_no_session(recovery: Recovery, store: FakeStore) -> None:
    assert await recovery.start("sid-9", EIO, USER, {"token": "good", "recovery": False}) is None
    assert store.opened == [] and recovery.pid_of("sid-9") is None


async def test_a_new_connection_goes_without_a_session_when_the_store_is_out_of_reach(
        recovery: Recovery, store: FakeStore) -> None:
    store.open_error = QueueUnavailableError("Redis unreachable")

    assert await recovery.start("sid-9", EIO, USER, {"token": "good"}) is None
    assert recovery.pid_of("sid-9") is None


# --- replay ----------------------------------------------------------------------------------


async def started(recovery: Recovery, store: FakeStore, *, recovered: bool = True) -> Tracked:
    if recovered:
        store.claim_result = CLAIM
        await recovery.before_connect(EIO, {"token": "good", "pid": "pid-1"}, identify)
    tracked = await recovery.start("sid-1", EIO, USER, {"token": "good"})
    assert tracked is not None and tracked.recovered is recovered
    return tracked


def hold(tracked: Tracked, *events: tuple[str | None, str, list[Any]]) -> Any:
    """A live event arriving for the socket while it is held, as ``LocalDelivery.emit`` keeps it."""
    def arrive() -> None:
        assert tracked.held is not None, "the socket is no longer held"
        tracked.held.extend(events)
    return arrive


async def test_a_replay_writes_the_history_in_order_then_the_held_events_it_did_not_hold(
        recovery: Recovery, store: FakeStore, recorder: Recorder, metrics: Metrics) -> None:
    tracked = await started(recovery, store)
    store.pages = [[("101-0", stored("step", [{"n": 1}])), ("102-0", stored("step", [{"n": 2}]))],
                   [("103-0", stored("step", [{"n": 3}]))]]
    store.during_page = [hold(tracked, ("102-0", "step", [{"n": 2}])),  # also in the history: once only
                         hold(tracked, ("104-0", "step", [{"n": 4}]), (None, "position", ["City Hall"]),
                              ("103-0", "step", [{"n": 3}]), ("105-0", "step", [{"n": 5}]))]

    assert await recovery.replay("sid-1") == 3

    assert recorder.events() == [("step", [{"n": 1}], "101-0"), ("step", [{"n": 2}], "102-0"),
                                 ("step", [{"n": 3}], "103-0"), ("step", [{"n": 4}], "104-0"),
                                 ("position", ["City Hall"], None), ("step", [{"n": 5}], "105-0")]
    assert tracked.held is None  # live events go straight to the socket from now on
    assert sample(metrics, "kindmap_recoveries_total") == 1
    assert sample(metrics, "kindmap_messages_replayed_total") == 3


async def test_events_that_arrive_while_held_events_are_written_are_written_too(
        recovery: Recovery, store: FakeStore, recorder: Recorder) -> None:
    tracked = await started(recovery, store)
    store.during_page = [hold(tracked, ("101-0", "step", [{"n": 1}]))]
    store.pages = [[]]
    recorder.on_send = [hold(tracked, ("102-0", "step", [{"n": 2}]))]

    await recovery.replay("sid-1")

    assert recorder.events() == [("step", [{"n": 1}], "101-0"), ("step", [{"n": 2}], "102-0")]
    assert tracked.held is None


async def test_a_new_sessions_replay_counts_no_recovery(
        recovery: Recovery, store: FakeStore, recorder: Recorder, metrics: Metrics) -> None:
    """What was sent between its start and its presence being written reaches it all the same."""
    await started(recovery, store, recovered=False)
    store.pages = [[("201-0", stored("step", [{"n": 1}]))]]

    assert await recovery.replay("sid-1") == 1

    assert recorder.events() == [("step", [{"n": 1}], "201-0")]
    assert sample(metrics, "kindmap_recoveries_total") == 0
    assert sample(metrics, "kindmap_messages_replayed_total") == 0


@pytest.mark.parametrize("cut", [HistoryGone("trimmed"), QueueUnavailableError("Redis unreachable")],
                         ids=["history-gone", "store-unreachable"])
async def test_a_replay_cut_short_is_counted_and_still_releases_the_held_events(
        recovery: Recovery, store: FakeStore, recorder: Recorder, metrics: Metrics, cut: Exception) -> None:
    tracked = await started(recovery, store)
    store.pages = [[("101-0", stored("step", [{"n": 1}]))], cut]
    store.during_page = [hold(tracked, ("101-0", "step", [{"n": 1}]), ("102-0", "step", [{"n": 2}]))]

    assert await recovery.replay("sid-1") == 1

    assert recorder.events() == [("step", [{"n": 1}], "101-0"), ("step", [{"n": 2}], "102-0")]
    assert failed(metrics, "lost_during_replay") == 1 and tracked.held is None


async def test_a_replay_that_fails_unexpectedly_still_stops_holding_the_sockets_live_events(
        recovery: Recovery, store: FakeStore, recorder: Recorder) -> None:
    """Else the socket would get nothing live for the rest of its connection."""
    tracked = await started(recovery, store)
    store.pages = [RuntimeError("a bug")]
    store.during_page = [hold(tracked, ("101-0", "step", [{"n": 1}]))]

    with pytest.raises(RuntimeError):
        await recovery.replay("sid-1")

    assert recorder.events() == [("step", [{"n": 1}], "101-0")] and tracked.held is None


@pytest.mark.parametrize(("entry", "reason"), [
    (stored("step", [{"n": 0}], key=b"another-key-" * 3), "bad_signature"),
    (stored("step", [{"n": 0}], user="bo"), "invalid_envelope"),
    (envelope.encode(emit_envelope("step", [{"n": 0}], room=None), KEY), "invalid_envelope"),
    (envelope.encode({"method": "disconnect_room", "namespace": "/", "room": user_room(USER),
                      "host_id": "h"}, KEY), "invalid_envelope"),
    (stored("step", [{"n": 0}], binary=True), "invalid_envelope"),
    (stored("step", [{"n": 0}], callback=["sid-1", "/", 1]), "invalid_envelope"),
    (b"not json", "bad_signature"),
], ids=["bad-signature", "another-users-room", "a-broadcast", "a-non-emit-method", "binary", "with-a-callback",
        "not-an-envelope"])
async def test_an_invalid_envelope_in_a_history_is_dropped_and_counted_not_sent(
        recovery: Recovery, store: FakeStore, recorder: Recorder, metrics: Metrics, entry: bytes,
        reason: str) -> None:
    tracked = await started(recovery, store)
    store.pages = [[("101-0", entry), ("102-0", stored("step", [{"n": 2}]))]]
    store.during_page = [hold(tracked, ("101-0", "step", [{"n": 0}]))]  # dropped from the history: not sent live

    assert await recovery.replay("sid-1") == 1

    assert recorder.events() == [("step", [{"n": 2}], "102-0")]
    assert sample(metrics, "kindmap_messages_dropped_total", reason=reason) == 1
    assert sample(metrics, "kindmap_messages_replayed_total") == 1


async def test_a_socket_without_a_session_has_nothing_to_replay(
        recovery: Recovery, recorder: Recorder) -> None:
    assert await recovery.replay("sid-unknown") == 0
    assert recorder.sent == []


async def test_a_forgotten_socket_keeps_no_session(recovery: Recovery, store: FakeStore) -> None:
    tracked = await started(recovery, store)

    assert recovery.forget("sid-1") is tracked
    assert recovery.pid_of("sid-1") is None and recovery.forget("sid-1") is None


# --- claims that hold under hostility --------------------------------------------------------


async def test_a_claim_whose_old_socket_no_signed_presence_vouches_for_kicks_nobody(
        recovery: Recovery, store: FakeStore, recorder: Recorder) -> None:
    """A session entry anyone could write must never make a replica disconnect a socket."""
    store.claim_result = Claim("sid-1", CLAIM.session, "replica-a:1", vouched=False)

    await recovery.before_connect(EIO, {"token": "good", "pid": "pid-1"}, identify)

    assert recovery.claimed_sid(EIO) == "sid-1" and recorder.kicked == []


async def test_what_a_claim_read_is_replayed_before_what_the_history_received_since(
        recovery: Recovery, store: FakeStore, recorder: Recorder, metrics: Metrics) -> None:
    store.claim_result = CLAIM
    page = [("101-0", stored("step", [{"n": 1}])), ("102-0", stored("step", [{"n": 2}]))]
    store.pages = [page]
    await recovery.before_connect(EIO, {"token": "good", "pid": "pid-1"}, identify)
    tracked = await recovery.start("sid-1", EIO, USER, {"token": "good"})
    assert tracked is not None and [offset for offset, _ in tracked.missed] == ["101-0", "102-0"]
    page.append(("103-0", stored("step", [{"n": 3}])))  # arrived after the claim read

    assert await recovery.replay("sid-1") == 3

    assert recorder.events() == [("step", [{"n": 1}], "101-0"), ("step", [{"n": 2}], "102-0"),
                                 ("step", [{"n": 3}], "103-0")]
    assert sample(metrics, "kindmap_messages_replayed_total") == 3


async def test_a_client_that_missed_more_bytes_than_a_replay_writes_gets_a_new_session(
        recovery: Recovery, store: FakeStore, recorder: Recorder, metrics: Metrics) -> None:
    big = stored("step", [{"text": "x" * (MAX_REPLAY_BYTES // 2)}])
    store.claim_result = CLAIM
    store.pages = [[("101-0", big)], [("102-0", big)], [("103-0", big)]]

    await recovery.before_connect(EIO, {"token": "good", "pid": "pid-1"}, identify)

    assert recovery.claimed_sid(EIO) is None and failed(metrics, "too_large") == 1
    assert store.ended == [(USER, CLAIM.session)]  # taken over, then ended: it cannot be replayed
    assert recorder.kicked == []


async def test_a_claim_whose_history_goes_while_it_is_read_gets_a_new_session(
        recovery: Recovery, store: FakeStore, metrics: Metrics) -> None:
    store.claim_result = CLAIM
    store.pages = [[("101-0", stored("step", [{"n": 1}]))], HistoryGone("trimmed")]

    await recovery.before_connect(EIO, {"token": "good", "pid": "pid-1"}, identify)

    assert recovery.claimed_sid(EIO) is None and failed(metrics, "gone") == 1
    assert store.ended == [(USER, CLAIM.session)]


async def test_a_second_connect_claiming_a_pid_being_claimed_here_gets_a_new_session_without_asking_the_store(
        recovery: Recovery, store: FakeStore, metrics: Metrics) -> None:
    store.claim_result = CLAIM
    await recovery.before_connect(EIO, {"token": "good", "pid": "pid-1"}, identify)

    await recovery.before_connect("eio-2", {"token": "good", "pid": "pid-1"}, identify)

    assert recovery.claimed_sid(EIO) == "sid-1" and recovery.claimed_sid("eio-2") is None
    assert len(store.claims) == 1 and failed(metrics, "taken") == 1


async def test_a_pid_may_be_claimed_again_here_once_the_claim_before_was_used_or_abandoned(
        recovery: Recovery, store: FakeStore) -> None:
    store.claim_result = CLAIM
    await recovery.before_connect(EIO, {"token": "good", "pid": "pid-1"}, identify)
    await recovery.start("sid-1", EIO, USER, {"token": "good"})
    recovery.abandon(EIO)  # its socket joined: the gateway's on_connect is done
    await recovery.before_connect("eio-2", {"token": "good", "pid": "pid-1"}, identify)
    recovery.abandon("eio-2")

    await recovery.before_connect("eio-3", {"token": "good", "pid": "pid-1"}, identify)

    assert len(store.claims) == 3 and recovery.claimed_sid("eio-3") == "sid-1"


async def test_a_pid_stays_claimed_here_until_its_socket_has_joined(recovery: Recovery, store: FakeStore) -> None:
    """A second claim while the first socket is still joining would get the same socket id."""
    store.claim_result = CLAIM
    await recovery.before_connect(EIO, {"token": "good", "pid": "pid-1"}, identify)
    await recovery.start("sid-1", EIO, USER, {"token": "good"})

    await recovery.before_connect("eio-2", {"token": "good", "pid": "pid-1"}, identify)

    assert len(store.claims) == 1 and recovery.claimed_sid("eio-2") is None


async def test_a_socket_that_leaves_during_its_replay_is_written_nothing_more(
        recovery: Recovery, store: FakeStore, recorder: Recorder) -> None:
    """A newer claim of its session kicks it: its replay must not go on writing (nor reading)."""
    await started(recovery, store)
    store.pages = [[("101-0", stored("step", [{"n": 1}])), ("102-0", stored("step", [{"n": 2}]))],
                   [("103-0", stored("step", [{"n": 3}]))]]
    recorder.on_send = [lambda: recovery.forget("sid-1")]

    await recovery.replay("sid-1")

    assert recorder.events() == [("step", [{"n": 1}], "101-0")]


# --- catching up after the queue heard a user again ---------------------------------------------


async def live(recovery: Recovery, store: FakeStore, last_offset: str) -> Tracked:
    """A socket past its replay, written stored events up to ``last_offset``."""
    tracked = await started(recovery, store, recovered=False)
    await recovery.replay("sid-1")
    tracked.last_offset = last_offset
    return tracked


async def test_a_paused_socket_is_caught_up_from_its_last_offset_then_gets_its_held_events_once_each(
        recovery: Recovery, store: FakeStore, recorder: Recorder, metrics: Metrics) -> None:
    tracked = await live(recovery, store, "9-1")
    recovery.pause([USER, "someone-else"])
    hold(tracked, ("9-3", "step", [{"n": 3}]), ("9-4", "step", [{"n": 4}]))()  # live again, meanwhile
    store.pages = [[("9-1", stored("step", [{"n": 1}])), ("9-2", stored("step", [{"n": 2}])),
                    ("9-3", stored("step", [{"n": 3}]))]]

    await recovery.catch_up([USER])

    assert recorder.events() == [("step", [{"n": 2}], "9-2"), ("step", [{"n": 3}], "9-3"),
                                 ("step", [{"n": 4}], "9-4")]
    assert tracked.held is None
    assert sample(metrics, "kindmap_messages_caught_up_total") == 2


async def test_a_catch_up_whose_history_is_gone_is_counted_and_still_writes_the_held_events(
        recovery: Recovery, store: FakeStore, recorder: Recorder, metrics: Metrics) -> None:
    tracked = await live(recovery, store, "9-1")
    recovery.pause([USER])
    hold(tracked, ("9-5", "step", [{"n": 5}]))()
    store.pages = [HistoryGone("trimmed past 9-1")]

    await recovery.catch_up([USER])

    assert recorder.events() == [("step", [{"n": 5}], "9-5")]
    assert failed(metrics, "lost_during_catch_up") == 1


async def test_a_socket_not_paused_is_not_caught_up(recovery: Recovery, store: FakeStore, recorder: Recorder) -> None:
    await live(recovery, store, "9-1")
    store.pages = [[("9-2", stored("step", [{"n": 2}]))]]

    await recovery.catch_up([USER])

    assert recorder.events() == []


async def test_a_stored_event_that_skips_offsets_is_held_until_the_gap_is_caught_up_from_the_history(
        recovery: Recovery, store: FakeStore, recorder: Recorder) -> None:
    tracked = await live(recovery, store, "9-1")
    store.pages = [[("9-2", stored("step", [{"n": 2}])), ("9-3", stored("step", [{"n": 3}])),
                    ("9-4", stored("step", [{"n": 4}]))]]

    assert recovery.fills_gap("sid-1", "9-4", "step", [{"n": 4}])
    await eventually(lambda: tracked.held is None, what="the gap caught up")

    assert recorder.events() == [("step", [{"n": 2}], "9-2"), ("step", [{"n": 3}], "9-3"),
                                 ("step", [{"n": 4}], "9-4")]


@pytest.mark.parametrize("offset", ["9-2", "9-1", "10-7"])
async def test_the_next_offset_an_older_one_or_another_generations_is_no_gap(
        recovery: Recovery, store: FakeStore, offset: str) -> None:
    tracked = await live(recovery, store, "9-1")

    assert not recovery.fills_gap("sid-1", offset, "step", [])
    assert tracked.held is None
