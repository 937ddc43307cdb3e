"""Who is connecting: the user id from a JWT, or (dev mode only) from a dev token or as claimed."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import jwt

from kindmap_realtime.errors import AuthError, ErrorCode
from kindmap_realtime.messages.checks import validate_user_id

from ..config import Settings

__all__ = ["DEV_TOKEN_LIFETIME", "AuthError", "Authenticator", "DevToken", "Identity", "bearer_token"]

DEV_TOKEN_LIFETIME = timedelta(hours=1)
# The ``kid`` header that tells a dev token from a JWT signed with JWT_SECRET.
_DEV_KEY_ID = "kindmap-dev"


@dataclass(frozen=True)
class Identity:
    """Who a socket is, and until when (POSIX seconds, ``exp`` plus leeway; ``None``:
    a user id claimed in dev mode, which never expires)."""

    user_id: str
    expires_at: float | None


class Authenticator:
    """Turns a handshake (``auth`` data and WSGI-style environ) into a user id."""

    def __init__(self, settings: Settings) -> None:
        self._secret = settings.jwt_secret
        self._algorithm = settings.jwt_algorithm
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer
        self._leeway = settings.jwt_leeway
        self._required_claims = ["sub", "exp"] + (["aud"] if self._audience else []) + (["iss"] if self._issuer else [])
        self._dev_mode = settings.dev_mode
        # Dev tokens are signed with a key drawn here and kept nowhere else: only this
        # process, in dev mode, issues or accepts them, so they can never pass for a
        # production token whatever JWT_SECRET is, nor outlive a restart.
        self._dev_key = secrets.token_bytes(32) if settings.dev_mode else None

    def authenticate(self, auth: Any, environ: Mapping[str, Any]) -> str:
        """Return the user id or raise ``AuthError``."""
        return self.identify(auth, environ).user_id

    def identify(self, auth: Any, environ: Mapping[str, Any]) -> Identity:
        """The user id of a handshake and when its token expires; raises ``AuthError``."""
        auth = auth if isinstance(auth, dict) else {}
        token = _find_token(auth, environ)
        if token is not None:
            return self.verify_identity(token)
        if self._dev_mode and "user_id" in auth:
            user_id = validate_user_id(auth["user_id"])
            if user_id is None:
                raise AuthError("user_id must be 1-128 letters, digits or _.:@-", code=ErrorCode.INVALID_PARAMETERS)
            return Identity(user_id, None)
        raise AuthError("a token is required: connect with auth {token}", code=ErrorCode.AUTH_REQUIRED)

    def verify(self, token: str) -> str:
        """The ``sub`` of a valid token."""
        return self.verify_identity(token).user_id

    def verify_identity(self, token: str) -> Identity:
        """The ``sub`` of a valid token and when it expires. The socket it opens is
        closed then, unless the client sends a fresh token (``token_expiry``)."""
        if self._dev_key is not None and _key_id(token) == _DEV_KEY_ID:
            return self._verify_dev(token)
        if self._secret is None:
            raise AuthError("this server has no JWT_SECRET; tokens cannot be verified")
        claims = _decode(token, self._secret, algorithms=[self._algorithm], audience=self._audience,
                         issuer=self._issuer, leeway=self._leeway, options={"require": self._required_claims})
        return Identity(_user_of(claims), float(claims["exp"]) + self._leeway)

    def issue_dev_token(self, user_id: str) -> DevToken:
        """A token for ``user_id`` (already validated), so the demo page connects the way
        production clients do, with ``auth: {token}``; dev mode only."""
        if self._dev_key is None:
            raise RuntimeError("dev tokens exist only when AUTH_MODE=dev")
        expires_at = datetime.now(UTC).replace(microsecond=0) + DEV_TOKEN_LIFETIME
        token = jwt.encode({"sub": user_id, "exp": expires_at}, self._dev_key, algorithm="HS256",
                           headers={"kid": _DEV_KEY_ID})
        return DevToken(user_id=user_id, token=token, expires_at=expires_at)

    def verify_dev_token(self, token: str) -> str:
        """The user id of a dev token this process issued; ``AuthError`` for anything
        else, and for every token outside dev mode."""
        return self._verify_dev(token).user_id

    def _verify_dev(self, token: str) -> Identity:
        if self._dev_key is None:
            raise AuthError("dev tokens are accepted only when AUTH_MODE=dev")
        claims = _decode(token, self._dev_key, algorithms=["HS256"], options={"require": ["sub", "exp"]})
        return Identity(_user_of(claims), float(claims["exp"]))


@dataclass(frozen=True)
class DevToken:
    user_id: str
    token: str
    expires_at: datetime


def _key_id(token: str) -> Any:
    """The unverified ``kid`` header, which only picks the key to verify with."""
    try:
        return jwt.get_unverified_header(token).get("kid")
    except jwt.InvalidTokenError:
        return None


def _decode(token: str, key: str | bytes, **options: Any) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(token, key, **options)
    except jwt.ExpiredSignatureError:
        raise AuthError("the token has expired", code=ErrorCode.TOKEN_EXPIRED) from None
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"the token is invalid: {exc}") from None
    return claims


def _user_of(claims: Mapping[str, Any]) -> str:
    user_id = validate_user_id(claims["sub"])
    if user_id is None:
        raise AuthError("the token's sub is not a valid user id")
    return user_id


def bearer_token(header: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme in any case)."""
    return header[7:].strip() if header[:7].lower() == "bearer " else None


def _find_token(auth: Mapping[str, Any], environ: Mapping[str, Any]) -> str | None:
    """The token from ``auth``, the ``token`` query parameter, or a Bearer header."""
    token = auth.get("token")
    if token is None:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        token = query.get("token", [None])[0]
    if token is None:
        token = bearer_token(environ.get("HTTP_AUTHORIZATION", ""))
    if token is not None and (not isinstance(token, str) or not token):
        raise AuthError("the token must be a non-empty string")
    return token
