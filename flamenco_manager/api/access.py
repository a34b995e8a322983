"""Optional access token for everything but the worker protocol (`api_token` in the configuration).

Without a token the Manager is open, as Flamenco's is (a trusted LAN). With one, every `/api/` path except
the worker protocol (HTTP Basic, per worker) and `/api/v3/version` (discovery) needs either
`Authorization: Bearer <token>` or the web interface's session cookie; so do the task logs under
`/job-files/`. The page itself is static and open: it asks for the token when the API answers 401.
"""

from __future__ import annotations

import hmac
import re

from aiohttp import web

from flamenco_manager.api.errors import Handler, HTTPError, Middleware
from flamenco_manager.api.worker_api import authenticated

#: The web interface keeps the token for the browser session in this cookie (SameSite=Strict).
TOKEN_COOKIE = "flamenco_api_token"
OPEN_PATHS = frozenset({"/api/v3/version"})
WORKER_PROTOCOL = "/api/v3/worker/"
#: A worker may record a request for its own status (it mirrors local D-Bus actions this way).
_OWN_STATUS = re.compile(r"^/api/v3/worker-mgt/workers/([^/]+)/setstatus$")


def needs_token(path: str) -> bool:
    if path.startswith("/job-files/"):
        return True
    return path.startswith("/api/") and not path.startswith(WORKER_PROTOCOL) and path not in OPEN_PATHS


def offered_token(request: web.Request) -> str:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    return request.cookies.get(TOKEN_COOKIE, "")


def token_middleware(token: str) -> Middleware:
    expected = token.encode()

    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not needs_token(request.path):
            return await handler(request)
        offered = offered_token(request).encode()
        if offered and hmac.compare_digest(offered, expected):
            return await handler(request)
        own = _OWN_STATUS.match(request.path)
        if (
            own
            and request.method == "POST"
            and request.headers.get("Authorization", "").lower().startswith("basic ")
        ):
            worker = await authenticated(request)
            if worker.uuid == own.group(1):
                return await handler(request)
            raise HTTPError(403, "a worker may only request a status for itself")
        raise HTTPError(
            401,
            "this Manager requires an access token: send 'Authorization: Bearer <token>'"
            if not offered
            else "the access token is not valid",
            headers={"WWW-Authenticate": 'Bearer realm="flamenco-manager"'},
        )

    return check_token
