"""The client manager: python-socketio's pub/sub manager over a backend's queue, the fan-out
to this replica's sockets, connection state recovery, and the replica's side of sending to
users (the rule itself is the library's, ``kindmap_realtime.sending``).

May import: ``server.eio`` (the guarded socket it writes frames to), the library
(``kindmap_realtime``) and the top-level settings, logs and metrics.
"""
