"""Socket.IO: python-socketio's server on top of ``server.eio`` -- the packet codec, the
guard every client packet passes, rate limits, the gateway (connect, welcome, disconnect),
authentication and token expiry.

May import: ``server.eio``, ``server.manager``, the library (``kindmap_realtime``: messages,
backends' interfaces, errors) and the top-level settings, logs and metrics.
"""
