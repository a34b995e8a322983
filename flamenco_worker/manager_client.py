"""HTTP client for Flamenco v3's worker API: one coroutine per endpoint, typed answers, explicit timeouts.

Knows nothing of worker states; the Manager link's parts (`signon`, `task_fetch`, `request_watch`, the
senders) decide what an answer means for the worker. Every answer says whether the Manager honoured
`Prefer: wait` (its `Preference-Applied` header): that is how the worker tells our Manager from a stock one.
"""

from __future__ import annotations

import base64
import json
import logging
import sys
from dataclasses import dataclass
from typing import Any

import aiohttp

from flamenco_worker import __version__

log = logging.getLogger(__name__)

#: Any single call that is not held by the Manager must answer within this; keeps every poll well
#: below the Manager's worker timeout (default 1 min).
REQUEST_TIMEOUT = 15.0
#: Extra time granted on top of a long-poll wait for the answer itself to arrive.
LONG_POLL_MARGIN = 5.0
#: How long the Manager may hold our long-poll requests (`Prefer: wait=N`); below its worker timeout.
LONG_POLL_WAIT = 25

#: The answer header (RFC 7240) by which a Manager says it held the request as `Prefer: wait` asked.
PREFERENCE_APPLIED = "Preference-Applied"

USER_AGENT = f"Flamenco-Worker/{__version__} (python)"
#: Where an update carries its idempotency key until it is sent (as a header, never in the body).
UPDATE_KEY = "_update_key"


class ManagerUnreachable(Exception):
    """No HTTP answer: connection refused, DNS, timeout, broken response."""


class UnexpectedAnswer(Exception):
    def __init__(self, what: str, status: int, body: str) -> None:
        super().__init__(f"{what}: HTTP {status}: {body[:300]}")
        self.status = status


class Unauthorised(UnexpectedAnswer):
    """403/401: the Manager does not know these credentials (or the worker was deleted)."""


@dataclass(frozen=True, slots=True)
class AssignedTask:
    uuid: str
    job: str
    name: str
    task_type: str
    commands: list[dict[str, Any]]
    raw: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TaskAssigned:
    """200: run this task."""

    task: AssignedTask
    long_polled: bool


@dataclass(frozen=True, slots=True)
class NoTask:
    """204: nothing to do now; after a held request (`long_polled`) it is fine to ask again at once."""

    long_polled: bool


@dataclass(frozen=True, slots=True)
class StatusRequested:
    """423: the Manager wants the worker in another status first."""

    status: str
    long_polled: bool


@dataclass(frozen=True, slots=True)
class NotAwake:
    """409: the Manager does not think this worker is awake (e.g. a timeout marked it `error`)."""

    message: str
    long_polled: bool


#: What `POST /worker/task` can answer, one type per meaning.
TaskAnswer = TaskAssigned | NoTask | StatusRequested | NotAwake


@dataclass(frozen=True, slots=True)
class StateAnswer:
    """GET /worker/state: the requested status (None: no request) and whether the request was held."""

    requested: str | None
    long_polled: bool


@dataclass(frozen=True, slots=True)
class MayKeepRunning:
    may_keep_running: bool
    reason: str
    status_change_requested: bool
    long_polled: bool


def go_platform(platform: str = sys.platform) -> str:
    """The platform name as Go's GOOS spells it (what the Manager expects)."""
    for prefix, goos in (("win", "windows"), ("linux", "linux"), ("freebsd", "freebsd")):
        if platform.startswith(prefix):
            return goos
    return platform


class ManagerClient:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._authorization: str | None = None
        self._session: aiohttp.ClientSession | None = None

    def set_credentials(self, worker_id: str, secret: str) -> None:
        # HTTP Basic, encoded here: aiohttp's BasicAuth helper is deprecated in its newer releases.
        token = base64.b64encode(f"{worker_id}:{secret}".encode()).decode("ascii")
        self._authorization = f"Basic {token}"

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers={"User-Agent": USER_AGENT})
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
        wait: float | None = None,
        time_limit: float = REQUEST_TIMEOUT,
    ) -> tuple[int, bytes, aiohttp.typedefs.LooseHeaders]:
        hdrs = dict(headers or {})
        if auth and self._authorization is not None:
            hdrs["Authorization"] = self._authorization
        total = time_limit
        if wait is not None:
            hdrs["Prefer"] = f"wait={int(wait)}"
            total = wait + LONG_POLL_MARGIN
        try:
            async with self._client().request(
                method,
                self.base_url + path,
                json=json_body,
                data=data,
                headers=hdrs,
                timeout=aiohttp.ClientTimeout(total=total),
            ) as response:
                body = await response.read()
                return response.status, body, response.headers
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ManagerUnreachable(f"{method} {path}: {type(exc).__name__}: {exc}".rstrip(": ")) from None

    @staticmethod
    def _json(body: bytes, what: str) -> Any:
        try:
            return json.loads(body)
        except ValueError:
            raise UnexpectedAnswer(what, 200, f"not JSON: {body[:100]!r}") from None

    @staticmethod
    def _fail(what: str, status: int, body: bytes) -> UnexpectedAnswer:
        text = body.decode("utf-8", "replace")
        if status in (401, 403):
            return Unauthorised(what, status, text)
        return UnexpectedAnswer(what, status, text)

    # --- endpoints ---

    async def register(self, name: str, secret: str, task_types: list[str]) -> str:
        payload = {
            "name": name,
            "platform": go_platform(),
            "secret": secret,
            "supported_task_types": task_types,
        }
        status, body, _ = await self._call(
            "POST", "/api/v3/worker/register-worker", json_body=payload, auth=False
        )
        if status != 200:
            raise self._fail("register-worker", status, body)
        uuid = self._json(body, "register-worker").get("uuid")
        if not isinstance(uuid, str) or not uuid:
            raise UnexpectedAnswer("register-worker", status, "answer has no uuid")
        return uuid

    async def sign_on(self, name: str, task_types: list[str], can_restart: bool) -> str:
        payload = {
            "name": name,
            "supported_task_types": task_types,
            "software_version": __version__,
            "can_restart": can_restart,
        }
        status, body, _ = await self._call("POST", "/api/v3/worker/sign-on", json_body=payload)
        if status != 200:
            raise self._fail("sign-on", status, body)
        return str(self._json(body, "sign-on").get("status_requested") or "awake")

    async def sign_off(self, time_limit: float) -> None:
        status, body, _ = await self._call("POST", "/api/v3/worker/sign-off", time_limit=time_limit)
        if status not in (200, 204):
            raise self._fail("sign-off", status, body)

    async def state_changed(self, new_status: str) -> None:
        status, body, _ = await self._call(
            "POST", "/api/v3/worker/state-changed", json_body={"status": new_status}
        )
        if status not in (200, 204):
            raise self._fail("state-changed", status, body)

    async def state(self, wait: float | None) -> StateAnswer:
        status, body, headers = await self._call("GET", "/api/v3/worker/state", wait=wait)
        held = PREFERENCE_APPLIED in headers
        if status == 204:
            return StateAnswer(None, held)
        if status != 200:
            raise self._fail("state", status, body)
        return StateAnswer(self._json(body, "state").get("status_requested") or None, held)

    async def fetch_task(self, wait: float | None) -> TaskAnswer:
        status, body, headers = await self._call("POST", "/api/v3/worker/task", wait=wait)
        held = PREFERENCE_APPLIED in headers
        if status == 204:
            return NoTask(held)
        if status == 423:
            return StatusRequested(str(self._json(body, "task").get("status_requested")), held)
        if status == 409:
            return NotAwake(body.decode("utf-8", "replace"), held)
        if status != 200:
            raise self._fail("task", status, body)
        raw = self._json(body, "task")
        try:
            task = AssignedTask(
                uuid=str(raw["uuid"]),
                job=str(raw.get("job", "")),
                name=str(raw.get("name", "")),
                task_type=str(raw.get("task_type", "")),
                commands=list(raw.get("commands") or []),
                raw=raw,
            )
        except (KeyError, TypeError) as exc:
            raise UnexpectedAnswer("task", status, f"malformed AssignedTask: {exc}") from None
        return TaskAssigned(task, held)

    async def task_update(self, task_id: str, payload: dict[str, Any]) -> int:
        """POST /worker/task/{id}; returns the HTTP status (204 ok, 409 reassigned, others are errors).

        The payload's UPDATE_KEY entry, if any, goes out as the Idempotency-Key header: a Manager that
        knows it applies a resent update once; others ignore the header."""
        body = dict(payload)
        key = body.pop(UPDATE_KEY, None)
        headers = {"Idempotency-Key": key} if key else None
        status, _, _ = await self._call(
            "POST", f"/api/v3/worker/task/{task_id}", json_body=body, headers=headers
        )
        return status

    async def may_i_run(self, task_id: str, wait: float | None) -> MayKeepRunning:
        status, body, headers = await self._call("GET", f"/api/v3/worker/task/{task_id}/may-i-run", wait=wait)
        if status != 200:
            raise self._fail("may-i-run", status, body)
        raw = self._json(body, "may-i-run")
        return MayKeepRunning(
            may_keep_running=bool(raw.get("mayKeepRunning")),
            reason=str(raw.get("reason") or ""),
            status_change_requested=bool(raw.get("statusChangeRequested")),
            long_polled=PREFERENCE_APPLIED in headers,
        )

    async def output_produced(self, task_id: str, image: bytes, content_type: str) -> int:
        status, _, _ = await self._call(
            "POST",
            f"/api/v3/worker/task/{task_id}/output-produced",
            data=image,
            headers={"Content-Type": content_type},
        )
        return status

    async def request_own_status(self, worker_id: str, status: str, lazy: bool) -> int:
        """Mirror a local action onto the Manager's worker-management API (so the web UI shows it).

        Sent with the worker's own credentials: a Manager that protects its management API with an
        access token still lets a worker record a request for itself."""
        code, _, _ = await self._call(
            "POST",
            f"/api/v3/worker-mgt/workers/{worker_id}/setstatus",
            json_body={"status": status, "is_lazy": lazy},
        )
        return code
