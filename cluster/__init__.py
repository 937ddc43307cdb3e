"""Horizontal scaling on one machine: ``python -m cluster --replicas 3``.

Redis, several replicas and Nginx with the production site configuration, all on
loopback, started and stopped together. The integration tests run the same cluster.
"""

from .local import LocalCluster
from .replicas import ReplicaSet

__all__ = ["LocalCluster", "ReplicaSet"]
