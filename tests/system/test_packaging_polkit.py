"""polkit decides who may act on the packaged worker in a booted Debian, and the group does without it.

Every call is a real busctl on the container's system bus, as root, as a member of the group
`flamenco` or as a user outside it; polkitd is Debian's own, started by bus activation.
"""

from __future__ import annotations

import pytest

from tests.support.nspawn import Container, missing_tools, wait_for
from tests.system import test_packaging as packaging
from tests.system.test_packaging import DBUS_ARGS, SETTLE, WORKER, Node

# The fixtures of test_packaging.py, under their own names (pytest looks fixtures up by name here).
_no_container_survives = packaging._no_container_survives
root, debs, upgrade_debs = packaging.root, packaging.debs, packaging.upgrade_debs
container, node = packaging.container, packaging.node

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(missing_tools() is not None, reason=missing_tools() or ""),
    # The first test also builds the .debs and the container's root filesystem (minutes, once).
    pytest.mark.timeout(1800),
]

ACTIONS = (
    "org.flamenco.worker.shutdown",
    "org.flamenco.worker.restart",
    "org.flamenco.worker.sleep",
    "org.flamenco.worker.wake",
    "org.flamenco.worker.cancel-request",
)
#: What an administrator writes to let one more user act on the worker.
OUTSIDER_RULE = """polkit.addRule(function(action, subject) {
    if (action.id.indexOf("org.flamenco.worker.") == 0 && subject.user == "outsider") {
        return polkit.Result.YES;
    }
});
"""


def status(ct: Container, user: str | None = None) -> str:
    return ct.busctl("get-property", *DBUS_ARGS, "Status", user=user).stdout.strip()


def wait_status(ct: Container, expected: str) -> None:
    wait_for(f"the worker {expected}", lambda: status(ct) == f's "{expected}"', SETTLE)


def with_users(node: Node) -> Container:
    """The node's container with a user outside the group `flamenco` and one in it."""
    ct = node.ct
    ct.run("useradd", "--no-create-home", "outsider")
    ct.run("useradd", "--no-create-home", "--groups", "flamenco", "operator1")
    assert status(ct) == 's "awake"'
    return ct


def test_polkit_decides_and_an_administrators_rule_lets_an_outsider_act(node: Node) -> None:
    ct = with_users(node)
    for action in ACTIONS:
        described = ct.run("pkaction", "--action-id", action, "--verbose").stdout
        assert (
            "auth_admin_keep" in described
            and "org.freedesktop.policykit.owner -> unix-user:flamenco" in described
        )

    refused = ct.busctl("call", *DBUS_ARGS, "Sleep", "b", "false", user="outsider", check=False)
    assert refused.returncode != 0
    text = refused.stderr
    assert (
        "Access denied" in text and "org.flamenco.worker.sleep" in text and "/etc/polkit-1/rules.d/" in text
    ), text
    assert status(ct, user="outsider") == 's "awake"', "reading stays open to everyone"
    assert ct.show(WORKER, "ActiveState")["ActiveState"] == "active"

    ct.busctl("call", *DBUS_ARGS, "Sleep", "b", "false", user="operator1")
    wait_status(ct, "asleep")
    ct.busctl("call", *DBUS_ARGS, "WakeUp")  # root
    wait_status(ct, "awake")

    ct.write("/etc/polkit-1/rules.d/60-flamenco-outsider.rules", OUTSIDER_RULE)
    # polkitd reloads its rules when a file in rules.d changes; until then the call is still refused.
    wait_for(
        "polkitd to take up the administrator's rule",
        lambda: (
            ct.busctl("call", *DBUS_ARGS, "Sleep", "b", "false", user="outsider", check=False).returncode == 0
        ),
        SETTLE,
        interval=0.5,
    )
    wait_status(ct, "asleep")

    journal = ct.journal(WORKER)
    assert "polkit decides who may act" in journal, journal
    assert "polkit is not available" not in journal, journal
    assert "refused by polkit (challenge)" in journal and "allowed by polkit" in journal, journal


@pytest.mark.parametrize("how", ["masked", "removed"])
def test_without_polkit_the_group_decides(node: Node, how: str) -> None:
    ct = with_users(node)
    if how == "masked":
        ct.run("systemctl", "stop", "polkit.service")
        ct.run("systemctl", "mask", "polkit.service")
    else:
        ct.run("apt-get", "remove", "-y", "-q", "polkitd")
        assert not ct.exists("/usr/share/dbus-1/system-services/org.freedesktop.PolicyKit1.service")

    refused = ct.busctl("call", *DBUS_ARGS, "ShutDown", "b", "false", user="outsider", check=False)
    assert refused.returncode != 0
    assert "Access denied" in refused.stderr and "group 'flamenco'" in refused.stderr, refused.stderr
    assert status(ct, user="outsider") == 's "awake"'

    ct.busctl("call", *DBUS_ARGS, "Sleep", "b", "false", user="operator1")
    wait_status(ct, "asleep")
    ct.busctl("call", *DBUS_ARGS, "WakeUp")  # root
    wait_status(ct, "awake")
    journal = ct.journal(WORKER)
    assert journal.count("polkit is not available") == 1, journal
