"""Real processes for integration tests: the local cluster's own process classes.

``cluster.processes`` starts redis-server, replicas and Nginx for
``python -m cluster``; the tests start theirs with the same code.
"""

from cluster.processes import (
    HOST,
    REPO_ROOT,
    ChildProcess,
    RedisServer,
    Replica,
    free_port,
    http_status,
    nginx_binary,
    port_open,
    wait_until,
)

__all__ = ["HOST", "REPO_ROOT", "ChildProcess", "RedisServer", "Replica", "free_port", "http_status", "nginx_binary",
           "port_open", "wait_until"]
