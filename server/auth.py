"""Who is connecting: the user id from a JWT, or (dev mode only) as claimed."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

import jwt

from .config import Settings
from .errors import AuthError, ErrorCode

__all__ = ["AuthError", "Authenticator", "validate_user_id"]

USER_ID_PATTERN = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")


def validate_user_id(value: Any) -> str | None:
    """The user id if it is usable as a room name, else ``None``."""
    if isinstance(value, str) and USER_ID_PATTERN.fullmatch(value):
        return value
    return None


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

    def authenticate(self, auth: Any, environ: Mapping[str, Any]) -> str:
        """Return the user id or raise ``AuthError``."""
        auth = auth if isinstance(auth, dict) else {}
        token = _find_token(auth, environ)
        if token is not None:
            return self.verify(token)
        if self._dev_mode and "user_id" in auth:
            user_id = validate_user_id(auth["user_id"])
            if user_id is None:
                raise AuthError("user_id must be 1-128 letters, digits or _.:@-", code=ErrorCode.INVALID_PARAMETERS)
            return user_id
        raise AuthError("a token is required: connect with auth {token}", code=ErrorCode.AUTH_REQUIRED)

    def verify(self, token: str) -> str:
        """The ``sub`` of a valid token. ``exp`` is checked here, at the handshake only:
        a trip in progress is not cut off when the token expires mid-way."""
        if self._secret is None:
            raise AuthError("this server has no JWT_SECRET; tokens cannot be verified")
        try:
            claims = jwt.decode(token, self._secret, algorithms=[self._algorithm], audience=self._audience,
                                issuer=self._issuer, leeway=self._leeway,
                                options={"require": self._required_claims})
        except jwt.ExpiredSignatureError:
            raise AuthError("the token has expired", code=ErrorCode.TOKEN_EXPIRED) from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"the token is invalid: {exc}") from None
        user_id = validate_user_id(claims["sub"])
        if user_id is None:
            raise AuthError("the token's sub is not a valid user id")
        return user_id


def _find_token(auth: Mapping[str, Any], environ: Mapping[str, Any]) -> str | None:
    """The token from ``auth``, the ``token`` query parameter, or a Bearer header."""
    token = auth.get("token")
    if token is None:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        token = query.get("token", [None])[0]
    if token is None:
        header = environ.get("HTTP_AUTHORIZATION", "")
        if header[:7].lower() == "bearer ":
            token = header[7:].strip()
    if token is not None and (not isinstance(token, str) or not token):
        raise AuthError("the token must be a non-empty string")
    return token
