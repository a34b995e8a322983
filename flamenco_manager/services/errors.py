"""Service-level failures; the API layer maps each to an HTTP status."""

from __future__ import annotations

from collections.abc import Sequence

from flamenco_manager.values import several


class ServiceError(Exception):
    """Base class; `str()` is the message shown to the client."""


class NotFound(ServiceError):
    pass


class Invalid(ServiceError):
    """Bad input; `field` names the offending part of the request (empty when several parts are named).

    `count` is how many problems the message names, so that grouped problems add up when gathered again.
    """

    def __init__(self, field: str, message: str, *, count: int = 1) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message
        self.count = count

    @classmethod
    def together(cls, problems: Sequence[Invalid], field: str = "") -> Invalid:
        """One error naming every problem, under `field` if given: `settings: 2 problems: a: …; b: …`.

        A lone problem with no `field` to group it under is returned as it is.
        """
        if not problems:
            raise ValueError("no problems to report")
        if not field and len(problems) == 1:
            return problems[0]
        count = sum(problem.count for problem in problems)
        return cls(field, several([str(problem) for problem in problems], count), count=count)


class Conflict(ServiceError):
    pass


class PreconditionFailed(ServiceError):
    pass


class NotAcceptable(ServiceError):
    pass
