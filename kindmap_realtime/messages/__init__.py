"""What travels between replicas and emitters: the signed envelope, the replay window that
checks it, and the room names of users. Pure data and checks, no I/O.

May import: ``kindmap_realtime.errors`` only.
"""
