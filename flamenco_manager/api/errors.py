"""JSON error answers (`Error {code, message}`) and the middleware that produces them."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Awaitable, Callable

from aiohttp import web

from flamenco_manager.services.errors import (
    Conflict,
    Invalid,
    NotAcceptable,
    NotFound,
    PreconditionFailed,
    ServiceError,
)
from flamenco_manager.store import StoreError
from flamenco_manager.store import wrote as store_wrote

log = logging.getLogger(__name__)

# Sent with 503 when the database is busy, as Flamenco does: try again after this many seconds.
RETRY_AFTER_SECONDS = 1

_STATUS_OF = {
    Invalid: 400,
    NotFound: 404,
    NotAcceptable: 406,
    Conflict: 409,
    PreconditionFailed: 412,
}


class HTTPError(Exception):
    """Raised by handlers to answer with a JSON error."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"code": status, "message": message}, status=status, headers=headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        store_wrote.set(False)
        response = await handler(request)
        # Nothing a request changed is acknowledged before it is committed (writes are group-committed
        # per loop turn) and before the task-log lines it carried are written.
        if store_wrote.get():
            manager = request.app["manager"]
            committed, written = manager.store.committed(), manager.logs.written()
            if committed is not None:
                await committed
            if written is not None:
                await written
        return response
    except HTTPError as exc:
        return error_response(exc.status, exc.message, exc.headers)
    except ServiceError as exc:
        status = next((code for kind, code in _STATUS_OF.items() if isinstance(exc, kind)), 500)
        return error_response(status, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = "no such endpoint" if exc.status == 404 else exc.reason
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(exc.status, f"{message}: {request.method} {request.path}", allow)
    except StoreError as exc:
        log.error("database error method=%s path=%s error=%s", request.method, request.path, exc)
        return error_response(503, "database is busy, try again", {"Retry-After": str(RETRY_AFTER_SECONDS)})
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return error_response(
                503, "database is busy, try again", {"Retry-After": str(RETRY_AFTER_SECONDS)}
            )
        log.exception("database error method=%s path=%s", request.method, request.path)
        return error_response(500, f"database error: {exc}")
    except Exception as exc:
        log.exception("unexpected error method=%s path=%s", request.method, request.path)
        return error_response(500, f"internal error: {type(exc).__name__}")
