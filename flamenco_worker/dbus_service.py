"""Local control over D-Bus: `org.flamenco.Worker1` mapped onto the worker core.

The interface only translates: methods call `Worker.request_status()`, properties read the core's snapshot,
and PropertiesChanged is emitted for whatever changed after each core notification. If the bus is gone
(the daemon restarted) the service reconnects and takes its name again.
"""

# No `from __future__ import annotations` here: dbus-next reads the D-Bus signatures from the annotations.

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from dbus_next import BusType, DBusError, NameFlag, RequestNameReply
from dbus_next.aio import MessageBus
from dbus_next.constants import PropertyAccess
from dbus_next.service import ServiceInterface, dbus_property, method

from flamenco_worker.polkit import ActionGate, Authorizer
from flamenco_worker.status import Origin, WorkerStatus
from flamenco_worker.worker import RequestRefused, Snapshot, Worker

log = logging.getLogger(__name__)

BUS_NAME = "org.flamenco.Worker1"
OBJECT_PATH = "/org/flamenco/Worker1"
INTERFACE = "org.flamenco.Worker1"
ERROR_PREFIX = "org.flamenco.Worker1.Error."
#: Method → polkit action (org.flamenco.worker.policy); on the system bus each call is authorized first.
ACTIONS = {
    "ShutDown": "org.flamenco.worker.shutdown",
    "Restart": "org.flamenco.worker.restart",
    "Sleep": "org.flamenco.worker.sleep",
    "WakeUp": "org.flamenco.worker.wake",
    "CancelRequest": "org.flamenco.worker.cancel-request",
}

#: How long startup waits for the bus before giving up on local control (READY=1 must not hang on it).
CONNECT_TIMEOUT = 5.0
#: Pause between attempts to get back on a bus that went away (e.g. dbus-daemon restarted).
RECONNECT_INTERVAL = 5.0

# D-Bus type signatures, as dbus-next reads them from annotations; the type checker sees the Python
# types dbus-next hands over and expects for them.
if TYPE_CHECKING:
    BOOL = bool
    STRING = str
    INT32 = int
else:
    BOOL = "b"
    STRING = "s"
    INT32 = "i"


def property_values(snap: Snapshot) -> dict[str, Any]:
    pending = snap.pending
    return {
        "Status": str(snap.status),
        "StatusText": snap.describe(),
        "RequestedStatus": str(pending.status) if pending else "",
        "RequestIsLazy": bool(pending and pending.lazy),
        "Restartable": snap.restartable,
        "RestartExitCode": snap.restart_exit_code,
        "CurrentTask": snap.task_id,
        "ManagerURL": snap.manager_url,
        "WorkerID": snap.worker_id,
        "Name": snap.name,
        "Version": snap.version,
    }


class WorkerInterface(ServiceInterface):
    def __init__(self, worker: Worker) -> None:
        super().__init__(INTERFACE)
        self._worker = worker
        self._last = property_values(worker.snapshot())
        worker.subscribe(self._on_change)

    def _request(self, status: WorkerStatus, immediately: bool) -> None:
        try:
            outcome = self._worker.request_status(status, lazy=not immediately, origin=Origin.LOCAL)
        except RequestRefused as exc:
            log.warning("origin=local refused %s: %s", status, exc)
            raise DBusError(ERROR_PREFIX + exc.name, str(exc)) from None
        log.info("origin=local request=%s immediately=%s: %s", status, immediately, outcome)

    @method()
    def ShutDown(self, immediately: BOOL) -> None:
        self._request(WorkerStatus.OFFLINE, immediately)

    @method()
    def Restart(self, immediately: BOOL) -> None:
        self._request(WorkerStatus.RESTART, immediately)

    @method()
    def Sleep(self, immediately: BOOL) -> None:
        self._request(WorkerStatus.ASLEEP, immediately)

    @method()
    def WakeUp(self) -> None:
        self._request(WorkerStatus.AWAKE, True)

    @method()
    def CancelRequest(self) -> BOOL:
        """True when a pending request was dropped."""
        cancelled = self._worker.cancel_request(Origin.LOCAL)
        log.info("origin=local cancel request: %s", "cancelled" if cancelled else "nothing pending")
        return cancelled

    @dbus_property(access=PropertyAccess.READ)
    def Status(self) -> STRING:
        return self._value("Status")

    @dbus_property(access=PropertyAccess.READ)
    def StatusText(self) -> STRING:
        return self._value("StatusText")

    @dbus_property(access=PropertyAccess.READ)
    def RequestedStatus(self) -> STRING:
        return self._value("RequestedStatus")

    @dbus_property(access=PropertyAccess.READ)
    def RequestIsLazy(self) -> BOOL:
        return self._value("RequestIsLazy")

    @dbus_property(access=PropertyAccess.READ)
    def Restartable(self) -> BOOL:
        return self._value("Restartable")

    @dbus_property(access=PropertyAccess.READ)
    def RestartExitCode(self) -> INT32:
        return self._value("RestartExitCode")

    @dbus_property(access=PropertyAccess.READ)
    def CurrentTask(self) -> STRING:
        return self._value("CurrentTask")

    @dbus_property(access=PropertyAccess.READ)
    def ManagerURL(self) -> STRING:
        return self._value("ManagerURL")

    @dbus_property(access=PropertyAccess.READ)
    def WorkerID(self) -> STRING:
        return self._value("WorkerID")

    @dbus_property(access=PropertyAccess.READ)
    def Name(self) -> STRING:
        return self._value("Name")

    @dbus_property(access=PropertyAccess.READ)
    def Version(self) -> STRING:
        return self._value("Version")

    def _value(self, name: str) -> Any:
        return property_values(self._worker.snapshot())[name]

    def _on_change(self) -> None:
        now = property_values(self._worker.snapshot())
        changed = {name: value for name, value in now.items() if self._last.get(name) != value}
        self._last = now
        if changed:
            self.emit_properties_changed(changed)


class DbusService:
    """Owns the bus connection: connect, export, take the name, reconnect when the bus goes away."""

    def __init__(self, worker: Worker, bus_type: str, bus_name: str = BUS_NAME) -> None:
        self._worker = worker
        self._bus_name = bus_name  # BUS_NAME, or an instance's name below it (instance.bus_name)
        self._bus_type = BusType.SYSTEM if bus_type == "system" else BusType.SESSION
        self._bus_label = bus_type
        self._interface = WorkerInterface(worker)
        self._bus: MessageBus | None = None
        self._gate: ActionGate | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self._quiet = False  # after one warning, retries stay quiet until the next success

    @property
    def connected(self) -> bool:
        return self._bus is not None and self._bus.connected

    async def start(self) -> bool:
        """First connection attempt (bounded); keeps trying in the background afterwards."""
        try:
            ok = await asyncio.wait_for(self._connect(), CONNECT_TIMEOUT)
        except TimeoutError:
            log.warning(
                "bus=%s no answer within %.0fs; running without local control",
                self._bus_label,
                CONNECT_TIMEOUT,
            )
            ok = False
        self._keeper = asyncio.get_running_loop().create_task(self._keep_connected(ok))
        return ok

    def _warn(self, message: str, *args: object) -> None:
        log.log(logging.DEBUG if self._quiet else logging.WARNING, message, *args)
        self._quiet = True

    async def _connect(self) -> bool:
        try:
            bus = await MessageBus(bus_type=self._bus_type).connect()
        except Exception as exc:  # any failure means "no bus": say so once, go on
            self._warn("bus=%s unreachable (%s); running without local control", self._bus_label, exc)
            return False
        bus.export(OBJECT_PATH, self._interface)
        if self._bus_type is BusType.SYSTEM:  # see flamenco_worker/polkit.py for who may act
            self._gate = ActionGate(bus, Authorizer(bus), OBJECT_PATH, INTERFACE, ACTIONS)
            bus.add_message_handler(self._gate.handle)
        try:
            reply = await bus.request_name(self._bus_name, NameFlag.DO_NOT_QUEUE)
        except DBusError as exc:
            self._warn(
                "bus=%s may not own %s (%s); running without local control",
                self._bus_label,
                self._bus_name,
                exc.text,
            )
            await self._drop(bus)
            return False
        if reply not in (RequestNameReply.PRIMARY_OWNER, RequestNameReply.ALREADY_OWNER):
            self._warn(
                "bus=%s name %s is owned by another process (another worker?); running without local control",
                self._bus_label,
                self._bus_name,
            )
            await self._drop(bus)
            return False
        self._bus = bus
        self._quiet = False
        log.info(
            "bus=%s name=%s object=%s ready for local control", self._bus_label, self._bus_name, OBJECT_PATH
        )
        return True

    async def _keep_connected(self, connected: bool) -> None:
        while not self._closing.is_set():
            if connected and self._bus is not None:
                with contextlib.suppress(Exception):
                    # shielded: cancelling this task must not cancel the bus's own disconnect future
                    await asyncio.shield(self._bus.wait_for_disconnect())
                self._bus = None
                if self._closing.is_set():
                    return
                log.warning(
                    "bus=%s connection lost; reconnecting every %.0fs", self._bus_label, RECONNECT_INTERVAL
                )
            await asyncio.sleep(RECONNECT_INTERVAL)
            connected = await self._connect()

    @staticmethod
    async def _drop(bus: MessageBus) -> None:
        bus.disconnect()
        with contextlib.suppress(Exception):
            await bus.wait_for_disconnect()

    async def close(self) -> None:
        self._closing.set()
        if self._gate is not None:
            await self._gate.close()
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        if self._bus is not None:
            bus, self._bus = self._bus, None
            await self._drop(bus)
