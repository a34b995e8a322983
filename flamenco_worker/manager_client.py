"""HTTP client for Flamenco v3's worker API: one coroutine per endpoint, typed answers, explicit timeouts.

Knows nothing of worker states; the Manager link's parts (`signon`, `task_fetch`, `request_watch`, the
senders) decide what an answer means for the worker. Every answer says whether the Manager honoured
`Prefer: wait` (its `Preference-Applied` header): that is how the worker tells our Manager from a stock one.

Several URLs are replicas of one Manager (they share its database, so the same credentials work at each):

* Calls go to the URL in use. When its connection fails (refused, reset, dropped while held, DNS, no
  connection within `CONNECT_TIMEOUT`) the same call is tried at the next URL, round robin, each once.
  An HTTP answer of any status means that Manager is there: no failover.
* The first URL that takes the call (the connection is made and the request sent, so a long-poll held
  there counts at once) becomes the one in use; the switch is logged (`manager=OLD → NEW reason=…`)
  and told to the `on_switch` listeners. When none answers the call raises
  `ManagerUnreachable` and the URL in use stays; the caller backs off as it does for one Manager.
* With no URL (none configured, discovery still searching) every call raises `ManagerUnreachable` at
  once, and `url_known()` waits until `retarget()` gives one. `unreachable()` tells discovery when calls
  stop getting through, so it can search for a Manager that moved.
* Resending a call whose connection broke is safe: task updates carry an idempotency key, and the other
  calls ask or state something the Manager may hear twice.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
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

#: A Manager that does not accept a connection within this is taken as down and the next URL is tried; a
#: LAN connect takes milliseconds, a loaded Manager's accept well under a second.
CONNECT_TIMEOUT = 5.0

#: The answer header (RFC 7240) by which a Manager says it held the request as `Prefer: wait` asked.
PREFERENCE_APPLIED = "Preference-Applied"

USER_AGENT = f"Flamenco-Worker/{__version__} (python)"
#: Where an update carries its idempotency key until it is sent (as a header, never in the body).
UPDATE_KEY = "_update_key"


class ManagerUnreachable(Exception):
    """No HTTP answer: connection refused, DNS, timeout, broken response."""


#: Failures that mean no Manager at that URL (now): another replica may answer. A total timeout is not one
#: (the Manager took the request and is slow), nor is any HTTP status.
_CONNECTION_FAILED = (
    aiohttp.ClientOSError,  # refused, reset, DNS (ClientConnectorError is one)
    aiohttp.ServerDisconnectedError,  # closed under us, also while holding a long-poll
    aiohttp.ServerTimeoutError,  # raised only for the connect phase: no sock_read timeout is set
    aiohttp.ClientPayloadError,  # the connection broke in the middle of the answer
    ConnectionError,
)

#: Called with (old URL, new URL, reason) when the URL in use changes.
SwitchListener = Callable[[str, str, str], None]


class UnexpectedAnswer(Exception):
    def __init__(self, what: str, status: int, body: str, retry_after: float | None = None) -> None:
        super().__init__(f"{what}: HTTP {status}: {body[:300]}")
        self.status = status
        #: The answer's Retry-After in seconds (a busy Manager's 503 says when to come back), or None.
        self.retry_after = retry_after


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


def _normalise(urls: str | Sequence[str]) -> tuple[str, ...]:
    """The URLs as a tuple; empty means none known yet (discovery will `retarget()` the client)."""
    return (urls,) if isinstance(urls, str) else tuple(urls)


def _taken_trace() -> aiohttp.TraceConfig:
    """Tells a request's `taken` callback (if any) that its headers went out: a Manager took the call."""

    async def headers_sent(
        _session: aiohttp.ClientSession, context: SimpleNamespace, _params: object
    ) -> None:
        request_context = context.trace_request_ctx
        if request_context is not None:
            request_context.taken()

    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(headers_sent)
    return trace


def _unreachable(call: str, last_url: str, failures: list[str]) -> str:
    if len(failures) == 1:
        return f"{call}: {failures[0]}"
    return f"{call}: none of the {len(failures)} Manager URLs answers (the last, {last_url}: {failures[-1]})"


def _explain(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".rstrip(": ")


def _retry_after(headers: object) -> float | None:
    """Retry-After in delta-seconds (what our Manager and Flamenco send); None when absent or a date."""
    if not isinstance(headers, Mapping):
        return None
    value = headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def go_platform(platform: str = sys.platform) -> str:
    """The platform name as Go's GOOS spells it (what the Manager expects)."""
    for prefix, goos in (("win", "windows"), ("linux", "linux"), ("freebsd", "freebsd")):
        if platform.startswith(prefix):
            return goos
    return platform


class ManagerClient:
    def __init__(self, urls: str | Sequence[str]) -> None:
        self._urls = _normalise(urls)
        self._current = 0
        self._switch_listeners: list[SwitchListener] = []
        self._authorization: str | None = None
        self._session: aiohttp.ClientSession | None = None
        self._has_url = asyncio.Event()
        if self._urls:
            self._has_url.set()
        self._unreachable = asyncio.Event()  # set while calls fail to connect anywhere

    @property
    def url(self) -> str:
        """The URL in use, as configured (or found); "" while none is known."""
        return self._urls[self._current] if self._urls else ""

    async def url_known(self) -> None:
        """Return once the client has a URL to call."""
        await self._has_url.wait()

    async def unreachable(self) -> None:
        """Return once a call found no Manager at any URL (cleared by the next HTTP answer)."""
        await self._unreachable.wait()

    @property
    def is_unreachable(self) -> bool:
        return self._unreachable.is_set()

    @property
    def base_url(self) -> str:
        """The URL in use, without its trailing slash."""
        return self.url.rstrip("/")

    @property
    def where(self) -> str:
        """Where calls go, for messages: the URL, or all of them when there are several."""
        if not self._urls:
            return "(not found yet)"
        return self.url if len(self._urls) == 1 else "any of " + ", ".join(self._urls)

    def on_switch(self, listener: SwitchListener) -> None:
        self._switch_listeners.append(listener)

    def retarget(self, urls: str | Sequence[str]) -> bool:
        """Use these URLs from now on, starting with the first; False when they are the ones in use."""
        new = _normalise(urls)
        if new == self._urls:
            return False
        old = self.url
        self._urls, self._current = new, 0
        self._unreachable.clear()
        if new:
            self._has_url.set()
        else:
            self._has_url.clear()
        if self.url != old:
            self._notify(old, self.url, "configuration reloaded")
        return True

    def _notify(self, old: str, new: str, reason: str) -> None:
        for listener in list(self._switch_listeners):
            listener(old, new, reason)

    def _switch(self, urls: tuple[str, ...], old_index: int, new_index: int, reason: str) -> None:
        """The URL at `new_index` answered after the one at `old_index` failed; the first call says so."""
        if self._urls is not urls or self._current != old_index:
            return  # a concurrent call switched already, or a reload chose anew
        self._current = new_index
        old, new = urls[old_index], urls[new_index]
        log.warning("manager=%s → %s reason=%s", old, new, reason)
        self._notify(old, new, reason)

    def set_credentials(self, worker_id: str, secret: str) -> None:
        # HTTP Basic, encoded here: aiohttp's BasicAuth helper is deprecated in its newer releases.
        token = base64.b64encode(f"{worker_id}:{secret}".encode()).decode("ascii")
        self._authorization = f"Basic {token}"

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={"User-Agent": USER_AGENT}, trace_configs=[_taken_trace()]
            )
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
        timeout = aiohttp.ClientTimeout(total=total, connect=min(CONNECT_TIMEOUT, total))
        urls, first = self._urls, self._current
        if not urls:
            raise ManagerUnreachable(f"{method} {path}: no Manager found yet")
        index = first
        failures: list[str] = []
        while True:
            url = urls[index]
            taken = None
            if index != first:
                taken = SimpleNamespace(
                    taken=functools.partial(self._switch, urls, first, index, failures[0])
                )
            try:
                async with self._client().request(
                    method,
                    url.rstrip("/") + path,
                    json=json_body,
                    data=data,
                    headers=hdrs,
                    timeout=timeout,
                    trace_request_ctx=taken,
                ) as response:
                    body = await response.read()
            except _CONNECTION_FAILED as exc:
                failures.append(_explain(exc))
                index = (index + 1) % len(urls)
                if index != first:
                    continue
                if urls is self._urls:
                    self._unreachable.set()
                raise ManagerUnreachable(_unreachable(f"{method} {path}", url, failures)) from None
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise ManagerUnreachable(f"{method} {path}: {_explain(exc)}") from None
            self._unreachable.clear()
            if index != first:
                self._switch(urls, first, index, failures[0])
            return response.status, body, response.headers

    @staticmethod
    def _json(body: bytes, what: str) -> Any:
        try:
            return json.loads(body)
        except ValueError:
            raise UnexpectedAnswer(what, 200, f"not JSON: {body[:100]!r}") from None

    @staticmethod
    def _fail(what: str, status: int, body: bytes, headers: object = None) -> UnexpectedAnswer:
        text = body.decode("utf-8", "replace")
        if status in (401, 403):
            return Unauthorised(what, status, text)
        return UnexpectedAnswer(what, status, text, _retry_after(headers))

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
            raise self._fail("task", status, body, headers)
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
