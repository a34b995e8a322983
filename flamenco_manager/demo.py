"""`make run`: a whole farm on this machine — manager, one worker on a private bus, a demo job.

State lives under ./run/ (SQLite database, task logs, worker credentials). The worker is supervised the way
systemd would: exit code 47 (Restart) starts it again, 0 (Shut Down) leaves it stopped. Ctrl-C stops all.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

RESTART_EXIT_CODE = 47
#: Preferred port (the packaged default); another free one is used when it is taken.
PORT = 8080

BUS_CONF = """<busconfig><type>session</type><listen>unix:path={sock}</listen><auth>EXTERNAL</auth>
<policy context="default"><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/>
<allow own="*"/></policy></busconfig>"""


def free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError("no free port")


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the manager exited with code {proc.returncode}; see run/manager.log")
        try:
            urllib.request.urlopen(url + "api/v3/version", timeout=1).read()
            return
        except (OSError, urllib.error.URLError):
            time.sleep(0.1)
    raise SystemExit("the manager did not start; see run/manager.log")


def submit_demo_job(url: str) -> str:
    body = {
        "name": "demo: echo and sleep",
        "type": "echo-sleep-test",
        "priority": 50,
        "submitter_platform": "linux",
        "settings": {"message": "Hello from the demo farm", "sleep_duration_seconds": 5, "sleep_repeats": 6},
    }
    req = urllib.request.Request(
        url + "api/v3/jobs",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())["id"]


def main() -> int:
    root = Path("run").resolve()
    root.mkdir(exist_ok=True)
    port = free_port(PORT)
    url = f"http://127.0.0.1:{port}/"
    (root / "flamenco-manager.yaml").write_text(
        "_meta: {version: 3}\n"
        f"listen: 127.0.0.1:{port}\n"
        f"database: {root / 'flamenco-manager.sqlite'}\n"
        f"local_manager_storage_path: {root / 'manager-storage'}\n"
        f"shared_storage_path: {root / 'shared'}\n"
    )
    bus_sock = root / "bus.sock"
    bus_sock.unlink(missing_ok=True)
    (root / "bus.conf").write_text(BUS_CONF.format(sock=bus_sock))
    procs: list[subprocess.Popen[bytes]] = []
    bus = subprocess.Popen(
        ["dbus-daemon", "--nofork", f"--config-file={root / 'bus.conf'}", "--print-address=1"],
        stdout=subprocess.PIPE,
    )
    procs.append(bus)
    assert bus.stdout is not None
    bus.stdout.readline()
    address = f"unix:path={bus_sock}"
    manager_log = open(root / "manager.log", "ab")  # noqa: SIM115 - held for the manager's lifetime
    manager = subprocess.Popen(
        [sys.executable, "-m", "flamenco_manager", "-config", str(root / "flamenco-manager.yaml")],
        cwd=root,
        stdout=manager_log,
        stderr=subprocess.STDOUT,
    )
    procs.append(manager)
    worker_env = {
        **os.environ,
        "DBUS_SESSION_BUS_ADDRESS": address,
        "FLAMENCO_HOME": str(root / "worker-home"),
    }
    worker_cmd = [
        sys.executable,
        "-m",
        "flamenco_worker",
        "-config",
        "/dev/null",
        "-manager",
        url,
        "-dbus",
        "session",
        "-name",
        "demo-worker",
        "-restart-exit-code",
        str(RESTART_EXIT_CODE),
    ]

    def start_worker() -> subprocess.Popen[bytes]:
        return subprocess.Popen(worker_cmd, env=worker_env, cwd=root)

    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        wait_http(url, manager)
        worker = start_worker()
        job_id = submit_demo_job(url)
        busctl = f"busctl --address={address}"
        obj = "org.flamenco.Worker1 /org/flamenco/Worker1 org.flamenco.Worker1"
        print(
            f"""
Flamenco demo farm is running (state in {root}).
  web interface:   {url}
  demo job:        {url}api/v3/jobs/{job_id}
  workers:         curl -s {url}api/v3/worker-mgt/workers
  worker over D-Bus:
    {busctl} get-property {obj} StatusText
    {busctl} call {obj} Sleep b false
    {busctl} call {obj} WakeUp
    {busctl} call {obj} Restart b true      # exits 47, started again like systemd would
    {busctl} call {obj} ShutDown b false    # finishes its task, then exits 0
Ctrl-C stops everything.
""",
            flush=True,
        )
        while not stopping:
            code = worker.poll()
            if code is not None:
                if code == RESTART_EXIT_CODE:
                    print(f"demo: worker exited with {code} (Restart): starting it again", flush=True)
                    worker = start_worker()
                else:
                    print(
                        f"demo: worker exited with {code}; the manager keeps running (Ctrl-C to stop)",
                        flush=True,
                    )
                    while not stopping:
                        time.sleep(0.2)
            time.sleep(0.2)
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
        return 0
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        manager_log.close()
        bus_sock.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
