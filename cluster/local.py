"""A whole deployment on one machine: Redis, N replicas and Nginx, all on loopback."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from .nginx import write_config
from .processes import HOST, ChildProcess, Lifecycle, NginxServer, RedisServer, Replica, free_port
from .replicas import ReplicaSet

__all__ = ["LocalCluster"]


class LocalCluster(Lifecycle):
    """Starts a ``redis-server`` (unless ``redis_url`` is given), the replicas and Nginx.

    Use it as a context manager: leaving it stops every process it started, in the
    order that loses least (Nginx, then the replicas, then Redis), and removes its
    temporary directory. If starting fails half-way, what did start is stopped.
    """

    def __init__(self, *, replicas: int, env: Mapping[str, str], nginx_port: int | None = None,
                 redis_url: str | None = None) -> None:
        self.work_dir = Path(tempfile.mkdtemp(prefix="kindmap-cluster-"))
        try:
            # Nginx started as root runs its workers as an unprivileged user: they must be
            # able to pass through to their temporary files in nginx/temp.
            self.work_dir.chmod(0o711)
            self.redis: RedisServer | None = None
            if redis_url is None:
                self.redis = RedisServer(work_dir=self.work_dir)
                redis_url = self.redis.url
            self.redis_url = redis_url
            # A development cluster on loopback: an unsigned queue is allowed unless env says otherwise.
            self.env = {**env, "ALLOW_UNSIGNED_QUEUE": env.get("ALLOW_UNSIGNED_QUEUE") or "true",
                        "REDIS_URL": redis_url}
            self.replica_set = ReplicaSet(replicas, env=self.env, log_dir=self.work_dir)
            nginx_dir = self.work_dir / "nginx"
            nginx_dir.mkdir()
            self.nginx = NginxServer(conf_dir=nginx_dir, port=nginx_port or free_port())
            write_config(nginx_dir, upstreams=[f"{HOST}:{r.port}" for r in self.replicas],
                         listen=f"{HOST}:{self.nginx.port}")
        except BaseException:
            shutil.rmtree(self.work_dir, ignore_errors=True)
            raise

    @property
    def url(self) -> str:
        """Where clients connect: Nginx."""
        return self.nginx.url

    @property
    def replicas(self) -> list[Replica]:
        return self.replica_set.replicas

    @property
    def processes(self) -> list[ChildProcess]:
        """Every process of the cluster, in the order they start."""
        return [*([self.redis] if self.redis else []), *self.replicas, self.nginx]

    def start(self) -> None:
        try:
            if self.redis is not None:
                self.redis.start()
            self.replica_set.start()
            self.nginx.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        try:
            self.nginx.stop()
            self.replica_set.stop()
            if self.redis is not None:
                self.redis.stop()
        finally:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def describe(self) -> str:
        """What is running where, for a person at a terminal."""
        redis_origin = "started by the cluster" if self.redis else "REDIS_URL"
        lines = [f"  {self.url:<32} Nginx, ip_hash over {len(self.replicas)} replicas: connect here"]
        lines += [f"  {replica.url:<32} {replica.instance_id}" for replica in self.replicas]
        lines += [f"  {self.redis_url:<32} Redis ({redis_origin})", f"  logs in {self.work_dir}"]
        return "\n".join(lines)
