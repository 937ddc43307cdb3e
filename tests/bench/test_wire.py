"""bench/wire.py: bytes a port has sent, from ``ss -ti``."""

from __future__ import annotations

import socket

from bench.wire import bytes_sent, parse_bytes_sent

SS = """0      0      127.0.0.1:17103 127.0.0.1:42084
\t bbr wscale:10,10 rto:204 cwnd:18 bytes_sent:393392 bytes_acked:393390 bytes_received:392976 segs_out:168
0      0      127.0.0.1:17103 127.0.0.1:42088
\t bbr wscale:10,10 rto:204 cwnd:18 bytes_sent:355528 bytes_acked:355528 bytes_received:355944 segs_out:151
"""


def test_bytes_sent_of_every_connection_are_added_up() -> None:
    assert parse_bytes_sent(SS) == 393392 + 355528


def test_no_connection_has_sent_nothing() -> None:
    assert parse_bytes_sent("") == 0


def test_what_a_listening_port_sent_is_counted() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = server.accept()
            with accepted:
                accepted.sendall(b"x" * 1000)
                assert client.recv(1000, socket.MSG_WAITALL) == b"x" * 1000

                assert bytes_sent(port) == 1000
