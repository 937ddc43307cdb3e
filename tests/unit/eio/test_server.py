"""server/eio/server.py, server/eio/socket.py, server/sio/server.py: bounded outgoing buffers, whole
long-poll bodies, violations."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from engineio import json as engineio_json
from engineio import packet as eio_packet
from socketio import packet as sio_packet

from server.app import create_app
from server.config import Settings
from server.eio.fanout import text_frame
from server.eio.outgoing import OutgoingBuffer
from server.eio.socket import GuardedSocket
from server.http.app_keys import PRESENCE, SIO
from server.sio.packet_json import SocketIOJson
from server.sio.server import CodecPacket, SocketServer
from tests.helpers.clients import MakeClient, connected, make_token
from tests.helpers.in_process import Replica, StartReplica, sample
from tests.helpers.raw_client import OpenRaw
from tests.helpers.raw_engineio import RECORD_SEPARATOR, engineio_url, open_polling_session, poll
from tests.helpers.waiting import eventually


def test_the_server_codes_packets_through_orjson_without_changing_python_socketios_own_packet() -> None:
    server = SocketServer(async_mode="aiohttp", max_outgoing_bytes=1024)
    assert server.packet_class is CodecPacket
    assert CodecPacket.json is SocketIOJson
    assert sio_packet.Packet.json is engineio_json  # other servers and clients of the process keep theirs


@pytest.mark.parametrize("data", [
    ["nav", {"station": "City Hall", "line": 2}], ["nav", b"\x00"], ["nav", {"map": [1, bytearray(b"x")]}],
    ["nav", {"id": 2**70}], ["nav", {"id": 2**70, "blob": b"x"}], ["nav", (b"in a tuple",)], ["nav", {1: b"x"}],
], ids=["json", "bytes", "nested-bytearray", "beyond-64-bits", "beyond-64-bits-and-bytes", "tuple", "int-key"])
def test_packets_are_binary_exactly_when_python_socketios_own_say_so(data: list[Any]) -> None:
    assert CodecPacket.data_is_binary(data) == sio_packet.Packet.data_is_binary(data)
    assert CodecPacket(sio_packet.EVENT, data=data).packet_type == sio_packet.Packet(
        sio_packet.EVENT, data=data).packet_type


async def test_every_socket_is_guarded_and_every_websocket_checked(start_replica: StartReplica,
                                                                   make_client: MakeClient) -> None:
    """Trips when a python-engineio upgrade changes how sockets, queues or WebSockets are made."""
    replica = await start_replica(queue=False)
    await connected(make_client, replica, "alice")

    eio = replica.app[SIO].eio
    [socket] = eio.sockets.values()
    assert type(socket) is GuardedSocket
    assert isinstance(socket.queue, OutgoingBuffer)
    assert socket.transport is not None and not socket.transport.is_closing()
    assert socket._websocket is not None  # served by GuardedSocket.serve_websocket


async def test_an_idle_websocket_keeps_no_writer_task_and_a_packet_wakes_one(
        start_replica: StartReplica, make_client: MakeClient) -> None:
    replica = await start_replica(queue=False)
    client = await connected(make_client, replica, "alice")
    [socket] = replica.app[SIO].eio.sockets.values()
    await eventually(lambda: socket._write_task is None, what="the writer done with the handshake's packets")

    await replica.app[SIO].emit("pong", {"n": 1}, to=replica.app[SIO].manager.sid_from_eio_sid(socket.sid, "/"))

    assert await client.wait_for("pong") == {"n": 1}
    await eventually(lambda: socket._write_task is None, what="the writer ended again")


async def _handshake_headers(url: str, *, compress: int) -> tuple[int, dict[str, str]]:
    """A raw WebSocket Engine.IO session offering permessage-deflate as browsers do: the negotiated
    window bits (0: none) and the headers of the server's 101 response, read by a trace hook."""
    headers: dict[str, str] = {}

    async def on_request_end(_: Any, __: Any, params: aiohttp.TraceRequestEndParams) -> None:
        headers.update(params.response.headers)

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_request_end)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session, session.ws_connect(
            engineio_url(url, transport="websocket"), compress=compress) as ws:
        opened = await ws.receive_str(timeout=5)
        assert opened.startswith("0{")
        return ws.compress, headers


async def test_permessage_deflate_is_declined_by_default(start_replica: StartReplica) -> None:
    replica = await start_replica(queue=False)

    negotiated, headers = await _handshake_headers(replica.url, compress=15)

    assert negotiated == 0
    assert "Upgrade" in headers and "Sec-WebSocket-Extensions" not in headers


async def test_permessage_deflate_is_negotiated_when_websocket_compression_is_on(
        start_replica: StartReplica) -> None:
    replica = await start_replica(queue=False, websocket_compression=True)

    negotiated, headers = await _handshake_headers(replica.url, compress=15)

    assert negotiated == 15
    assert headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")


async def test_a_slow_consumer_is_disconnected_its_buffer_freed_and_counted_once(
        start_replica: StartReplica, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch) -> None:
    replica = await start_replica(queue=False, max_outgoing_buffer_bytes=65536)
    client = await connected(make_client, replica, "alice")
    eio = replica.app[SIO].eio
    [socket] = eio.sockets.values()
    on_disconnect = eio.handlers["disconnect"]

    async def on_disconnect_awaiting_redis(*args: Any) -> None:
        await asyncio.sleep(0.01)  # as RedisPresence does: other emits run meanwhile
        await on_disconnect(*args)

    monkeypatch.setitem(eio.handlers, "disconnect", on_disconnect_awaiting_redis)

    # Sent at once, before the websocket writer runs: the packets pile up as for a stuck client,
    # and those after the 7th race the close.
    await asyncio.gather(*(socket.send(eio_packet.Packet(eio_packet.MESSAGE, "x" * 10_000)) for _ in range(20)),
                         return_exceptions=True)

    assert socket.closed
    assert socket.queue.nbytes == 0
    assert sample(replica, "kindmap_slow_consumer_disconnects_total") == 1
    assert await client.wait_for_disconnect() is not None  # its TCP connection was aborted
    await eventually(lambda: sample(replica, "kindmap_connections") == 0)
    await eventually(lambda: sample(replica, "kindmap_engineio_sessions") == 0)


class FullTransport:
    """A transport whose write buffer holds ``unsent`` bytes the peer has not taken."""

    def __init__(self, unsent: int) -> None:
        self.unsent = unsent
        self.aborted = False

    def get_write_buffer_size(self) -> int:
        return self.unsent

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True


async def test_what_the_transport_has_not_sent_counts_toward_the_limit(
        start_replica: StartReplica, make_client: MakeClient) -> None:
    replica = await start_replica(queue=False, max_outgoing_buffer_bytes=65536)
    await connected(make_client, replica, "alice")
    [socket] = replica.app[SIO].eio.sockets.values()
    real, socket.transport = socket.transport, FullTransport(60_000)
    try:
        await socket.send(eio_packet.Packet(eio_packet.MESSAGE, "x" * 5_000))
        assert not socket.closed
        await socket.send(eio_packet.Packet(eio_packet.MESSAGE, "x" * 5_000))

        assert socket.closed and socket.transport.aborted
    finally:
        real.abort()


async def test_a_frame_is_written_at_once_only_while_the_websocket_writer_awaits_packets(
        start_replica: StartReplica, make_client: MakeClient) -> None:
    replica = await start_replica(queue=False)
    client = await connected(make_client, replica, "alice")
    [socket] = replica.app[SIO].eio.sockets.values()
    await eventually(socket.idle)

    assert socket.write_frame(text_frame('2["news",1]'), time.time())
    socket.queue.put_nowait(eio_packet.Packet(eio_packet.MESSAGE, '2["news",2]'))  # the writer has it in hand
    assert not socket.write_frame(text_frame('2["news",3]'), time.time())  # it would overtake packet 2

    await client.wait_for("news", count=2)
    assert client.received("news") == [1, 2]


async def test_a_frame_goes_to_the_websocket_even_after_a_long_poll_sent_during_the_upgrade(
        start_replica: StartReplica) -> None:
    """Such a poll becomes the socket's ``transport``, which is the wrong connection for frames."""
    replica = await start_replica(queue=False)
    async with aiohttp.ClientSession() as session:
        sid = await open_polling_session(session, replica.url)
        [socket] = replica.app[SIO].eio.sockets.values()
        async with session.ws_connect(engineio_url(replica.url, transport="websocket", sid=sid)) as ws:
            await ws.send_str("2probe")
            assert await ws.receive_str(timeout=5) == "3probe"
            assert await poll(session, replica.url, sid) == (200, ["6"])  # upgrading: a NOOP at once
            await ws.send_str("5")
            await eventually(lambda: socket.upgraded and socket.idle())

            assert socket.write_frame(text_frame('2["news",1]'), time.time())

            assert await ws.receive_str(timeout=5) == "6"  # the NOOP that would have ended a waiting poll
            assert await ws.receive_str(timeout=5) == '42["news",1]'


async def test_a_frame_for_a_full_buffer_is_left_to_send_which_drops_the_slow_consumer(
        start_replica: StartReplica, make_client: MakeClient) -> None:
    replica = await start_replica(queue=False, max_outgoing_buffer_bytes=65536)
    client = await connected(make_client, replica, "alice")
    sio = replica.app[SIO]
    [socket] = sio.eio.sockets.values()
    await eventually(socket.idle)
    real, socket.transport = socket.transport, FullTransport(60_000)
    try:
        assert not socket.write_frame(text_frame('2["news","' + "x" * 6_000 + '"]'), time.time())
        assert not socket.closed

        await sio.emit("news", "x" * 6_000, to=client.sio.get_sid("/"))

        assert socket.closed and socket.transport.aborted
        assert sample(replica, "kindmap_slow_consumer_disconnects_total") == 1
    finally:
        real.abort()


async def test_a_frame_is_left_to_send_for_a_closed_socket_or_one_whose_ping_went_unanswered(
        start_replica: StartReplica, make_client: MakeClient) -> None:
    replica = await start_replica(queue=False)
    await connected(make_client, replica, "alice")
    await connected(make_client, replica, "bob")
    silent, closed = replica.app[SIO].eio.sockets.values()
    await eventually(lambda: silent.idle() and closed.idle())
    silent.last_ping = time.time() - 3600
    await closed.close(wait=False, abort=True)

    assert not silent.write_frame(text_frame('2["news",1]'), time.time())
    assert not closed.write_frame(text_frame('2["news",1]'), time.time())


async def test_a_frame_for_a_compressed_websocket_is_compressed_in_its_own_deflate_context(
        start_replica: StartReplica) -> None:
    """Each compressed connection has its own deflate context: a frame built once cannot serve it as it is."""
    replica = await start_replica(queue=False, websocket_compression=True)
    async with aiohttp.ClientSession() as session, session.ws_connect(
            engineio_url(replica.url, transport="websocket"), compress=15) as ws:
        assert (await ws.receive_str(timeout=5)).startswith("0{")
        [socket] = replica.app[SIO].eio.sockets.values()
        await eventually(socket.idle)

        for n in range(3):  # the context carries over from frame to frame
            assert socket.write_frame(text_frame(f'2["news",{n}]'), time.time())
        assert not socket.write_frame(text_frame('2["news","' + "x" * 20_000 + '"]'), time.time())  # too large

        assert [await ws.receive_str(timeout=5) for _ in range(3)] == [f'42["news",{n}]' for n in range(3)]


async def test_a_client_gone_silent_past_its_ping_timeout_has_its_buffer_freed_and_tcp_aborted(
        start_replica: StartReplica, make_client: MakeClient) -> None:
    replica = await start_replica(queue=False)
    client = await connected(make_client, replica, "alice")
    [socket] = replica.app[SIO].eio.sockets.values()
    socket.last_ping = time.time() - 3600  # a ping went unanswered long ago

    assert not await socket.check_ping_timeout()

    assert socket.closed and socket.queue.nbytes == 0
    assert socket.transport.is_closing()  # not left open until the peer closes it
    assert await client.wait_for_disconnect() is not None


async def test_a_server_disconnect_waits_at_most_a_ping_timeout_for_a_client_that_never_polls(
        start_replica: StartReplica) -> None:
    replica = await start_replica(queue=False)
    eio = replica.app[SIO].eio
    eio.ping_timeout = 0.2
    async with aiohttp.ClientSession() as session:
        sid = await open_polling_session(session, replica.url)
        socket = eio.sockets[sid]

        await asyncio.wait_for(eio.disconnect(sid), 5)  # python-engineio waited for the next poll, forever

    assert socket.closed and socket.queue.nbytes == 0
    assert sid not in eio.sockets


async def test_an_engineio_disconnect_closes_the_websocket_once_its_close_packet_has_left(
        start_replica: StartReplica) -> None:
    """python-engineio leaves the WebSocket open for its client to close, which a client keeping
    its connection never does."""
    replica = await start_replica(queue=False)
    eio = replica.app[SIO].eio
    async with aiohttp.ClientSession() as session, session.ws_connect(
            engineio_url(replica.url, transport="websocket")) as ws:
        sid = json.loads((await ws.receive_str(timeout=5))[1:])["sid"]

        await eio.disconnect(sid)

        assert await ws.receive_str(timeout=5) == "1"
        assert (await ws.receive(timeout=5)).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert sid not in eio.sockets


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_a_server_disconnect_ends_the_engineio_session_once_its_disconnect_has_left(
        start_replica: StartReplica, open_raw: OpenRaw, transport: str) -> None:
    """python-socketio's disconnect alone leaves the session to a client that keeps answering pings."""
    replica = await start_replica(queue=False)
    sio = replica.app[SIO]
    raw = await open_raw(replica.url, transport=transport)
    assert (await raw.connect({"token": make_token("alice")})).startswith("0")
    sid = sio.manager.sid_from_eio_sid(raw.eio_sid, "/")

    await sio.emit("error", {"code": "TOKEN_EXPIRED"}, to=sid)  # as the expiry, kick and replace paths do
    await sio.disconnect(sid)

    await raw.wait_closed()
    assert raw.errors() == [{"code": "TOKEN_EXPIRED"}]
    assert raw.packets[-1] == "1"  # the Socket.IO DISCONNECT came last, after the notice
    await eventually(lambda: not sio.eio.sockets, what="the session forgotten")


async def test_a_server_disconnect_for_a_socket_of_another_replica_ends_its_session_there(
        start_replica: StartReplica, open_raw: OpenRaw, make_client: MakeClient) -> None:
    here, there = await start_replica(), await start_replica()
    bob = await connected(make_client, here, "bob")
    raw = await open_raw(there.url)
    assert (await raw.connect({"token": make_token("alice")})).startswith("0")

    await here.app[SIO].disconnect(there.app[SIO].manager.sid_from_eio_sid(raw.eio_sid, "/"))

    await raw.wait_closed()
    await eventually(lambda: not there.app[SIO].eio.sockets, what="its session forgotten")
    assert len(here.app[SIO].eio.sockets) == 1  # bob's, untouched
    await bob.sio.emit("ping")
    await bob.wait_for("pong")


async def test_shutdown_cancels_and_awaits_the_sessions_still_ending(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings())
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    eio = app[SIO].eio
    async with aiohttp.ClientSession() as session:
        sid = await open_polling_session(session, str(server.make_url("")).rstrip("/"))
    eio.end_session(sid)  # its client never polls again: its CLOSE would wait a ping timeout to leave
    [ending] = eio._ending

    await server.close()

    assert ending.done() and not eio._ending


async def test_an_oversized_long_poll_body_is_refused_at_once_and_its_session_freed(
        start_replica: StartReplica) -> None:
    replica = await start_replica(queue=False)
    limit = replica.app[SIO].eio.max_http_buffer_size
    async with aiohttp.ClientSession() as session:
        sid = await open_polling_session(session, replica.url)
        async with session.post(engineio_url(replica.url, sid=sid), data=b"4" + b"y" * limit,
                                timeout=aiohttp.ClientTimeout(total=5)) as response:
            status, body = response.status, await response.json()
        after = await poll(session, replica.url, sid)

    assert status == 413
    assert body["code"] == "PAYLOAD_TOO_LARGE" and set(body) == {"type", "code", "message", "timestamp"}
    assert after[0] == 400  # the session is gone
    assert sample(replica, "kindmap_engineio_sessions") == 0
    assert sample(replica, "kindmap_protocol_violations_total", cause="oversized_body") == 1


async def waiting_poll(session: aiohttp.ClientSession, replica: Replica,
                       sid: str) -> asyncio.Task[tuple[int, list[str]]]:
    """A long-poll of session ``sid``, returned once the replica holds it waiting for packets."""
    waiting = asyncio.create_task(poll(session, replica.url, sid))
    await eventually(lambda: replica.app[SIO].eio.sockets[sid]._polling, what="the poll waiting")
    return waiting


async def test_a_second_long_poll_while_one_waits_closes_the_session(start_replica: StartReplica) -> None:
    """Engine.IO 4: each waiting poll holds a request, so a second is a protocol violation."""
    replica = await start_replica(queue=False)
    async with aiohttp.ClientSession() as session:
        sid = await open_polling_session(session, replica.url)
        waiting = await waiting_poll(session, replica, sid)

        second = await poll(session, replica.url, sid)
        first = await waiting
        after = await poll(session, replica.url, sid)

    assert second[0] == 400
    assert first == (200, ["1"])  # the waiting poll is told the session closed
    assert after[0] == 400
    assert sample(replica, "kindmap_protocol_violations_total", cause="duplicate_poll") == 1


async def test_a_waiting_poll_answers_at_once_when_the_client_closes_the_session(start_replica: StartReplica) -> None:
    replica = await start_replica(queue=False)
    async with aiohttp.ClientSession() as session:
        sid = await open_polling_session(session, replica.url)
        waiting = await waiting_poll(session, replica, sid)

        async with session.post(engineio_url(replica.url, sid=sid), data="1") as response:
            assert response.status == 200

        assert await asyncio.wait_for(waiting, 5) == (200, ["6"])
        assert (await poll(session, replica.url, sid))[0] == 400


async def test_a_request_without_a_transport_is_refused_in_the_error_schema(start_replica: StartReplica) -> None:
    replica = await start_replica(queue=False)
    async with aiohttp.ClientSession() as session, session.get(f"{replica.url}/socket.io/?EIO=4") as response:
        status, body = response.status, await response.json()

    assert status == 400
    assert body["code"] == "INVALID_PARAMETERS" and "transport" in body["message"]


async def test_an_oversized_chunked_long_poll_body_is_refused_too(start_replica: StartReplica) -> None:
    replica = await start_replica(queue=False)
    limit = replica.app[SIO].eio.max_http_buffer_size

    async def chunks() -> Any:
        for _ in range(limit // 65536 + 2):
            yield b"y" * 65536

    async with aiohttp.ClientSession() as session:
        sid = await open_polling_session(session, replica.url)
        async with session.post(engineio_url(replica.url, sid=sid), data=chunks(),
                                timeout=aiohttp.ClientTimeout(total=5)) as response:
            assert response.status == 413
    assert sample(replica, "kindmap_engineio_sessions") == 0


async def test_a_long_poll_body_under_the_limit_is_read_whole(start_replica: StartReplica) -> None:
    """The library read one ``read()`` worth (~130 KiB on loopback) and dropped the rest."""
    replica = await start_replica(queue=False, max_payload_bytes=256 * 1024)
    marker = "m" * (200 * 1024)
    async with aiohttp.ClientSession() as session:
        sid = await open_polling_session(session, replica.url)
        async with session.post(engineio_url(replica.url, sid=sid),
                                data="40" + json.dumps({"token": make_token("alice")})) as response:
            assert response.status == 200
        received: list[str] = []
        while not any('"connected"' in p for p in received):
            received += (await poll(session, replica.url, sid))[1]
        body = RECORD_SEPARATOR.join(['42["ping",{"id":"first"}]', f'42["ping",{{"id":"{marker}"}}]'])
        async with session.post(engineio_url(replica.url, sid=sid), data=body) as response:
            assert response.status == 200
        pongs: list[Any] = []
        while len(pongs) < 2:
            pongs += [json.loads(p[2:])[1] for p in (await poll(session, replica.url, sid))[1]
                      if p.startswith('42["pong"')]

    assert [p["id"] for p in pongs] == ["first", marker]


@pytest.mark.parametrize("body", [
    pytest.param(b"", id="empty"),
    pytest.param(b"hello", id="not-a-packet"),
    pytest.param(b"9x", id="unknown-type"),
    pytest.param(b"0{}", id="open-from-client"),
    pytest.param(b"\xff\xfe", id="not-utf8"),
    pytest.param(b"4" + b"[" * 5000, id="nested-too-deep"),
])
async def test_a_malformed_long_poll_body_is_refused_and_its_session_closed(
        start_replica: StartReplica, body: bytes) -> None:
    replica = await start_replica(queue=False)
    async with aiohttp.ClientSession() as session:
        sid = await open_polling_session(session, replica.url)
        async with session.post(engineio_url(replica.url, sid=sid), data=body) as response:
            status, payload = response.status, await response.json()
        after = await poll(session, replica.url, sid)

    assert (status, payload["code"]) == (400, "INVALID_PARAMETERS")
    assert after[0] == 400
    assert sample(replica, "kindmap_protocol_violations_total", cause="bad_polling_body") == 1


@pytest.mark.parametrize(("frame", "cause"), [
    pytest.param("", "empty_frame", id="empty"),
    pytest.param("hello", "bad_packet", id="not-a-packet"),
    pytest.param("9", "bad_packet", id="unknown-type"),
    pytest.param("0", "bad_packet", id="open-from-client"),
    pytest.param("4" + "[" * 5000, "bad_packet", id="nested-too-deep"),
])
async def test_a_malformed_websocket_frame_closes_the_websocket_as_a_protocol_error(
        start_replica: StartReplica, frame: str, cause: str) -> None:
    replica = await start_replica(queue=False)
    async with aiohttp.ClientSession() as session, session.ws_connect(
            engineio_url(replica.url, transport="websocket")) as ws:
        opened = await ws.receive()
        await ws.send_str(frame)
        closing = await ws.receive(timeout=5)
        rest = await ws.receive(timeout=5)

    assert opened.data.startswith("0{")
    assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, aiohttp.WSCloseCode.PROTOCOL_ERROR)
    assert rest.type == aiohttp.WSMsgType.CLOSED
    assert sample(replica, "kindmap_protocol_violations_total", cause=cause) == 1
    await eventually(lambda: sample(replica, "kindmap_engineio_sessions") == 0)


async def test_a_malformed_upgrade_probe_ends_the_long_polling_session_too(start_replica: StartReplica) -> None:
    replica = await start_replica(queue=False)
    async with aiohttp.ClientSession() as session:
        sid = await open_polling_session(session, replica.url)
        async with session.ws_connect(engineio_url(replica.url, transport="websocket", sid=sid)) as ws:
            await ws.send_str("")
            closing = await ws.receive(timeout=5)
        after = await poll(session, replica.url, sid)

    assert closing.data == aiohttp.WSCloseCode.PROTOCOL_ERROR
    assert after[0] == 400  # python-engineio left the session "upgrading", answering every poll with a NOOP
    await eventually(lambda: sample(replica, "kindmap_engineio_sessions") == 0)


async def connect_polling(session: aiohttp.ClientSession, base_url: str, user: str) -> str:
    """A Socket.IO connection over long-polling, as ``user``; returns the Engine.IO sid once ``connected`` came."""
    sid = await open_polling_session(session, base_url)
    async with session.post(engineio_url(base_url, sid=sid), data="40" + json.dumps({"token": make_token(user)})):
        pass
    received: list[str] = []
    while not any('"connected"' in p for p in received):
        received += (await poll(session, base_url, sid))[1]
    return sid


@pytest.mark.parametrize("body", [pytest.param(b"\x1e", id="malformed"), pytest.param(None, id="oversized")])
async def test_a_refused_long_poll_body_withdraws_its_user_from_presence(
        start_replica: StartReplica, body: bytes | None) -> None:
    """The socket is closed while its session still exists, so the disconnect handler runs:
    a message to that user is refused (USER_NOT_CONNECTED), not accepted for nobody."""
    replica = await start_replica()
    limit = replica.app[SIO].eio.max_http_buffer_size
    async with aiohttp.ClientSession() as session:
        sid = await connect_polling(session, replica.url, "leaver")
        assert await replica.app[PRESENCE].is_online("leaver")
        async with session.post(engineio_url(replica.url, sid=sid),
                                data=b"4" + b"x" * limit if body is None else body) as response:
            assert response.status in (400, 413)

    assert not await replica.app[PRESENCE].is_online("leaver")
    assert sample(replica, "kindmap_connections") == 0


async def test_a_body_for_no_session_is_refused_without_waiting_for_it(start_replica: StartReplica) -> None:
    """Announced but never sent: before, the replica held the request (and what had arrived)."""
    replica = await start_replica(queue=False)
    host, port = replica.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"POST /socket.io/?EIO=4&transport=polling&sid=nope HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Length: 262144\r\n\r\n" + b"4" * 1000)
    status_line = await asyncio.wait_for(reader.readline(), 5)
    writer.close()

    assert status_line.startswith(b"HTTP/1.1 400")


async def test_a_long_poll_body_that_trickles_past_the_ping_timeout_is_refused(start_replica: StartReplica) -> None:
    replica = await start_replica(queue=False)
    replica.app[SIO].eio.ping_timeout = 0.5
    host, port = replica.url.removeprefix("http://").split(":")
    async with aiohttp.ClientSession() as session:
        sid = await open_polling_session(session, replica.url)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n"
                 "Content-Length: 1000\r\n\r\n4".encode())
    status_line = await asyncio.wait_for(reader.readline(), 5)
    writer.close()

    assert status_line.startswith(b"HTTP/1.1 400")
    assert sid not in replica.app[SIO].eio.sockets
    assert sample(replica, "kindmap_protocol_violations_total", cause="slow_body") == 1


async def test_answers_to_earlier_polls_still_unsent_count_toward_the_outgoing_limit(
        start_replica: StartReplica) -> None:
    """Each new long-poll takes the queue; the answers a client never read still cost memory."""
    replica = await start_replica(queue=False)
    async with aiohttp.ClientSession() as session:
        sid = await open_polling_session(session, replica.url)
    socket = replica.app[SIO].eio.sockets[sid]

    class Stalled:
        def __init__(self, unsent: int) -> None:
            self.unsent = unsent

        def is_closing(self) -> bool:
            return False

        def get_write_buffer_size(self) -> int:
            return self.unsent

        def abort(self) -> None:
            self.unsent = 0

    earlier, current = Stalled(300_000), Stalled(0)
    socket._use_transport(earlier)
    socket._use_transport(current)

    assert socket.buffered() == socket.queue.nbytes + 300_000
    earlier.unsent = 0
    assert socket.buffered() == socket.queue.nbytes


async def test_a_client_answering_pings_is_pinged_again_and_one_that_does_not_is_closed(
        start_replica: StartReplica) -> None:
    """The ping timer of GuardedSocket.schedule_ping, with a ping interval shortened for the test."""
    replica = await start_replica(queue=False)
    eio = replica.app[SIO].eio
    eio.ping_interval, eio.ping_timeout = 0.05, 0.2
    async with aiohttp.ClientSession() as session, session.ws_connect(
            engineio_url(replica.url, transport="websocket")) as ws:
        assert (await ws.receive_str(timeout=5)).startswith("0{")
        for _ in range(3):
            assert await ws.receive_str(timeout=5) == "2"
            await ws.send_str("3")
        assert await ws.receive_str(timeout=5) == "2"  # and not answered: the server gives up
        closing = await ws.receive(timeout=5)

    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    await eventually(lambda: sample(replica, "kindmap_engineio_sessions") == 0)


class ConnectReplies:
    """A ``SocketServer`` answering CONNECT packets through python-socketio's own ``_handle_connect``;
    a socket whose auth asks for one gets a private session id from its connect handler, as
    ``Gateway.on_connect`` starts a recoverable session there. Records each Engine.IO packet sent."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, recovery: bool = True) -> None:
        self.server = SocketServer(async_mode="aiohttp", max_outgoing_bytes=1 << 20)
        self.pids: dict[str, str] = {}
        self.sent: list[str] = []
        if recovery:
            self.server.session_id_of = self.pids.get
        self.server.on("connect", self._on_connect)
        monkeypatch.setattr(self.server.eio, "send_packet", self._record)

    async def reply_to(self, auth: dict[str, Any]) -> tuple[str, str | None]:
        """The CONNECT reply as the client reads it, and the socket id the server gave."""
        eio_sid = f"eio-{len(self.sent)}"
        self.server.environ[eio_sid] = {}
        await self.server._handle_connect(eio_sid, "/", auth)
        [reply] = self.sent[-1:]
        return reply, self.server.manager.sid_from_eio_sid(eio_sid, "/")

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: dict[str, Any]) -> None:
        if auth.get("refuse"):
            raise ConnectionRefusedError("no")
        if auth.get("session"):
            self.pids[sid] = f"pid-of-{sid}"

    async def _record(self, eio_sid: str, pkt: eio_packet.Packet) -> None:
        encoded = pkt.encode()
        assert isinstance(encoded, str)
        self.sent.append(encoded)


async def test_the_connect_reply_of_a_socket_with_a_session_carries_its_pid_as_nodes_does(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """socket.io-client sets ``recovered`` from this exact shape (Node's own test checks the bytes)."""
    replies = ConnectReplies(monkeypatch)

    reply, sid = await replies.reply_to({"session": True})

    assert reply == f'40{{"sid":"{sid}","pid":"pid-of-{sid}"}}'


@pytest.mark.parametrize("recovery", [True, False], ids=["socket-without-a-session", "recovery-off"])
async def test_the_connect_reply_of_a_socket_without_a_session_has_no_pid(
        monkeypatch: pytest.MonkeyPatch, recovery: bool) -> None:
    replies = ConnectReplies(monkeypatch, recovery=recovery)

    reply, sid = await replies.reply_to({"session": False})

    assert reply == f'40{{"sid":"{sid}"}}'


async def test_a_refused_connect_is_answered_without_a_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    replies = ConnectReplies(monkeypatch)

    reply, _ = await replies.reply_to({"refuse": True, "session": True})

    assert reply.startswith("44") and "pid" not in reply
