"""HTTP endpoints that exist only when ``AUTH_MODE=dev``: ``create_app`` adds them to no other app."""

from __future__ import annotations

import logging

from aiohttp import web

from .app_keys import AUTHENTICATOR
from .delivery import check_user_id

__all__ = ["dev_routes"]

logger = logging.getLogger(__name__)

dev_routes = web.RouteTableDef()


@dev_routes.get("/api/v1/dev/token")
async def dev_token(request: web.Request) -> web.Response:
    """A dev token for any ``user_id``: the demo page connects with it, as production
    clients do with a JWT, and it authorises the page's ``POST /api/v1/emit``.

    Dev mode already lets anyone claim any user id, so the token grants nothing more;
    what it adds is that only a script of this origin can read it (the HTTP API sends
    no CORS headers), so another site cannot emit through a developer's browser.
    """
    issued = request.app[AUTHENTICATOR].issue_dev_token(check_user_id(request.query.get("user_id")))
    logger.debug("dev token issued", extra={"user_id": issued.user_id})
    return web.json_response(
        {"user_id": issued.user_id, "token": issued.token, "expires_at": issued.expires_at.isoformat()},
        headers={"Cache-Control": "no-store"},
    )
