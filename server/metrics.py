"""Prometheus metrics, one registry per app (or emitter), never global.

A fresh ``Metrics`` per ``create_app`` keeps tests independent and lets one
process host several apps without their counters mixing.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

__all__ = ["CLOSE_REASONS", "DROP_REASONS", "PROTOCOL_VIOLATIONS", "RECOVERY_FAILURES", "REFUSAL_CODES", "Metrics"]

# Why a message did not reach a socket; pre-declared so every series exists at 0.
DROP_REASONS = (
    "bad_signature",
    "stale",
    "replayed",
    "invalid_json",
    "invalid_envelope",
    "unknown_method",
    "handler_error",
    "user_not_connected",
    "publish_failed",
    "too_large",
    "user_left",
)

# Engine.IO input that closes the session (server/eio/server.py); pre-declared like DROP_REASONS.
PROTOCOL_VIOLATIONS = ("oversized_body", "bad_polling_body", "slow_body", "duplicate_poll", "empty_frame",
                       "bad_packet")
# Why the server refused a client's packet (the code it answered), and why it closed a session.
REFUSAL_CODES = ("UNKNOWN_EVENT", "INVALID_PARAMETERS", "NOT_FOUND", "PAYLOAD_TOO_LARGE", "RATE_LIMITED")
CLOSE_REASONS = ("rate_limited", "connect_timeout", "invalid_handshake", "payload_hard_cap", "too_many_attachments")
# Why a reconnecting client's session was not recovered (server/manager/recovery.py).
RECOVERY_FAILURES = ("unknown", "expired", "gone", "invalid_offset", "unavailable", "too_frequent", "too_large",
                     "taken", "lost_during_replay", "lost_during_catch_up")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.connections = Gauge(
            "kindmap_connections", "Sockets connected to this replica.", registry=self.registry
        )
        self.connects_rejected = Counter(
            "kindmap_connects_rejected_total", "Handshakes refused, by error code.", ["code"], registry=self.registry
        )
        self.published = Counter(
            "kindmap_messages_published_total", "Envelopes handed to the queue.", registry=self.registry
        )
        self.received = Counter(
            "kindmap_messages_received_total", "Valid envelopes taken from the queue.", registry=self.registry
        )
        self.delivered = Counter(
            "kindmap_messages_delivered_total",
            "Events written to sockets of this replica by room, user and broadcast emits.",
            registry=self.registry,
        )
        self.dropped = Counter(
            "kindmap_messages_dropped_total", "Messages that reached no socket, by reason.", ["reason"],
            registry=self.registry,
        )
        self.queue_reconnects = Counter(
            "kindmap_queue_reconnects_total", "Times the queue was subscribed again after losing it.",
            registry=self.registry,
        )
        self.queue_subscribed = Gauge(
            "kindmap_queue_subscribed", "1 while the queue subscription is live.", registry=self.registry
        )
        self.packets_refused = Counter(
            "kindmap_client_packets_refused_total",
            "Client packets not handled, by the code of the error answered (RATE_LIMITED counts every "
            "packet dropped over the limit, answered at most once a second).",
            ["code"], registry=self.registry,
        )
        self.sessions_closed = Counter(
            "kindmap_client_sessions_closed_total", "Client sessions the server closed, by reason.", ["reason"],
            registry=self.registry,
        )
        self.slow_consumers = Counter(
            "kindmap_slow_consumer_disconnects_total",
            "Sockets disconnected because their outgoing buffer exceeded MAX_OUTGOING_BUFFER_BYTES.",
            registry=self.registry,
        )
        self.protocol_violations = Counter(
            "kindmap_protocol_violations_total", "Engine.IO sessions closed for malformed input, by cause.",
            ["cause"], registry=self.registry,
        )
        self.engineio_sessions = Gauge(
            "kindmap_engineio_sessions", "Engine.IO sessions this replica holds, connected to Socket.IO or not.",
            registry=self.registry,
        )
        self.recoveries = Counter(
            "kindmap_recoveries_total", "Sessions recovered by reconnecting clients (Socket.IO connection state "
            "recovery).", registry=self.registry,
        )
        self.recoveries_failed = Counter(
            "kindmap_recoveries_failed_total", "Reconnecting clients that got a new session instead, by reason "
            "(lost_during_replay: a replay was cut short, the history trimmed or unreachable while it was read: "
            "of a recovered session, or of a new one's first moments; lost_during_catch_up: the same while "
            "catching a socket up after the queue heard its user again).", ["reason"],
            registry=self.registry,
        )
        self.redis_anomalies = Counter(
            "kindmap_redis_anomalies_total", "Data in Redis that no replica or emitter of ours writes (a key of "
            "the wrong type, a hash far over its cap, an entry that fails its signature check), ignored or "
            "repaired, by kind; also inbox_full and history_full (kindmap_realtime/backends/redis/anomalies.py).",
            ["anomaly"], registry=self.registry,
        )
        self.replayed = Counter(
            "kindmap_messages_replayed_total", "Missed messages written to recovered sessions.", registry=self.registry,
        )
        self.caught_up = Counter(
            "kindmap_messages_caught_up_total", "Stored messages written to sockets from their users' histories after "
            "the queue listened to those users again (a Redis Cluster shard lost, failed over or resharded).",
            registry=self.registry,
        )
        for reason in RECOVERY_FAILURES:
            self.recoveries_failed.labels(reason=reason)
        for reason in DROP_REASONS:
            self.dropped.labels(reason=reason)
        for cause in PROTOCOL_VIOLATIONS:
            self.protocol_violations.labels(cause=cause)
        for code in REFUSAL_CODES:
            self.packets_refused.labels(code=code)
        for reason in CLOSE_REASONS:
            self.sessions_closed.labels(reason=reason)

    def count_published(self) -> None:
        """A message handed to the queue (the publisher's ``SendCounts``)."""
        self.published.inc()

    def count_dropped(self, reason: str) -> None:
        """A message that reached nobody, and why (one of ``DROP_REASONS``)."""
        self.dropped.labels(reason=reason).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
