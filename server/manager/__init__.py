"""The client manager: python-socketio's pub/sub manager over a backend's queue, the fan-out
to this replica's sockets, connection state recovery, and sending to users (the rule the
HTTP API and the emitter share).

May import: ``server.eio`` (the guarded socket it writes frames to), ``server.messages``,
``server.backends`` and the top-level settings, errors, logs and metrics.
"""
