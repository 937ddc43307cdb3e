"""The HTTP side of a replica besides Socket.IO: the emit API, the dev API and the demo page,
and the keys under which the app holds its parts.

May import: every other package of ``server`` (it is the top layer, beside ``server.app``).
"""
