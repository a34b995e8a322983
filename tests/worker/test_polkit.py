"""Who may act on the worker on a system-type private bus: a fake polkit, or none (the group decides).

polkitd itself needs the machine's system bus and root, so here a small fake
`org.freedesktop.PolicyKit1.Authority` answers on a private bus and records what it was asked; callers
are the real busctl, run as root or as `nobody`. tests/system/test_packaging_polkit.py does the same
against the real polkitd in a booted container.
"""

from __future__ import annotations

import asyncio
import grp
import os
import pwd
import subprocess
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from dbus_next import DBusError, Message, MessageType, NameFlag
from dbus_next.aio import MessageBus
from dbus_next.service import ServiceInterface, method

from flamenco_worker import polkit
from flamenco_worker.dbus_service import ACTIONS
from tests.support.dbus_daemon import PrivateBus
from tests.support.notify_socket import NotifySocket
from tests.support.waiting import wait_for
from tests.support.worker_process import WorkerProcess

POLICY = Path(__file__).resolve().parents[2] / "config" / "dbus" / "org.flamenco.Worker1.conf"
FAKE_POLKIT_POLICY = """<busconfig>
  <policy user="root"><allow own="org.freedesktop.PolicyKit1"/><allow own="org.flamenco.GateTest"/></policy>
  <policy context="default">
    <allow send_destination="org.freedesktop.PolicyKit1"/>
    <allow send_destination="org.flamenco.GateTest"/>
  </policy>
</busconfig>
"""
NOBODY = pwd.getpwnam("nobody")
#: Any step here takes milliseconds; a loaded machine may need a few seconds.
STEP_TIMEOUT = 10.0

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run busctl as another user")

T = TypeVar("T")


class LoopThread:
    """An asyncio loop in a thread, for D-Bus services that answer while the test runs busctl."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(STEP_TIMEOUT)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(STEP_TIMEOUT)
        self.loop.close()


@dataclass
class Request:
    subject_kind: str
    subject: dict[str, Any]
    action_id: str
    details: dict[str, str]
    flags: int
    cancellation_id: str
    caller_uid: int  # the uid of the bus name in the subject, as the bus daemon tells it


class FakePolkit:
    """org.freedesktop.PolicyKit1.Authority that answers `answer`: yes, no, challenge, error or hang."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.answer = "yes"
        self.requests: list[Request] = []
        self.cancelled: list[str] = []
        self.bus: MessageBus | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.bus = await MessageBus(bus_address=self.address).connect()
        self.bus.add_message_handler(self._handle)
        await self.bus.request_name(polkit.POLKIT_NAME, NameFlag.DO_NOT_QUEUE)

    async def stop(self) -> None:
        if self.bus is not None:
            self.bus.disconnect()
            await self.bus.wait_for_disconnect()

    def _handle(self, msg: Message) -> bool | Message:
        if msg.message_type is not MessageType.METHOD_CALL or msg.interface != polkit.POLKIT_INTERFACE:
            return False
        if msg.member == "CancelCheckAuthorization":
            self.cancelled.append(msg.body[0])
            return Message.new_method_return(msg)
        if msg.member != "CheckAuthorization" or msg.signature != "(sa{sv})sa{ss}us":
            return False
        task = asyncio.get_running_loop().create_task(self._answer(msg, self.answer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _answer(self, msg: Message, answer: str) -> None:
        assert self.bus is not None
        (kind, subject), action_id, details, flags, cancellation_id = msg.body
        subject = {key: variant.value for key, variant in subject.items()}
        uid_reply = await self.bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member="GetConnectionUnixUser",
                signature="s",
                body=[subject.get("name", "")],
            )
        )
        assert uid_reply is not None
        uid = uid_reply.body[0] if uid_reply.message_type is MessageType.METHOD_RETURN else -1
        self.requests.append(Request(kind, subject, action_id, details, flags, cancellation_id, uid))
        if answer == "hang":
            return
        if answer == "error":
            self.bus.send(
                Message.new_error(msg, "org.freedesktop.PolicyKit1.Error.Failed", "the fake failed")
            )
            return
        result = [answer == "yes", answer == "challenge", {}]
        self.bus.send(Message.new_method_return(msg, "(bba{ss})", [result]))


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.stop()


@pytest.fixture
def system_bus(short_dir: Path) -> Iterator[PrivateBus]:
    fake_policy = short_dir / "fake-polkit.conf"
    fake_policy.write_text(FAKE_POLKIT_POLICY)
    bus = PrivateBus(short_dir, kind="system", policies=[POLICY, fake_policy]).start()
    yield bus
    bus.stop()


@pytest.fixture
def fake_polkit(system_bus: PrivateBus, loop_thread: LoopThread) -> Iterator[FakePolkit]:
    fake = FakePolkit(system_bus.address)
    loop_thread.run(fake.start())
    yield fake
    loop_thread.run(fake.stop())


@pytest.fixture
def worker(short_dir: Path, system_bus: PrivateBus, notify_socket: NotifySocket) -> Iterator[WorkerProcess]:
    proc = WorkerProcess(
        short_dir,
        ["-dbus", "system"],
        bus=system_bus,
        notify=notify_socket,
        log_path=short_dir / "worker.log",
    ).start()
    proc.wait_ready()
    yield proc
    proc.stop()


def call_as_nobody(worker: WorkerProcess, method: str, *args: str, interactive: bool = True):
    flag = f"--allow-interactive-authorization={'yes' if interactive else 'no'}"
    assert worker.bus is not None
    return worker.bus.busctl(
        flag, "call", "org.flamenco.Worker1", "/org/flamenco/Worker1", "org.flamenco.Worker1", method, *args,
        user="nobody",
        check=False,
    )  # fmt: skip


def test_polkit_is_asked_about_the_caller_and_its_yes_lets_the_call_through(
    fake_polkit: FakePolkit, worker: WorkerProcess
) -> None:
    result = call_as_nobody(worker, "Sleep", "b", "true", interactive=False)
    assert result.returncode == 0, result.stderr
    worker.wait_property("Status", 's "asleep"')
    [request] = fake_polkit.requests
    assert request.subject_kind == "system-bus-name"
    assert set(request.subject) == {"name"} and request.subject["name"].startswith(":")
    assert request.caller_uid == NOBODY.pw_uid, "the subject is the caller's bus name, not the worker's"
    assert request.action_id == "org.flamenco.worker.sleep"
    assert request.details == {}
    assert request.flags == 0


def test_a_caller_that_allows_interactive_authorization_lets_polkit_ask(
    fake_polkit: FakePolkit, worker: WorkerProcess
) -> None:
    assert call_as_nobody(worker, "WakeUp", interactive=True).returncode == 0
    assert [r.flags for r in fake_polkit.requests] == [polkit.ALLOW_USER_INTERACTION]


@pytest.mark.parametrize(
    ("member", "args"),
    [("ShutDown", ["b", "false"]), ("Restart", ["b", "true"]), ("Sleep", ["b", "false"]),
     ("WakeUp", []), ("CancelRequest", [])],
)  # fmt: skip
def test_each_action_is_its_own_polkit_action_and_no_is_refused(
    fake_polkit: FakePolkit, worker: WorkerProcess, member: str, args: list[str]
) -> None:
    fake_polkit.answer = "no"
    result = call_as_nobody(worker, member, *args)
    assert result.returncode != 0
    assert "Access denied" in result.stderr, result.stderr
    assert f"polkit does not allow {ACTIONS[member]}" in result.stderr, result.stderr
    assert [r.action_id for r in fake_polkit.requests] == [ACTIONS[member]]
    assert worker.process.poll() is None
    assert worker.get("Status") == 's "awake"'
    assert worker.get("RequestedStatus") == 's ""'


def test_a_challenge_is_refused_with_how_an_administrator_can_allow_it(
    fake_polkit: FakePolkit, worker: WorkerProcess
) -> None:
    fake_polkit.answer = "challenge"
    result = call_as_nobody(worker, "ShutDown", "b", "false")
    assert result.returncode != 0
    assert "Access denied" in result.stderr
    assert "org.flamenco.worker.shutdown" in result.stderr
    assert "/etc/polkit-1/rules.d/" in result.stderr, result.stderr
    assert worker.process.poll() is None


def test_a_polkit_error_refuses_the_call(fake_polkit: FakePolkit, worker: WorkerProcess) -> None:
    fake_polkit.answer = "error"
    result = call_as_nobody(worker, "Sleep", "b", "false")
    assert result.returncode != 0
    assert "Access denied" in result.stderr
    assert "org.freedesktop.PolicyKit1.Error.Failed" in result.stderr, result.stderr
    assert worker.get("Status") == 's "awake"'


def test_root_acts_without_asking_polkit(fake_polkit: FakePolkit, worker: WorkerProcess) -> None:
    fake_polkit.answer = "no"
    worker.call("Sleep", "b", "false")
    worker.wait_property("Status", 's "asleep"')
    assert fake_polkit.requests == []


def test_reading_and_introspecting_do_not_ask_polkit(fake_polkit: FakePolkit, worker: WorkerProcess) -> None:
    fake_polkit.answer = "no"
    assert worker.get("Status", user="nobody") == 's "awake"'
    assert worker.bus is not None
    out = worker.bus.busctl("introspect", "org.flamenco.Worker1", "/org/flamenco/Worker1", user="nobody")
    assert ".ShutDown" in out.stdout
    assert fake_polkit.requests == []


def test_nothing_is_remembered_between_calls(fake_polkit: FakePolkit, worker: WorkerProcess) -> None:
    assert call_as_nobody(worker, "Sleep", "b", "false").returncode == 0
    fake_polkit.answer = "no"
    assert call_as_nobody(worker, "WakeUp").returncode != 0
    fake_polkit.answer = "yes"
    assert call_as_nobody(worker, "WakeUp").returncode == 0
    assert len(fake_polkit.requests) == 3


def test_without_polkit_the_group_decides_and_that_is_logged_once(worker: WorkerProcess) -> None:
    for _ in range(2):
        result = call_as_nobody(worker, "ShutDown", "b", "false")
        assert result.returncode != 0
        assert "Access denied" in result.stderr
        assert "members of the group 'flamenco'" in result.stderr, result.stderr
    worker.call("Sleep", "b", "false")  # root
    worker.wait_property("Status", 's "asleep"')
    assert worker.output().count("polkit is not available") == 1, worker.output()


# The gate and the group fallback on their own, with a group that exists on any Debian (`nogroup`).


class GateTest(ServiceInterface):
    def __init__(self) -> None:
        super().__init__("org.flamenco.GateTest")
        self.acted = 0

    @method()
    def Act(self) -> "b":  # type: ignore[name-defined]  # noqa: F821, UP037 - a D-Bus signature for dbus-next
        self.acted += 1
        return True


@dataclass
class Gated:
    bus: MessageBus
    interface: GateTest
    gate: polkit.ActionGate


async def start_gated(address: str, group: str, limit: float = polkit.POLKIT_TIMEOUT) -> Gated:
    bus = await MessageBus(bus_address=address).connect()
    interface = GateTest()
    bus.export("/test", interface)
    authorizer = polkit.Authorizer(bus, group=group, timeout=limit, interactive_timeout=limit)
    gate = polkit.ActionGate(
        bus, authorizer, "/test", "org.flamenco.GateTest", {"Act": "org.flamenco.worker.act"}
    )
    bus.add_message_handler(gate.handle)
    await bus.request_name("org.flamenco.GateTest", NameFlag.DO_NOT_QUEUE)
    return Gated(bus, interface, gate)


async def stop_gated(gated: Gated) -> None:
    await gated.gate.close()
    gated.bus.disconnect()
    await gated.bus.wait_for_disconnect()


def act(bus: PrivateBus, user: str | None = None, interactive: bool = False):
    flag = f"--allow-interactive-authorization={'yes' if interactive else 'no'}"
    return bus.busctl(flag, "call", "org.flamenco.GateTest", "/test", "org.flamenco.GateTest", "Act",
                      user=user, check=False)  # fmt: skip


@pytest.fixture
def gated(system_bus: PrivateBus, loop_thread: LoopThread, request: pytest.FixtureRequest) -> Iterator[Gated]:
    group, timeout = getattr(request, "param", ("nogroup", polkit.POLKIT_TIMEOUT))
    started = loop_thread.run(start_gated(system_bus.address, group, timeout))
    yield started
    loop_thread.run(stop_gated(started))


def test_without_polkit_a_member_of_the_group_by_primary_group_may_act(
    system_bus: PrivateBus, gated: Gated
) -> None:
    result = act(system_bus, user="nobody")  # nobody's primary group is nogroup
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "b true"
    assert gated.interface.acted == 1


@pytest.mark.parametrize("gated", [("root", polkit.POLKIT_TIMEOUT)], indirect=True)
def test_without_polkit_an_outsider_is_refused_and_root_allowed(system_bus: PrivateBus, gated: Gated) -> None:
    result = act(system_bus, user="nobody")
    assert result.returncode != 0
    assert "Access denied" in result.stderr and "org.flamenco.worker.act" in result.stderr, result.stderr
    assert act(system_bus).returncode == 0
    assert gated.interface.acted == 1


@pytest.mark.parametrize("gated", [("nogroup", 0.5)], indirect=True)
def test_polkit_without_an_answer_refuses_in_time_and_cancels_its_question(
    system_bus: PrivateBus, fake_polkit: FakePolkit, gated: Gated
) -> None:
    fake_polkit.answer = "hang"
    result = act(system_bus, user="nobody", interactive=True)
    assert result.returncode != 0
    assert "polkit gave no answer" in result.stderr, result.stderr
    assert gated.interface.acted == 0
    [request] = fake_polkit.requests
    wait_for(lambda: fake_polkit.cancelled == [request.cancellation_id], STEP_TIMEOUT, "the cancellation")


def test_the_event_loop_keeps_answering_while_polkit_thinks(
    system_bus: PrivateBus, fake_polkit: FakePolkit, gated: Gated
) -> None:
    """While one call waits for polkit, the same connection answers others (nothing blocks the loop)."""
    fake_polkit.answer = "hang"
    waiting = act_in_background(system_bus)
    wait_for(lambda: fake_polkit.requests, STEP_TIMEOUT, "polkit to be asked")
    assert system_bus.busctl("introspect", "org.flamenco.GateTest", "/test", user="nobody").returncode == 0
    waiting.kill()
    waiting.wait(STEP_TIMEOUT)


def act_in_background(bus: PrivateBus) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["runuser", "-u", "nobody", "--", "busctl", f"--address={bus.address}", "call",
         "org.flamenco.GateTest", "/test", "org.flamenco.GateTest", "Act"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def test_in_group_reads_primary_and_supplementary_groups() -> None:
    assert polkit.in_group(NOBODY.pw_uid, grp.getgrgid(NOBODY.pw_gid).gr_name)
    assert polkit.in_group(0, "root")
    assert not polkit.in_group(NOBODY.pw_uid, "root")
    assert not polkit.in_group(NOBODY.pw_uid, "no-such-group-here")
    assert not polkit.in_group(2_000_000_000, "root"), "a uid without an account is in no group"
    supplementary = [
        (group.gr_name, pwd.getpwnam(member))
        for group in grp.getgrall()
        for member in group.gr_mem
        if _has_account(member) and pwd.getpwnam(member).pw_gid != group.gr_gid
    ]
    if not supplementary:
        pytest.skip("no user with a supplementary group on this machine")
    name, user = supplementary[0]
    assert polkit.in_group(user.pw_uid, name)


def _has_account(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def test_an_authorizer_refuses_when_it_cannot_tell_who_called(
    system_bus: PrivateBus, loop_thread: LoopThread
) -> None:
    async def ask() -> DBusError | None:
        bus = await MessageBus(bus_address=system_bus.address).connect()
        try:
            await polkit.Authorizer(bus).authorize(":1.99999", "org.flamenco.worker.sleep")
        except DBusError as exc:
            return exc
        finally:
            bus.disconnect()
            await bus.wait_for_disconnect()
        return None

    error = loop_thread.run(ask())
    assert error is not None and error.type == polkit.NOT_AUTHORIZED
    assert "cannot tell who called org.flamenco.worker.sleep" in error.text
