"""server/sio/auth.py: where the token is found, how it is checked, and dev mode."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest

from kindmap_realtime.errors import ErrorCode, RealtimeError
from kindmap_realtime.messages.checks import validate_user_id
from server.config import Settings
from server.sio import auth
from server.sio.auth import DEV_TOKEN_LIFETIME, Authenticator, AuthError, Identity, bearer_token
from tests.helpers.clients import TEST_SECRET, make_token

OTHER_SECRET = "another-secret-of-enough-length-0123456789"
FAR_FUTURE = 4102444800  # 2100-01-01


@pytest.fixture
def authenticator(make_settings: Callable[..., Settings]) -> Authenticator:
    return Authenticator(make_settings())


def token_with_short_key(algorithm: str) -> str:
    """A token for an algorithm whose hash is longer than TEST_SECRET (PyJWT warns about that)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        return make_token("alice", algorithm=algorithm)


def query(**params: str) -> dict[str, str]:
    return {"QUERY_STRING": urlencode(params)}


def test_token_in_auth_gives_its_sub(authenticator: Authenticator) -> None:
    assert authenticator.authenticate({"token": make_token("alice")}, {}) == "alice"


def test_token_in_query_parameter_is_accepted(authenticator: Authenticator) -> None:
    assert authenticator.authenticate(None, query(token=make_token("alice"), EIO="4")) == "alice"


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_bearer_header_is_accepted_in_any_case(authenticator: Authenticator, scheme: str) -> None:
    environ = {"HTTP_AUTHORIZATION": f"{scheme} {make_token('alice')}"}

    assert authenticator.authenticate({}, environ) == "alice"


def test_auth_token_wins_over_query_and_header(authenticator: Authenticator) -> None:
    environ = {**query(token=make_token("mallory")), "HTTP_AUTHORIZATION": f"Bearer {make_token('eve')}"}

    assert authenticator.authenticate({"token": make_token("alice")}, environ) == "alice"


def test_query_token_wins_over_header(authenticator: Authenticator) -> None:
    environ = {**query(token=make_token("alice")), "HTTP_AUTHORIZATION": f"Bearer {make_token('eve')}"}

    assert authenticator.authenticate(None, environ) == "alice"


def refused(authenticator: Authenticator, auth: Any, environ: dict[str, Any] | None = None) -> AuthError:
    with pytest.raises(AuthError) as caught:
        authenticator.authenticate(auth, environ or {})
    return caught.value


@pytest.mark.parametrize(("auth", "environ", "code"), [
    pytest.param(None, {}, ErrorCode.AUTH_REQUIRED, id="nothing"),
    pytest.param({}, {"QUERY_STRING": "token="}, ErrorCode.AUTH_REQUIRED, id="blank-query-token"),
    pytest.param({}, {"HTTP_AUTHORIZATION": "Basic dXNlcjpwYXNz"}, ErrorCode.AUTH_REQUIRED, id="basic-header"),
    pytest.param("a-token-as-a-string", {}, ErrorCode.AUTH_REQUIRED, id="auth-not-an-object"),
    pytest.param({"user_id": "alice"}, {}, ErrorCode.AUTH_REQUIRED, id="user-id-outside-dev-mode"),
    pytest.param({"token": "not-a-jwt"}, {}, ErrorCode.INVALID_TOKEN, id="malformed"),
    pytest.param({"token": ""}, {}, ErrorCode.INVALID_TOKEN, id="empty-string"),
    pytest.param({"token": 12345}, {}, ErrorCode.INVALID_TOKEN, id="not-a-string"),
    pytest.param({}, {"HTTP_AUTHORIZATION": "Bearer   "}, ErrorCode.INVALID_TOKEN, id="empty-bearer"),
])
def test_handshake_without_a_usable_token_is_refused(authenticator: Authenticator, auth: Any,
                                                     environ: dict[str, Any], code: ErrorCode) -> None:
    assert refused(authenticator, auth, environ).code is code


@pytest.mark.parametrize(("token", "code"), [
    pytest.param(lambda: make_token("alice", secret=OTHER_SECRET), ErrorCode.INVALID_TOKEN, id="wrong-signature"),
    pytest.param(lambda: make_token("alice", expires_in=-10), ErrorCode.TOKEN_EXPIRED, id="expired"),
    pytest.param(lambda: jwt.encode({"sub": "alice"}, TEST_SECRET, algorithm="HS256"),
                 ErrorCode.INVALID_TOKEN, id="no-exp"),
    pytest.param(lambda: jwt.encode({"exp": FAR_FUTURE}, TEST_SECRET, algorithm="HS256"),
                 ErrorCode.INVALID_TOKEN, id="no-sub"),
    pytest.param(lambda: token_with_short_key("HS512"), ErrorCode.INVALID_TOKEN, id="other-algorithm"),
    pytest.param(lambda: jwt.encode({"sub": "alice", "exp": FAR_FUTURE}, None, algorithm="none"),
                 ErrorCode.INVALID_TOKEN, id="alg-none"),
    pytest.param(lambda: make_token("alice", nbf=FAR_FUTURE), ErrorCode.INVALID_TOKEN, id="not-yet-valid"),
    pytest.param(lambda: make_token(42), ErrorCode.INVALID_TOKEN, id="numeric-sub"),
    pytest.param(lambda: make_token("alice smith"), ErrorCode.INVALID_TOKEN, id="sub-with-space"),
    pytest.param(lambda: make_token("a" * 129), ErrorCode.INVALID_TOKEN, id="sub-too-long"),
])
def test_bad_token_is_refused_with_its_code(authenticator: Authenticator, token: Callable[[], str],
                                            code: ErrorCode) -> None:
    exc = refused(authenticator, {"token": token()})

    assert exc.code is code
    assert exc.payload()["code"] == code.value


def test_server_configured_for_hs384_accepts_hs384_tokens(make_settings: Callable[..., Settings]) -> None:
    secret = "k" * 48  # HS384 wants a key at least as long as its hash
    authenticator = Authenticator(make_settings(jwt_algorithm="HS384", jwt_secret=secret))

    assert authenticator.authenticate({"token": make_token("alice", secret=secret, algorithm="HS384")}, {}) == "alice"


def test_server_configured_for_hs384_refuses_hs256_tokens(make_settings: Callable[..., Settings]) -> None:
    authenticator = Authenticator(make_settings(jwt_algorithm="HS384", jwt_secret="k" * 48))

    assert refused(authenticator, {"token": make_token("alice", secret="k" * 48)}).code is ErrorCode.INVALID_TOKEN


@pytest.mark.parametrize(("claims", "accepted"), [
    pytest.param({"aud": "kindmap-realtime", "iss": "kindmap-auth"}, True, id="matching"),
    pytest.param({"aud": ["other", "kindmap-realtime"], "iss": "kindmap-auth"}, True, id="audience-list"),
    pytest.param({"aud": "another-service", "iss": "kindmap-auth"}, False, id="wrong-audience"),
    pytest.param({"aud": "kindmap-realtime", "iss": "someone-else"}, False, id="wrong-issuer"),
    pytest.param({"iss": "kindmap-auth"}, False, id="missing-audience"),
    pytest.param({"aud": "kindmap-realtime"}, False, id="missing-issuer"),
])
def test_configured_audience_and_issuer_are_required_and_checked(make_settings: Callable[..., Settings],
                                                                  claims: dict[str, Any], accepted: bool) -> None:
    authenticator = Authenticator(make_settings(jwt_audience="kindmap-realtime", jwt_issuer="kindmap-auth"))
    token = make_token("alice", **claims)
    if accepted:
        assert authenticator.authenticate({"token": token}, {}) == "alice"
    else:
        with pytest.raises(AuthError) as caught:
            authenticator.authenticate({"token": token}, {})
        assert caught.value.code is ErrorCode.INVALID_TOKEN


def test_leeway_accepts_a_token_expired_within_it_only(make_settings: Callable[..., Settings]) -> None:
    lenient = Authenticator(make_settings(jwt_leeway=30))
    assert lenient.authenticate({"token": make_token("alice", expires_in=-10)}, {}) == "alice"
    with pytest.raises(AuthError) as caught:
        lenient.authenticate({"token": make_token("alice", expires_in=-60)}, {})
    assert caught.value.code is ErrorCode.TOKEN_EXPIRED


def test_dev_mode_accepts_a_claimed_user_id(make_settings: Callable[..., Settings]) -> None:
    authenticator = Authenticator(make_settings(auth_mode="dev"))

    assert authenticator.authenticate({"user_id": "temp_guest-1"}, {}) == "temp_guest-1"


def test_dev_mode_still_verifies_a_token_when_one_is_given(make_settings: Callable[..., Settings]) -> None:
    authenticator = Authenticator(make_settings(auth_mode="dev"))

    exc = refused(authenticator, {"token": "not-a-jwt", "user_id": "alice"})

    assert exc.code is ErrorCode.INVALID_TOKEN


def test_dev_mode_without_a_secret_refuses_tokens(make_settings: Callable[..., Settings]) -> None:
    authenticator = Authenticator(make_settings(auth_mode="dev", jwt_secret=None))

    assert refused(authenticator, {"token": make_token("alice")}).code is ErrorCode.INVALID_TOKEN


@pytest.mark.parametrize("user_id", ["", "alice smith", "a" * 129, 42, None, ["alice"], "ünïcode", "a/b"])
def test_dev_mode_refuses_a_bad_user_id(make_settings: Callable[..., Settings], user_id: Any) -> None:
    authenticator = Authenticator(make_settings(auth_mode="dev"))

    assert refused(authenticator, {"user_id": user_id}).code is ErrorCode.INVALID_PARAMETERS


# --- dev tokens: what the demo page connects and emits with ----------------------------


@pytest.fixture
def dev_authenticator(make_settings: Callable[..., Settings]) -> Authenticator:
    """Dev mode as ``make dev`` runs it: no JWT_SECRET."""
    return Authenticator(make_settings(auth_mode="dev", jwt_secret=None))


def test_dev_token_connects_as_its_user_without_a_jwt_secret(dev_authenticator: Authenticator) -> None:
    issued = dev_authenticator.issue_dev_token("alice")

    assert issued.user_id == "alice"
    assert dev_authenticator.authenticate({"token": issued.token}, {}) == "alice"
    assert dev_authenticator.verify_dev_token(issued.token) == "alice"


def test_dev_token_expires_after_its_lifetime(dev_authenticator: Authenticator) -> None:
    before = datetime.now(UTC)

    issued = dev_authenticator.issue_dev_token("alice")

    claims = jwt.decode(issued.token, options={"verify_signature": False})
    assert claims["exp"] == int(issued.expires_at.timestamp())
    assert before + DEV_TOKEN_LIFETIME - timedelta(seconds=1) <= issued.expires_at <= datetime.now(UTC) \
        + DEV_TOKEN_LIFETIME
    assert issued.expires_at.utcoffset() == timedelta(0)


def test_expired_dev_token_is_refused_as_expired(dev_authenticator: Authenticator,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "DEV_TOKEN_LIFETIME", timedelta(seconds=-10))
    token = dev_authenticator.issue_dev_token("alice").token

    assert refused(dev_authenticator, {"token": token}).code is ErrorCode.TOKEN_EXPIRED


def test_dev_token_of_another_replica_is_refused(make_settings: Callable[..., Settings],
                                                 dev_authenticator: Authenticator) -> None:
    other_replica = Authenticator(make_settings(auth_mode="dev", jwt_secret=None))
    token = other_replica.issue_dev_token("alice").token

    assert refused(dev_authenticator, {"token": token}).code is ErrorCode.INVALID_TOKEN
    with pytest.raises(AuthError):
        dev_authenticator.verify_dev_token(token)


def test_jwt_mode_refuses_dev_tokens_and_issues_none(authenticator: Authenticator,
                                                    dev_authenticator: Authenticator) -> None:
    token = dev_authenticator.issue_dev_token("alice").token

    assert refused(authenticator, {"token": token}).code is ErrorCode.INVALID_TOKEN
    with pytest.raises(AuthError, match="only when AUTH_MODE=dev"):
        authenticator.verify_dev_token(token)
    with pytest.raises(RuntimeError, match="only when AUTH_MODE=dev"):
        authenticator.issue_dev_token("alice")


def test_only_dev_tokens_verify_as_dev_tokens(make_settings: Callable[..., Settings]) -> None:
    """A JWT signed with another key is not a dev token."""
    authenticator = Authenticator(make_settings(auth_mode="dev"))

    with pytest.raises(AuthError):
        authenticator.verify_dev_token(make_token("alice"))


def test_a_jwt_posing_as_a_dev_token_is_checked_with_the_dev_key(make_settings: Callable[..., Settings]) -> None:
    authenticator = Authenticator(make_settings(auth_mode="dev"))
    posing = jwt.encode({"sub": "alice", "exp": FAR_FUTURE}, TEST_SECRET, algorithm="HS256",
                        headers={"kid": "kindmap-dev"})

    assert refused(authenticator, {"token": posing}).code is ErrorCode.INVALID_TOKEN


@pytest.mark.parametrize(("header", "token"), [
    pytest.param("Bearer abc", "abc", id="bearer"),
    pytest.param("bearer  abc ", "abc", id="any-case-and-spaces"),
    pytest.param("Bearer ", "", id="empty"),
    pytest.param("Basic abc", None, id="other-scheme"),
    pytest.param("", None, id="no-header"),
])
def test_bearer_token_reads_the_authorization_header(header: str, token: str | None) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize("user_id", ["alice", "temp_1234", "a.b:c@d-e_f", "A" * 128, "0"])
def test_validate_user_id_accepts_room_safe_ids(user_id: str) -> None:
    assert validate_user_id(user_id) == user_id


@pytest.mark.parametrize("user_id", ["", " alice", "alice\n", "a" * 129, "a b", "a/b", "한글", 7, None, b"alice"])
def test_validate_user_id_rejects_anything_else(user_id: Any) -> None:
    assert validate_user_id(user_id) is None


def test_auth_error_is_a_permission_error_and_a_realtime_error() -> None:
    exc = AuthError("nope", code=ErrorCode.TOKEN_EXPIRED)

    assert isinstance(exc, PermissionError)
    assert isinstance(exc, RealtimeError)
    assert exc.payload()["code"] == "TOKEN_EXPIRED"
    assert AuthError("default").code is ErrorCode.INVALID_TOKEN


def test_identity_carries_the_tokens_expiry_plus_the_leeway(make_settings: Callable[..., Settings]) -> None:
    token = jwt.encode({"sub": "alice", "exp": FAR_FUTURE}, TEST_SECRET, algorithm="HS256")

    assert Authenticator(make_settings()).identify({"token": token}, {}) == Identity("alice", FAR_FUTURE)
    assert Authenticator(make_settings(jwt_leeway=30)).verify_identity(token) == Identity("alice", FAR_FUTURE + 30)


def test_dev_tokens_expire_and_claimed_dev_user_ids_do_not(make_settings: Callable[..., Settings]) -> None:
    authenticator = Authenticator(make_settings(auth_mode="dev"))
    issued = authenticator.issue_dev_token("alice")

    assert authenticator.verify_identity(issued.token) == Identity("alice", issued.expires_at.timestamp())
    assert authenticator.identify({"user_id": "bob"}, {}) == Identity("bob", None)
