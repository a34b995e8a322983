"""Who may act on a worker over the system bus: polkit when it runs, else root and the group `flamenco`.

The rules this module keeps (every action method goes through `Authorizer.authorize`):

- Only the actions are checked (ShutDown, Restart, Sleep, WakeUp, CancelRequest); introspecting and
  reading properties stay open to everyone.
- Root (uid 0) may always act, whatever polkit says or whether it answers at all.
- With polkit on the bus, polkit decides: one CheckAuthorization per call, for the caller's unique bus
  name (subject kind `system-bus-name`). The bus policy lets everyone reach the action methods, so an
  administrator's rules.d file can allow users outside the group. A "challenge" answer (polkit wants an
  administrator's password and could not ask for it) is a refusal that says how to allow it instead.
- Without polkit (its name has no owner and cannot be activated) the group decides, as a bus policy
  with `group="flamenco"` would: root and members of the group (primary or supplementary) may act.
  That is said once at info level.
- Any other polkit failure, a timeout included, refuses the call (fail closed).
- Nothing is cached: an administrator's change to rules.d or to the group applies to the next call
  (polkit's own `auth_admin_keep` does the remembering where an action asks for it).
- Every refusal is the D-Bus error `org.flamenco.Worker1.Error.NotAuthorized`, its text starting
  "Access denied:", naming the action and saying what would allow it.

On the session bus (development, tests) nothing is checked: only its own user can connect to it, and
polkit answers questions about the system, not about a user's private bus.

dbus-next (0.2) calls method handlers synchronously and does not hand them the message, so the check
sits in front of them as a bus message handler (`ActionGate`): it holds an action call back, asks, and
then either answers with the refusal or lets the call through to the exported interface.
"""

from __future__ import annotations

import asyncio
import grp
import itertools
import logging
import os
import pwd
from collections.abc import Mapping

from dbus_next import DBusError, Message, MessageType, Variant
from dbus_next.aio import MessageBus
from dbus_next.constants import MessageFlag

log = logging.getLogger(__name__)

#: Members of this group may act when polkit is not installed; the shipped rules.d file allows them too.
GROUP = "flamenco"
ACTION_PREFIX = "org.flamenco.worker."

POLKIT_NAME = "org.freedesktop.PolicyKit1"
POLKIT_PATH = "/org/freedesktop/PolicyKit1/Authority"
POLKIT_INTERFACE = "org.freedesktop.PolicyKit1.Authority"
#: CheckAuthorizationFlags: polkit may ask the caller's authentication agent for a password.
ALLOW_USER_INTERACTION = 1
#: The error of every refusal. Not org.freedesktop.DBus.Error.AccessDenied: sd-bus (busctl, systemctl)
#: shows only "Access denied" for that one and drops the text that says what would allow the call.
NOT_AUTHORIZED = "org.flamenco.Worker1.Error.NotAuthorized"

#: polkitd answers from its rules in milliseconds; it stops a runaway rules.d script after 15 s, and the
#: caller (sd-bus, busctl) gives up after 25 s: in between, the caller still gets our clear refusal.
POLKIT_TIMEOUT = 20.0
#: When the caller allows interactive authorization, a person may be typing a password in a dialog.
POLKIT_INTERACTIVE_TIMEOUT = 120.0
#: The bus daemon answers GetConnectionUnixUser from its own table; longer means the bus is stuck.
BUS_QUERY_TIMEOUT = 5.0

#: Errors that mean "polkit is not installed or cannot start": the group decides instead.
_POLKIT_ABSENT = (
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NameHasNoOwner",
)
#: Prefixes of activation failures (no polkit.service, or masked; a failed spawn without systemd).
_ACTIVATION_FAILED = ("org.freedesktop.systemd1.", "org.freedesktop.DBus.Error.Spawn.")

_cancellation_ids = itertools.count(1)


class PolkitAbsent(Exception):
    """polkit is not on the bus and cannot be activated."""


def refusal(text: str) -> DBusError:
    return DBusError(NOT_AUTHORIZED, f"Access denied: {text}")


def in_group(uid: int, group: str) -> bool:
    """True when the user `uid` is a member of `group`, as primary or supplementary group."""
    try:
        gid = grp.getgrnam(group).gr_gid
        user = pwd.getpwuid(uid)
    except KeyError:  # no such group here, or a uid without an account: not a member
        return False
    return gid in os.getgrouplist(user.pw_name, user.pw_gid)


class Authorizer:
    """Answers "may the sender of this call perform this action?" on one bus connection."""

    def __init__(
        self,
        bus: MessageBus,
        *,
        group: str = GROUP,
        timeout: float = POLKIT_TIMEOUT,
        interactive_timeout: float = POLKIT_INTERACTIVE_TIMEOUT,
    ) -> None:
        self._bus = bus
        self._group = group
        self._timeout = timeout
        self._interactive_timeout = interactive_timeout
        self._polkit_present: bool | None = None  # only to log changes once, never to skip a check

    async def authorize(self, sender: str, action_id: str, interactive: bool = False) -> None:
        """Return when `sender` may perform `action_id`; raise a NotAuthorized DBusError otherwise."""
        uid = await self._caller_uid(sender, action_id)
        if uid == 0:
            log.debug("action=%s sender=%s uid=0 allowed: root", action_id, sender)
            return
        try:
            allowed, challenge = await self._check_polkit(sender, action_id, interactive)
        except PolkitAbsent as exc:
            self._note_polkit(False, str(exc))
            if await asyncio.to_thread(in_group, uid, self._group):
                log.info("action=%s sender=%s uid=%d allowed: group %s", action_id, sender, uid, self._group)
                return
            log.info(
                "action=%s sender=%s uid=%d refused: not in group %s", action_id, sender, uid, self._group
            )
            raise refusal(
                f"{action_id} is for root and members of the group {self._group!r} "
                f"(polkit is not available here, so the group decides)"
            ) from None
        self._note_polkit(True, "")
        if allowed:
            log.info("action=%s sender=%s uid=%d allowed by polkit", action_id, sender, uid)
            return
        log.info(
            "action=%s sender=%s uid=%d refused by polkit%s",
            action_id,
            sender,
            uid,
            " (challenge)" if challenge else "",
        )
        if challenge:
            raise refusal(
                f"polkit allows {action_id} for uid {uid} only after an administrator authenticates, and "
                "this call could not ask for that (no polkit authentication agent, or the caller does not "
                "allow interactive authorization). An administrator can allow it with a "
                "rule in /etc/polkit-1/rules.d/ (see flamenco-worker(1)); members of the group "
                f"{self._group!r} may act already."
            )
        raise refusal(f"polkit does not allow {action_id} for uid {uid}.")

    async def _call(self, message: Message, limit: float) -> Message | None:
        """The reply, or None when none came within `limit` seconds or the connection failed."""
        try:
            return await asyncio.wait_for(self._bus.call(message), limit)
        except TimeoutError:
            return None
        except Exception as exc:  # the connection broke: no answer, so no permission
            log.warning("bus call %s.%s failed: %s", message.interface, message.member, exc)
            return None

    async def _caller_uid(self, sender: str, action_id: str) -> int:
        query = Message(
            destination="org.freedesktop.DBus",
            path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus",
            member="GetConnectionUnixUser",
            signature="s",
            body=[sender],
        )
        reply = await self._call(query, BUS_QUERY_TIMEOUT)
        if reply is None or reply.message_type is not MessageType.METHOD_RETURN:
            detail = "no answer" if reply is None else f"{reply.error_name}: {_text(reply)}"
            log.warning("action=%s sender=%s refused: caller's uid unknown (%s)", action_id, sender, detail)
            raise refusal(f"cannot tell who called {action_id} ({detail}).")
        uid: int = reply.body[0]
        return uid

    async def _check_polkit(self, sender: str, action_id: str, interactive: bool) -> tuple[bool, bool]:
        """(authorized, challenge) from polkit; PolkitAbsent when it is not there; refusal on errors."""
        cancellation_id = f"flamenco-worker-{os.getpid()}-{next(_cancellation_ids)}"
        check = Message(
            destination=POLKIT_NAME,
            path=POLKIT_PATH,
            interface=POLKIT_INTERFACE,
            member="CheckAuthorization",
            signature="(sa{sv})sa{ss}us",
            body=[
                ["system-bus-name", {"name": Variant("s", sender)}],
                action_id,
                {},
                ALLOW_USER_INTERACTION if interactive else 0,
                cancellation_id,
            ],
        )
        timeout = self._interactive_timeout if interactive else self._timeout
        reply = await self._call(check, timeout)
        if reply is None:
            self._cancel(cancellation_id)  # closes an agent's dialog that nobody answered
            log.warning(
                "action=%s sender=%s refused: polkit gave no answer in %.0fs", action_id, sender, timeout
            )
            raise refusal(f"polkit gave no answer about {action_id} within {timeout:.0f}s.")
        if reply.message_type is MessageType.METHOD_RETURN:
            authorized, challenge, _details = reply.body[0]
            return bool(authorized), bool(challenge)
        name = reply.error_name or ""
        if name in _POLKIT_ABSENT or name.startswith(_ACTIVATION_FAILED):
            raise PolkitAbsent(f"{name}: {_text(reply)}")
        log.warning(
            "action=%s sender=%s refused: polkit failed (%s: %s)", action_id, sender, name, _text(reply)
        )
        raise refusal(f"polkit could not check {action_id} ({name}: {_text(reply)}); no answer, no action.")

    def _cancel(self, cancellation_id: str) -> None:
        cancel = Message(
            destination=POLKIT_NAME,
            path=POLKIT_PATH,
            interface=POLKIT_INTERFACE,
            member="CancelCheckAuthorization",
            signature="s",
            body=[cancellation_id],
            flags=MessageFlag.NO_REPLY_EXPECTED,
        )
        if self._bus.connected:
            self._bus.send(cancel)

    def _note_polkit(self, present: bool, why: str) -> None:
        if self._polkit_present is present:
            return
        if present:
            log.info("polkit decides who may act on this worker (actions %s*)", ACTION_PREFIX)
        else:
            log.info(
                "polkit is not available (%s); only root and the group %s may act",
                why,
                self._group,
            )
        self._polkit_present = present


def _text(reply: Message) -> str:
    return str(reply.body[0]) if reply.body else ""


class ActionGate:
    """A bus message handler that holds action calls back until `Authorizer` allows them.

    `actions` maps method names of `interface` on `path` to polkit action ids. An allowed call is handed
    back to dbus-next, which dispatches it to the exported method as usual.
    """

    def __init__(
        self, bus: MessageBus, authorizer: Authorizer, path: str, interface: str, actions: Mapping[str, str]
    ) -> None:
        self._bus = bus
        self._authorizer = authorizer
        self._path = path
        self._interface = interface
        self._actions = dict(actions)
        self._passed: set[int] = set()  # ids of allowed messages on their way back to dbus-next
        self._pending: set[asyncio.Task[None]] = set()

    def handle(self, msg: Message) -> bool:
        """dbus-next message handler: True for a call this gate took over."""
        if msg.message_type is not MessageType.METHOD_CALL or msg.path != self._path:
            return False
        if msg.interface != self._interface or msg.member not in self._actions:
            return False
        if id(msg) in self._passed:
            self._passed.discard(id(msg))
            return False
        task = asyncio.get_running_loop().create_task(self._check(msg, self._actions[msg.member]))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return True

    async def _check(self, msg: Message, action_id: str) -> None:
        interactive = bool(msg.flags & MessageFlag.ALLOW_INTERACTIVE_AUTHORIZATION)
        try:
            await self._authorizer.authorize(msg.sender, action_id, interactive)
        except DBusError as exc:
            if self._bus.connected and not msg.flags & MessageFlag.NO_REPLY_EXPECTED:
                self._bus.send(Message.new_error(msg, exc.type, exc.text))
            return
        if not self._bus.connected:
            return
        self._passed.add(id(msg))
        try:
            # dbus-next has no public way to dispatch a message again; this is its own entry point for
            # every incoming message (tests/worker/test_polkit.py fails if a library change breaks it).
            self._bus._process_message(msg)
        finally:
            self._passed.discard(id(msg))

    async def close(self) -> None:
        """Drop calls still waiting for an answer (the connection is going away)."""
        for task in list(self._pending):
            task.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)
