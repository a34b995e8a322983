"""Service-level failures; the API layer maps each to an HTTP status."""

from __future__ import annotations


class ServiceError(Exception):
    """Base class; `str()` is the message shown to the client."""


class NotFound(ServiceError):
    pass


class Invalid(ServiceError):
    """Bad input; `field` names the offending part of the request."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class Conflict(ServiceError):
    pass


class PreconditionFailed(ServiceError):
    pass


class NotAcceptable(ServiceError):
    pass
