"""JSON error answers (`Error {code, message}`) and the middleware that produces them.

The middleware maps what handlers and services raise onto HTTP: `HTTPError` as given, service errors by
kind, `StoreBusy` to 503 with Retry-After (quietly for `StoreUnavailable`: the store logs the lost
connection and its return once), any other store failure to 500. A client that goes away while
its request is still arriving is one warning line, not an error with a traceback: nobody is left to
answer. It does not wait for commits; handlers that write say so themselves (`api.durable`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiohttp import web

from flamenco_manager.services.errors import (
    Conflict,
    Invalid,
    NotAcceptable,
    NotFound,
    PreconditionFailed,
    ServiceError,
)
from flamenco_manager.store import StoreBusy, StoreError, StoreUnavailable

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


def status_of(exc: ServiceError) -> int:
    """The HTTP status a service error is answered with."""
    return next((code for kind, code in _STATUS_OF.items() if isinstance(exc, kind)), 500)


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


class Middleware(Protocol):
    """A new-style aiohttp middleware (the parameter names are part of aiohttp's own type)."""

    def __call__(self, request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]: ...


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _log_disconnect(request: web.Request) -> None:
    if request.content.is_eof():
        log.debug("client disconnected method=%s path=%s", request.method, request.path)
    else:
        log.warning(
            "client disconnected while sending the request body method=%s path=%s",
            request.method,
            request.path,
        )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except HTTPError as exc:
        return error_response(exc.status, exc.message, exc.headers)
    except ServiceError as exc:
        return error_response(status_of(exc), str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = "no such endpoint" if exc.status == 404 else exc.reason
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(exc.status, f"{message}: {request.method} {request.path}", allow)
    except StoreUnavailable as exc:
        log.debug("database unavailable method=%s path=%s error=%s", request.method, request.path, exc)
        return error_response(
            503, "database unavailable, try again", {"Retry-After": str(RETRY_AFTER_SECONDS)}
        )
    except StoreBusy as exc:
        log.warning("database busy method=%s path=%s error=%s", request.method, request.path, exc)
        return error_response(503, "database is busy, try again", {"Retry-After": str(RETRY_AFTER_SECONDS)})
    except StoreError as exc:
        log.exception("database error method=%s path=%s", request.method, request.path)
        return error_response(500, f"database error: {exc}")
    except ConnectionResetError as exc:
        # aiohttp ≥ 3.10 raises ClientConnectionResetError (a ConnectionResetError) from a body read once
        # the peer has closed; the answer below goes nowhere, aiohttp drops it quietly.
        if _client_gone(request):
            _log_disconnect(request)
            return error_response(400, "client disconnected")
        log.exception("unexpected error method=%s path=%s", request.method, request.path)
        return error_response(500, f"internal error: {type(exc).__name__}")
    except asyncio.CancelledError:
        # aiohttp < 3.9 cancels the handler when the peer closes the connection.
        if _client_gone(request):
            _log_disconnect(request)
        raise
    except Exception as exc:
        log.exception("unexpected error method=%s path=%s", request.method, request.path)
        return error_response(500, f"internal error: {type(exc).__name__}")


async def unknown_api_path(request: web.Request) -> web.StreamResponse:
    """The answer for an `/api/` path no route serves: a JSON 405 when another method would do, else 404.

    Served by a catch-all route rather than left to aiohttp's own 404, which newer releases produce as an
    empty body after the middlewares ran (a static route at `/` claims every path).
    """
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is request.match_info.route.resource or not resource.canonical.startswith("/api/"):
            continue
        _, methods = await resource.resolve(request)
        allowed |= methods
    if allowed:
        raise HTTPError(
            405,
            f"Method Not Allowed: {request.method} {request.path}",
            headers={"Allow": ",".join(sorted(allowed))},
        )
    raise HTTPError(404, f"no such endpoint: {request.method} {request.path}")
