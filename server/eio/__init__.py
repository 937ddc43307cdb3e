"""Engine.IO on aiohttp: python-engineio's server with the WebSocket and long-polling
transports it adapts (the guarded socket, frames written once for many sockets, outgoing
buffers, deadlines, the request environ, handshake limits and connection counting).

May import: ``kindmap_realtime.errors``, ``server.logs``, ``server.metrics``, ``server.config``
and the libraries (python-engineio, aiohttp). Nothing here knows Socket.IO, the client manager
or Redis.
"""
