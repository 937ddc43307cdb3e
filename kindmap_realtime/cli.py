"""``kindmap-emit --user U --event E --data '{...}'``: emit from a shell.

(Installed with the library; in a checkout, ``python -m kindmap_realtime.cli``.)

Exit codes: 0 sent; 1 Redis unavailable, busy, or publish failed; 2 bad arguments
(also data that is not strict JSON, or a message over MAX_QUEUE_MESSAGE_BYTES), or a
QUEUE_SIGNING_KEY (read from the environment) missing or other than the replicas';
3 the user is not connected to any replica; 4 stored: the user is offline, but a session
of theirs is within its recovery window and gets the message when it reconnects. The
status (sent, stored) is printed on standard output. Like a replica, it refuses to run
without QUEUE_SIGNING_KEY unless ALLOW_UNSIGNED_QUEUE=true (or AUTH_MODE=dev).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from .backends import check_backend_url
from .emitter import Emitter
from .environment import load_environ, parse_bool, raw_setting
from .errors import ConfigError, RealtimeError, RequestError, UserNotConnectedError
from .event_loop import new_event_loop
from .limits import (
    DEFAULT_CHANNEL,
    DEFAULT_MAX_QUEUE_MESSAGE_BYTES,
    check_queue_message_bytes,
    check_queue_replay_window,
    check_signing_key,
)
from .messages.checks import check_data, check_event
from .messages.replay import DEFAULT_WINDOW

T = TypeVar("T", int, float)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_CONNECTED, EXIT_STORED = 0, 1, 2, 3, 4


def parse_args(argv: list[str] | None, environ: dict[str, str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kindmap-emit", description=__doc__.splitlines()[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--user", help="user id to send to (every socket, every replica)")
    target.add_argument("--broadcast", action="store_true", help="send to every connected socket")
    parser.add_argument("--event", required=True, help="event name")
    parser.add_argument("--data", default="null", help="JSON payload (default: null)")
    parser.add_argument("--volatile", action="store_true",
                        help="never store the message for recovery (high-rate updates whose next one replaces it)")
    parser.add_argument("--redis-url", default=raw_setting(environ, "REDIS_URL"), help="default: $REDIS_URL")
    parser.add_argument("--channel", default=raw_setting(environ, "SOCKETIO_CHANNEL") or DEFAULT_CHANNEL,
                        help="default: $SOCKETIO_CHANNEL or %(default)s")
    parser.add_argument("--max-message-bytes", default=raw_setting(environ, "MAX_QUEUE_MESSAGE_BYTES"),
                        help=f"largest queue message (default: $MAX_QUEUE_MESSAGE_BYTES or "
                             f"{DEFAULT_MAX_QUEUE_MESSAGE_BYTES})")
    parser.add_argument("--replay-window", default=raw_setting(environ, "QUEUE_REPLAY_WINDOW_SECONDS"),
                        help=f"the replicas' clock skew allowance, seconds (default: $QUEUE_REPLAY_WINDOW_SECONDS "
                             f"or {DEFAULT_WINDOW:g})")
    args = parser.parse_args(argv)
    args.signing_key = raw_setting(environ, "QUEUE_SIGNING_KEY", secret=True)  # never on the command line
    unsigned = raw_setting(environ, "ALLOW_UNSIGNED_QUEUE")
    args.unsigned_allowed = (unsigned is not None and parse_bool("ALLOW_UNSIGNED_QUEUE", unsigned)) or \
        (raw_setting(environ, "AUTH_MODE") or "").lower() == "dev"
    return args


async def run(args: argparse.Namespace, data: Any) -> str:
    """Send; returns the status (``sent``, or ``stored`` for a user offline within a recovery window)."""
    async with Emitter(args.redis_url, channel=args.channel, signing_key=args.signing_key,
                       max_message_bytes=args.max_message_bytes, replay_window=args.replay_window) as emitter:
        if args.broadcast:
            await emitter.broadcast(args.event, data)
            return "sent"
        return await emitter.send_to_user(args.user, args.event, data, volatile=args.volatile)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv, load_environ())
    except ConfigError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    if not args.redis_url:
        print("error: no Redis URL: pass --redis-url or set REDIS_URL", file=sys.stderr)
        return EXIT_USAGE
    try:
        check_backend_url("--redis-url", args.redis_url)
        if args.signing_key is not None:
            check_signing_key("QUEUE_SIGNING_KEY", args.signing_key)
        args.max_message_bytes = _number(args.max_message_bytes, "--max-message-bytes / MAX_QUEUE_MESSAGE_BYTES",
                                         int, DEFAULT_MAX_QUEUE_MESSAGE_BYTES, check_queue_message_bytes)
        args.replay_window = _number(args.replay_window, "--replay-window / QUEUE_REPLAY_WINDOW_SECONDS",
                                     float, DEFAULT_WINDOW, check_queue_replay_window)
        check_event(args.event)
        data = check_data(json.loads(args.data))
    except (ConfigError, RequestError) as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, RecursionError) as exc:  # also an integer of over 4,300 digits
        print(f"error: --data is not valid JSON: {str(exc) or 'nested too deep'}", file=sys.stderr)
        return EXIT_USAGE
    if args.signing_key is None and not args.unsigned_allowed:
        print("error: QUEUE_SIGNING_KEY is not set (ALLOW_UNSIGNED_QUEUE=true opts out, for development only)",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            status = runner.run(run(args, data))
    except UserNotConnectedError as exc:
        print(f"not sent: {exc.message}", file=sys.stderr)
        return EXIT_NOT_CONNECTED
    except (RequestError, ConfigError) as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except RealtimeError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    print(status)
    return EXIT_STORED if status == "stored" else EXIT_OK


def _number(raw: str | None, name: str, kind: Callable[[str], T], default: T,
            check: Callable[[str, T], None]) -> T:
    """An option's number, or its default when neither the option nor its variable is set."""
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a{'n integer' if kind is int else ' number'}, got {raw!r}") from None
    check(name, value)
    return value


if __name__ == "__main__":
    sys.exit(main())
