"""kindmap_realtime/errors.py: the codes, the one error payload, the exception family."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kindmap_realtime.errors import (
    ConfigError,
    ErrorCode,
    HostNotAllowedError,
    InvalidEnvelopeError,
    PayloadTooLargeError,
    PublishError,
    QueueBusyError,
    QueueUnavailableError,
    RealtimeError,
    RequestError,
    UserNotConnectedError,
    error_payload,
    utc_now_iso,
)


def assert_utc_iso(timestamp: str) -> datetime:
    parsed = datetime.fromisoformat(timestamp)
    assert timestamp.endswith("+00:00")
    assert parsed.utcoffset() == timedelta(0)
    return parsed


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda c: c.name)
def test_error_code_value_is_its_upper_snake_name(code: ErrorCode) -> None:
    assert code.value == code.name
    assert re.fullmatch(r"[A-Z]+(_[A-Z]+)*", code.value)


def test_error_payload_has_exactly_the_documented_fields() -> None:
    payload = error_payload(ErrorCode.INVALID_PARAMETERS, "bad input")

    assert set(payload) == {"type", "code", "message", "timestamp"}
    assert payload["type"] == "error"
    assert payload["code"] == "INVALID_PARAMETERS"
    assert payload["message"] == "bad input"


def test_error_payload_survives_a_json_round_trip_unchanged() -> None:
    payload = error_payload(ErrorCode.UNKNOWN_EVENT, "unknown event '경로'")

    assert json.loads(json.dumps(payload)) == payload


def test_error_payload_timestamp_is_now_in_utc_with_explicit_offset() -> None:
    before = datetime.now(UTC)
    payload = error_payload(ErrorCode.NOT_FOUND, "nothing here")
    after = datetime.now(UTC)

    stamped = assert_utc_iso(payload["timestamp"])
    assert before <= stamped <= after


def test_utc_now_iso_is_iso_8601_utc_with_offset() -> None:
    before = datetime.now(UTC)

    stamped = assert_utc_iso(utc_now_iso())

    assert before <= stamped <= datetime.now(UTC)


@pytest.mark.parametrize(("exc_type", "builtin", "code"), [
    (ConfigError, ValueError, ErrorCode.INTERNAL_SERVER_ERROR),
    (RequestError, ValueError, ErrorCode.INVALID_PARAMETERS),
    (PublishError, ConnectionError, ErrorCode.QUEUE_UNAVAILABLE),
    (QueueUnavailableError, ConnectionError, ErrorCode.QUEUE_UNAVAILABLE),
    (UserNotConnectedError, LookupError, ErrorCode.USER_NOT_CONNECTED),
    (PayloadTooLargeError, ValueError, ErrorCode.PAYLOAD_TOO_LARGE),
    (HostNotAllowedError, ValueError, ErrorCode.HOST_NOT_ALLOWED),
    (QueueBusyError, ConnectionError, ErrorCode.QUEUE_BUSY),
], ids=lambda v: getattr(v, "__name__", None))
def test_exception_is_a_realtime_error_and_a_fitting_builtin_with_its_code(
        exc_type: type[RealtimeError], builtin: type[Exception], code: ErrorCode) -> None:
    exc = exc_type("went wrong")

    assert isinstance(exc, RealtimeError)
    assert isinstance(exc, builtin)
    assert exc.code is code
    assert exc.message == str(exc) == "went wrong"


def test_exception_payload_uses_its_code_and_message() -> None:
    payload = UserNotConnectedError("user 'alice' is not connected").payload()

    assert payload["code"] == "USER_NOT_CONNECTED"
    assert payload["message"] == "user 'alice' is not connected"
    assert payload["type"] == "error"
    assert_utc_iso(payload["timestamp"])


def test_code_given_to_one_exception_does_not_change_its_class() -> None:
    overridden = RequestError("too big", code=ErrorCode.PAYLOAD_TOO_LARGE)

    assert overridden.code is ErrorCode.PAYLOAD_TOO_LARGE
    assert overridden.payload()["code"] == "PAYLOAD_TOO_LARGE"
    assert RequestError("plain").code is ErrorCode.INVALID_PARAMETERS


def test_invalid_envelope_error_keeps_the_reason_for_the_metric() -> None:
    exc = InvalidEnvelopeError("not JSON", reason="invalid_json")

    assert exc.reason == "invalid_json"
    assert isinstance(exc, ValueError)
    assert exc.message == "not JSON"


def test_queue_busy_is_caught_by_whoever_catches_either_queue_error() -> None:
    assert issubclass(QueueBusyError, PublishError) and issubclass(QueueBusyError, QueueUnavailableError)


ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("code", list(ErrorCode))
def test_every_code_is_in_the_protocol_guides_error_table(code: ErrorCode) -> None:
    guide = (ROOT / "docs" / "protocol.md").read_text()

    assert re.search(rf"^\| `{code.value}`( / `[A-Z_]+`)? \|", guide, re.MULTILINE) or \
        re.search(rf"^\| `[A-Z_]+` / `{code.value}` \|", guide, re.MULTILINE), code


def test_the_readme_lists_exactly_the_codes_there_are() -> None:
    readme = (ROOT / "README.md").read_text()
    listed = readme.split("\nCodes: ", 1)[1].split(". The [protocol guide]", 1)[0]

    assert sorted(re.findall(r"`([A-Z_]+)`", listed)) == sorted(code.value for code in ErrorCode)
