"""Child processes for real: output handling, exit codes, process groups, abort, kill, OOM score."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import time
from collections.abc import Iterator

import pytest

from flamenco_worker.execution import Command, CommandError, Executor, process
from tests.worker.execution_fakes import (
    RecordingListener,
    own_oom_score_adj,
    proc_status,
    wait_until_gone,
    write_script,
    zombie_children,
)


def sh(script: str, *, steps: int = 0) -> Command:
    return Command("exec", {"exe": "/bin/sh", "args": ["-c", script]}, total_step_count=steps)


async def run_sh(script: str, *, oom_score_adjust: int | None = None) -> RecordingListener:
    listener = RecordingListener()
    await Executor(listener, oom_score_adjust=oom_score_adjust).run([sh(script)])
    return listener


@pytest.fixture(autouse=True)
def no_zombies_left() -> Iterator[None]:
    yield
    assert zombie_children(os.getpid()) == []


async def test_output_lines_carry_the_pid_and_merge_stderr() -> None:
    listener = await run_sh("echo out; echo err >&2; echo $$")
    pid = int(listener.output()[-1])
    assert listener.lines[:3] == ["going to run:", "", "    /bin/sh -c 'echo out; echo err >&2; echo $$'"]
    assert listener.lines[3:] == [f"pid={pid} > out", f"pid={pid} > err", f"pid={pid} > {pid}"]


async def test_stdin_is_closed() -> None:
    listener = await run_sh("cat; echo read-done")
    assert listener.output() == ["read-done"]


async def test_child_is_leader_of_its_own_process_group_and_session() -> None:
    listener = await run_sh("ps -o pid=,pgid=,sid= -p $$")
    pid, pgid, sid = (int(field) for field in listener.output()[0].split())
    assert pid == pgid == sid
    assert os.getpgid(0) != pgid


async def test_non_zero_exit_names_command_and_code() -> None:
    with pytest.raises(CommandError) as caught:
        await run_sh("exit 3")
    assert str(caught.value) == "exec: command exited abnormally with code 3"
    assert caught.value.command == "exec"


async def test_death_by_signal_is_reported() -> None:
    with pytest.raises(CommandError, match="killed by SIGSEGV"):
        await run_sh("kill -SEGV $$")


async def test_long_line_split_and_invalid_utf8_replaced() -> None:
    # 100 000 two-byte characters: 200 000 bytes, several 40 KiB pieces, each cut between characters.
    listener = await run_sh(
        "python3 -c \"import sys; sys.stdout.write('é' * 100000 + '\\n'); sys.stdout.flush()\"; "
        "printf 'bad \\377\\376 bytes\\n'; printf 'last without newline'"
    )
    lines = listener.output()
    long_pieces = lines[:-2]
    assert len(long_pieces) == 5
    assert all(len(piece.encode()) <= 40 * 1024 for piece in long_pieces)
    assert "".join(long_pieces) == "é" * 100000
    assert lines[-2:] == ["bad \ufffd\ufffd bytes", "last without newline"]


async def test_cannot_start_is_a_command_error(tmp_path: pathlib.Path) -> None:
    script = tmp_path / "no-interpreter"
    write_script(script, "#!/nonexistent/interpreter\n")
    with pytest.raises(CommandError, match=r"^exec: cannot start .*no-interpreter"):
        await Executor(RecordingListener()).run([Command("exec", {"exe": str(script)})])


async def test_leftover_grandchild_is_killed_when_the_child_exits() -> None:
    listener = await run_sh("sleep 300 & echo grandchild=$!")
    grandchild = int(listener.output()[0].removeprefix("grandchild="))
    assert await wait_until_gone(grandchild) is None


async def test_output_held_open_outside_the_group_does_not_hang(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process, "OUTPUT_DRAIN_TIMEOUT", 0.2)
    # setsid leaves the process group (so it is not killed) but keeps the output pipe open.
    listener = await run_sh("setsid sleep 30 & echo escaped=$!")
    escaped = int(listener.output()[0].removeprefix("escaped="))
    try:
        assert proc_status(escaped) is not None, "outside the group, so not killed with it"
    finally:
        os.kill(escaped, signal.SIGKILL)
    assert await wait_until_gone(escaped) is None


async def abort_while_running(
    script: str, ready_pattern: str, listener: RecordingListener
) -> tuple[asyncio.Task[None], float]:
    running = asyncio.create_task(Executor(listener).run([sh(script)]))
    await listener.wait_for_output(ready_pattern)
    started = time.monotonic()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    return running, time.monotonic() - started


async def test_abort_kills_child_and_grandchild_and_reaps() -> None:
    listener = RecordingListener()
    await abort_while_running("sleep 300 & echo grandchild=$!; wait", r"grandchild=\d+", listener)
    (child,) = listener.pids()
    grandchild = int((await listener.wait_for_output(r"grandchild=(\d+)"))[1])
    assert proc_status(child) is None, "the child must be reaped before run() returns"
    assert await wait_until_gone(grandchild) is None


async def test_abort_escalates_to_sigkill_after_the_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process, "ABORT_GRACE", 0.3)
    listener = RecordingListener()
    _, took = await abort_while_running(
        "trap 'echo got-term' TERM; echo ready; while :; do sleep 0.05; done", "ready", listener
    )
    (child,) = listener.pids()
    assert "got-term" in listener.output(), "SIGTERM must come first"
    assert took >= 0.3
    assert proc_status(child) is None


async def test_second_cancel_skips_the_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process, "ABORT_GRACE", 60.0)
    listener = RecordingListener()
    running = asyncio.create_task(Executor(listener).run([sh("trap '' TERM; echo ready; sleep 300")]))
    await listener.wait_for_output("ready")
    running.cancel()
    await asyncio.sleep(0.2)
    assert not running.done(), "the first cancel waits for the grace"
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    (child,) = listener.pids()
    assert proc_status(child) is None


async def test_kill_now_kills_the_group_at_once() -> None:
    listener = RecordingListener()
    executor = Executor(listener)
    running = asyncio.create_task(executor.run([sh("trap '' TERM; sleep 300 & echo gc=$!; wait")]))
    grandchild = int((await listener.wait_for_output(r"gc=(\d+)"))[1])
    executor.kill_now()
    with pytest.raises(CommandError, match="killed by SIGKILL"):
        await running
    (child,) = listener.pids()
    assert proc_status(child) is None
    assert await wait_until_gone(grandchild) is None
    executor.kill_now()  # nothing running: a no-op


async def test_oom_score_adjust_applies_to_the_child_only() -> None:
    ours = own_oom_score_adj()
    listener = await run_sh(
        "echo $$; cat /proc/self/oom_score_adj; sh -c 'cat /proc/self/oom_score_adj'", oom_score_adjust=700
    )
    (pid,) = listener.pids()
    # Set before exec under the same pid: the logged pid is the real program's, and it forks with 700.
    assert listener.output() == [str(pid), "700", "700"]
    assert own_oom_score_adj() == ours


async def test_oom_score_adjust_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match=r"outside 0\.\.1000"):
        Executor(RecordingListener(), oom_score_adjust=1001)


async def test_failing_listener_does_not_break_reading() -> None:
    class Grumpy(RecordingListener):
        def log_line(self, line: str) -> None:
            super().log_line(line)
            if line.endswith("> boom"):
                raise RuntimeError("listener broke")

    listener = Grumpy()
    await Executor(listener).run([sh("echo boom; echo after")])
    assert listener.output() == ["boom", "after"]


async def test_chatty_child_loses_no_line() -> None:
    listener = RecordingListener()
    count = 200_000
    await Executor(listener).run([sh(f"seq 1 {count}")])
    assert listener.output() == [str(n) for n in range(1, count + 1)]


async def test_a_task_process_does_not_inherit_the_daemons_systemd_plumbing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    daemon_only = {
        "NOTIFY_SOCKET": "/run/systemd/notify",
        "WATCHDOG_PID": str(os.getpid()),
        "WATCHDOG_USEC": "30000000",
        "LISTEN_PID": str(os.getpid()),
        "LISTEN_FDS": "1",
        "LISTEN_FDNAMES": "http",
        "JOURNAL_STREAM": "8:1234",
    }
    for key, value in {**daemon_only, "RENDER_KEEP_ME": "yes"}.items():
        monkeypatch.setenv(key, value)
    listener = await run_sh("env")
    seen = {line.split("=", 1)[0] for line in listener.output()}
    assert "RENDER_KEEP_ME" in seen and "PATH" in seen
    assert seen & set(daemon_only) == set()
