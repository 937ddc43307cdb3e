"""``python -m cluster``: Redis, N replicas and Nginx on loopback until Ctrl-C or SIGTERM.

SIGHUP (the terminal closing) stops it too. A SIGKILL cannot be caught: it leaves the
processes running, each in its own session; their log directory is in the banner.

Replicas get the environment (and ``.env``) of this command, so the settings of
``python -m server`` apply to each of them; ``REDIS_URL``, when set, is used instead of
starting a ``redis-server``. Exit codes: 0 after a clean stop, 1 when the cluster could
not start (every process it did start is stopped), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
from collections.abc import Callable, Iterator
from types import FrameType

from kindmap_realtime.environment import load_environ

from .local import LocalCluster

MAX_REPLICAS = 16
DEFAULT_PORT = 8080
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
WATCH_INTERVAL = 0.5


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m cluster", description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=3, help=f"number of replicas, 1-{MAX_REPLICAS} (default 3)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"loopback port Nginx listens on; 0 picks a free one (default {DEFAULT_PORT})")
    args = parser.parse_args(argv)
    if not 1 <= args.replicas <= MAX_REPLICAS:
        parser.error(f"--replicas must be between 1 and {MAX_REPLICAS}")
    if not 0 <= args.port <= 65535:
        parser.error("--port must be between 0 and 65535")
    return args


@contextlib.contextmanager
def _stop_signals_interrupt() -> Iterator[None]:
    """Turn the first stop signal into KeyboardInterrupt; ignore the next ones while the cluster stops."""
    def handle(signum: int, frame: FrameType | None) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handle) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(cluster: LocalCluster, pause: Callable[[], None] = lambda: time.sleep(WATCH_INTERVAL)) -> None:
    """Keep the cluster up until interrupted; say once when one of its processes ends on its own."""
    with cluster:
        print(f"KindMap cluster is up:\n{cluster.describe()}\nCtrl-C stops everything.", flush=True)
        reported: set[str] = set()
        while True:
            pause()
            for process in cluster.processes:
                code = process.exit_code()
                if code is not None and process.name not in reported:
                    reported.add(process.name)
                    print(f"{process.name} exited with code {code}; see {process.log_path}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    environ = load_environ()
    try:
        with _stop_signals_interrupt():
            cluster = LocalCluster(replicas=args.replicas, env=environ, nginx_port=args.port or None,
                                   redis_url=environ.get("REDIS_URL") or None)
            _run(cluster)
    except KeyboardInterrupt:
        print("KindMap cluster stopped.", flush=True)
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"the cluster could not start: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
