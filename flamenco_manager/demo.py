"""`make run`: a whole farm on this machine — manager, one worker on a private bus, a demo job.

State lives under ./run/ (SQLite database, task logs, worker credentials, and the processes' logs:
manager.log, worker.log, bus.log). The terminal keeps the banner and one line per task or worker status
change. The worker is supervised the way systemd would: exit code 47 (Restart) starts it again, 0 (Shut
Down) leaves it stopped.

Ctrl-C stops the farm in order: the worker first (it aborts its task and hands it back to the manager),
then the manager, then the bus. The children run in sessions of their own, so the terminal's SIGINT reaches
this supervisor only and the manager is still there when the worker hands its task back.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

RESTART_EXIT_CODE = 47
#: Preferred port (the packaged default); another free one is used when it is taken.
PORT = 8080
#: How often the terminal's status lines are refreshed from the API; a person reading them needs no more.
STATUS_POLL_INTERVAL = 0.5
#: The manager's start-up on a loaded machine; it usually answers within a second.
MANAGER_START_TIMEOUT = 15.0
#: The worker hands its task back to the manager before exiting; that is one HTTP round trip or two.
WORKER_STOP_TIMEOUT = 30.0
#: The manager and the bus stop at once; after this they are killed.
STOP_TIMEOUT = 15.0

BUS_CONF = """<busconfig><type>session</type><listen>unix:path={sock}</listen><auth>EXTERNAL</auth>
<policy context="default"><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/>
<allow own="*"/></policy></busconfig>"""


def free_port(preferred: int) -> int:
    """`preferred` if it can be listened on, else any free port.

    SO_REUSEADDR as the manager's own listening socket uses it: a port left in TIME_WAIT by the previous
    run counts as free, so re-running within a minute keeps the same address.
    """
    for port in (preferred, 0):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeError("no free port")


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def wait_http(url: str, proc: subprocess.Popen[bytes], stopping: threading.Event) -> None:
    deadline = time.monotonic() + MANAGER_START_TIMEOUT
    while time.monotonic() < deadline and not stopping.is_set():
        if proc.poll() is not None:
            raise SystemExit(f"the manager exited with code {proc.returncode}; see run/manager.log")
        try:
            get_json(url + "api/v3/version")
            return
        except (OSError, ValueError):
            stopping.wait(0.1)
    if not stopping.is_set():
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
        return str(json.loads(resp.read())["id"])


class StatusLines:
    """One terminal line per change of a task's or a worker's status, from the manager's API."""

    def __init__(self, url: str, job_id: str) -> None:
        self._url = url
        self._job_id = job_id
        self._seen: dict[str, str] = {}

    def poll(self) -> None:
        try:
            tasks = get_json(f"{self._url}api/v3/jobs/{self._job_id}/tasks").get("tasks", [])
            workers = get_json(f"{self._url}api/v3/worker-mgt/workers").get("workers", [])
        except (OSError, ValueError, AttributeError):
            return  # the manager is starting or stopping; the next poll catches up
        for worker in workers:
            self._show(str(worker.get("id")), f"worker {worker.get('name')}", str(worker.get("status")))
        for task in tasks:
            task_id = str(task.get("id"))
            self._show(task_id, f"task {task.get('name')} ({task_id[:8]})", str(task.get("status")))

    def _show(self, key: str, what: str, status: str) -> None:
        if self._seen.get(key) != status:
            self._seen[key] = status
            print(f"{time.strftime('%H:%M:%S')} {what}: {status}", flush=True)


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


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

    stopping = threading.Event()

    def stop(*_: object) -> None:
        stopping.set()

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)

    logs: list[IO[bytes]] = []

    def log_file(name: str) -> IO[bytes]:
        handle = open(root / name, "ab")  # noqa: SIM115 - held for the child's lifetime
        logs.append(handle)
        return handle

    bus = manager = worker = None
    try:
        # dbus-daemon's stderr (e.g. the harmless "Failed to set fd limit" as non-root) goes to bus.log.
        bus = subprocess.Popen(
            ["dbus-daemon", "--nofork", f"--config-file={root / 'bus.conf'}", "--print-address=1"],
            stdout=subprocess.PIPE,
            stderr=log_file("bus.log"),
            start_new_session=True,
        )
        assert bus.stdout is not None
        bus.stdout.readline()
        address = f"unix:path={bus_sock}"
        manager = subprocess.Popen(
            [sys.executable, "-m", "flamenco_manager", "-config", str(root / "flamenco-manager.yaml")],
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=log_file("manager.log"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
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
        worker_log = log_file("worker.log")

        def start_worker() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                worker_cmd,
                env=worker_env,
                cwd=root,
                stdin=subprocess.DEVNULL,
                stdout=worker_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        wait_http(url, manager, stopping)
        if stopping.is_set():
            return 0
        worker = start_worker()
        job_id = submit_demo_job(url)
        busctl = f"busctl --address={address}"
        obj = "org.flamenco.Worker1 /org/flamenco/Worker1 org.flamenco.Worker1"
        print(
            f"""
Flamenco demo farm is running (state and logs in {root}).
  web interface:   {url}
  demo job:        {url}api/v3/jobs/{job_id}
  workers:         curl -s {url}api/v3/worker-mgt/workers
  logs:            tail -f {root}/worker.log {root}/manager.log
  worker over D-Bus:
    {busctl} get-property {obj} StatusText
    {busctl} call {obj} Sleep b false
    {busctl} call {obj} WakeUp
    {busctl} call {obj} Restart b true      # exits 47, started again like systemd would
    {busctl} call {obj} ShutDown b false    # finishes its task, then exits 0
Ctrl-C stops everything (the running task is handed back first).
""",
            flush=True,
        )
        status = StatusLines(url, job_id)
        worker_running = True
        while not stopping.is_set():
            status.poll()
            code = worker.poll()
            if worker_running and code is not None:
                if code == RESTART_EXIT_CODE:
                    print(f"demo: worker exited with {code} (Restart): starting it again", flush=True)
                    worker = start_worker()
                else:
                    print(
                        f"demo: worker exited with {code}; the manager keeps running (Ctrl-C to stop)",
                        flush=True,
                    )
                    worker_running = False
            stopping.wait(STATUS_POLL_INTERVAL)
        print("demo: stopping the worker (its task goes back to the manager), then the manager", flush=True)
        stop_process(worker, WORKER_STOP_TIMEOUT)
        status.poll()
        return 0
    finally:
        stop_process(worker, WORKER_STOP_TIMEOUT)
        stop_process(manager, STOP_TIMEOUT)
        stop_process(bus, STOP_TIMEOUT)
        for handle in logs:
            handle.close()
        bus_sock.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
