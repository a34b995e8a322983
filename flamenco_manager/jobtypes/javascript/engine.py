"""The Python side of the job-script engine: one Node child process, spoken to in JSON lines.

Rules this module keeps:
- One child at a time, started on first use (or by start()), restarted by the next call after it
  died. Calls may come from several asyncio tasks; they take turns (like Flamenco, which compiles
  under a mutex), and every reply is matched to its request by id, so an abandoned (cancelled) call
  never hands its late answer to the next one.
- The child gets a clean environment (TZ and LANG only) and `/` as its working directory; its
  stderr goes to this module's logger.
- Everything a script did wrong comes back as ScriptProblem; EngineMissing means no child at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .locate import EngineMissing, parse_version, permission_flags

logger = logging.getLogger(__name__)

_HERE = Path(__file__).resolve().parent
RUNNER = _HERE / "runner.js"
PRELUDE = _HERE / "prelude.js"

# The child answers its first line once Node and the first warm sandbox are up (about 50 ms).
START_TIMEOUT = 15.0
# The child enforces the time limit itself; this much longer means the child itself is stuck.
REPLY_GRACE = 5.0
# After stdin closes the child exits at once; this long without exiting gets it killed.
CLOSE_GRACE = 2.0
# Longest reply line accepted from the child (the runner refuses results past 64 Mi characters).
READ_LIMIT = 256 * 1024 * 1024
# Outside the sandbox contexts (which allow it for Flamenco's sake) no code is made from strings:
# an object of the runner's realm that reaches a script (an error thrown while Node formats a stack
# near the stack limit) then gives no way to run code there. Dynamic import() is refused through
# the vm modules hook, which needs --experimental-vm-modules. Warnings about both are noise.
NODE_FLAGS = ("--disallow-code-generation-from-strings", "--experimental-vm-modules", "--no-warnings")
# Node's permission model (where the Node version has one) confines the child; tests switch it off
# to exercise the debugger-based location of thrown strings, which the permission model refuses.
USE_PERMISSION_MODEL = True


@dataclass(frozen=True)
class ScriptOutput:
    """What print()/alert() wrote while the script ran."""

    level: str  # "info" (print) or "warning" (alert)
    text: str


class ScriptProblem(Exception):
    """A job script failed: syntax error, a throw, missing JOB_TYPE/compileJob, or a limit."""

    def __init__(
        self,
        filename: str,
        message: str,
        line: int | None = None,
        column: int | None = None,
        output: tuple[ScriptOutput, ...] = (),
    ) -> None:
        self.filename = filename
        self.message = message
        self.line = line
        self.column = column
        self.output = output
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.filename}:{self.line}" if self.line is not None else self.filename
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class EngineLimits:
    time_limit: float = 5.0  # seconds per describe/compile (wall clock)
    memory_mib: int = 256  # per describe/compile


def job_type_of(filename: str) -> str:
    """Flamenco's job type name for a script file: the stem with "_" as "-"."""
    stem = filename[:-3] if filename.endswith(".js") else filename
    return stem.replace("_", "-")


def _child_env() -> dict[str, str]:
    env = {"LANG": os.environ.get("LANG", "C.UTF-8")}
    if "TZ" in os.environ:
        env["TZ"] = os.environ["TZ"]  # the Manager's local zone; unset means /etc/localtime for both
    return env


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class ScriptEngine:
    """Runs Flamenco job-type scripts (describe and compile) in a sandboxed Node child process."""

    def __init__(self, executable: str, limits: EngineLimits = EngineLimits()) -> None:
        self.executable = executable
        self.limits = limits
        self.version = ""
        self.inspector = False  # whether thrown strings are located by the debugger
        self._proc: asyncio.subprocess.Process | None = None
        self._stderr_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._next_id = 0
        self._out_of_memory = False  # the child's stderr said V8 ran out of heap (it then aborts)
        self._closed = False
        self._abandoned = 0  # requests sent whose callers were cancelled: the child still runs them
        self._node_version: tuple[int, int, int] | None = None

    # ---- lifecycle ----

    async def start(self) -> None:
        """Starts the child now (calls start it anyway); also undoes a close()."""
        self._closed = False
        async with self._lock:
            await self._ensure_child()

    async def close(self) -> None:
        """Stops the child at once, also during a call (which then fails); later calls fail too."""
        self._closed = True
        proc, self._proc = self._proc, None
        await self._stop(proc)

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs (for tests and diagnostics)."""
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    async def _ensure_child(self) -> asyncio.subprocess.Process:
        if self._closed:
            raise EngineMissing("the script engine was closed")
        if self._proc is not None and _alive(self._proc):
            return self._proc
        if self._proc is not None:
            await self._stop(self._proc)
            self._proc = None
        self._proc = await self._spawn()
        self._abandoned = 0
        return self._proc

    async def _version(self) -> tuple[int, int, int]:
        if self._node_version is None:
            self._node_version = await self._ask_version()
        return self._node_version

    async def _ask_version(self) -> tuple[int, int, int]:
        try:
            proc = await asyncio.create_subprocess_exec(
                self.executable,
                "--version",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                stdin=asyncio.subprocess.DEVNULL,
                env={},
                cwd="/",
            )
        except OSError as exc:
            raise EngineMissing(f"{self.executable}: cannot run it ({exc})") from exc
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), START_TIMEOUT)
        except TimeoutError as exc:
            proc.kill()
            await proc.wait()
            raise EngineMissing(f"{self.executable}: `--version` did not answer") from exc
        version = parse_version(out.decode(errors="replace"))
        if version is None:
            raise EngineMissing(f"{self.executable}: `--version` gave no Node.js version")
        return version

    async def _spawn(self) -> asyncio.subprocess.Process:
        version = await self._version()
        runner = str(RUNNER)
        flags = permission_flags(version, runner) if USE_PERMISSION_MODEL else []
        args = [self.executable, *NODE_FLAGS, *flags, runner]
        try:
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=_child_env(),
                cwd="/",
                limit=READ_LIMIT,
            )
        except OSError as exc:
            raise EngineMissing(f"{self.executable}: cannot start the script engine ({exc})") from exc
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        self._stderr_task = asyncio.create_task(self._log_stderr(proc.stderr, proc.pid))
        init = {
            "prelude": PRELUDE.read_text(encoding="utf-8"),
            "platform": "linux",
            "memoryMib": self.limits.memory_mib,
        }
        try:
            proc.stdin.write(json.dumps(init).encode() + b"\n")
            await proc.stdin.drain()
            line = await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT)
            hello = json.loads(line)
            if not isinstance(hello, dict) or hello.get("ready") is not True:
                raise ValueError(f"unexpected first line {line[:200]!r}")
        except (OSError, ValueError, TimeoutError) as exc:
            await self._stop(proc)
            reason = str(exc) or "no answer"
            raise EngineMissing(f"{self.executable}: the script engine did not start ({reason})") from exc
        self.version = str(hello.get("version", ""))
        self.inspector = hello.get("inspector") is True
        logger.info(
            "script engine started pid=%d node=%s permission=%s inspector=%s",
            proc.pid,
            self.version,
            "on" if flags else "off",
            "on" if self.inspector else "off",
        )
        return proc

    async def _log_stderr(self, stream: asyncio.StreamReader, pid: int) -> None:
        while True:
            try:
                line = await stream.readline()
            except ValueError:
                continue  # a line past READ_LIMIT: dropped
            except OSError:
                return
            if not line:
                return
            if b"heap out of memory" in line or b"Allocation failed" in line:
                self._out_of_memory = True
            logger.warning("script engine stderr pid=%d: %s", pid, line.decode(errors="replace").rstrip())

    async def _stop(self, proc: asyncio.subprocess.Process | None) -> None:
        if proc is None:
            return
        if proc.returncode is None:
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), CLOSE_GRACE)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        task, self._stderr_task = self._stderr_task, None
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, CLOSE_GRACE)

    # ---- requests ----

    async def describe(self, filename: str, source: str) -> dict[str, Any]:
        """The script's JOB_TYPE as plain JSON."""
        payload = await self._request("describe", filename, source, None)
        result = payload.get("result")
        if not isinstance(result, dict):
            raise ScriptProblem(filename, "does not define a proper JOB_TYPE object", output=_output(payload))
        return result

    async def compile(self, filename: str, source: str, job: dict[str, Any]) -> dict[str, Any]:
        """Runs compileJob(job) in a fresh sandbox; the authored job with its tasks and output."""
        payload = await self._request("compile", filename, source, json.dumps(job))
        result = payload.get("result")
        output = _output(payload)
        if not isinstance(result, dict) or not isinstance(result.get("tasks"), list):
            raise ScriptProblem(filename, "compileJob(job) gave no job", output=output)
        result["output"] = [{"level": o.level, "text": o.text} for o in output]
        return result

    async def _request(self, op: str, filename: str, source: str, job_json: str | None) -> dict[str, Any]:
        context = f"script={filename} job_type={job_type_of(filename)}"
        async with self._lock:
            self._next_id += 1
            request_id = self._next_id
            request = {
                "id": request_id,
                "op": op,
                "filename": filename,
                "source": source,
                "job": job_json,
                "timeLimit": self.limits.time_limit,
                "memoryMib": self.limits.memory_mib,
            }
            line = json.dumps(request).encode() + b"\n"
            self._out_of_memory = False
            proc = await self._send(line, filename)
            started = time.monotonic()
            try:
                # Abandoned requests run first in the child, each within the time limit.
                deadline = (1 + self._abandoned) * self.limits.time_limit + REPLY_GRACE
                reply = await asyncio.wait_for(self._reply(proc, request_id), deadline)
            except asyncio.CancelledError:
                self._abandoned += 1
                raise
            except TimeoutError:
                logger.error("script engine stuck, stopping it %s op=%s", context, op)
                await self._kill(proc)
                raise ScriptProblem(
                    filename, f"stopped after {self.limits.time_limit:g} s (time limit)"
                ) from None
            except (OSError, ValueError, EOFError) as exc:
                code = await self._kill(proc)
                logger.error("script engine stopped %s op=%s exit_code=%s error=%s", context, op, code, exc)
                if self._out_of_memory:
                    message = f"stopped: used more than {self.limits.memory_mib} MiB (memory limit)"
                else:
                    message = f"the script engine stopped while running the script (exit code {code})"
                raise ScriptProblem(filename, message) from None
        logger.debug("script ran %s op=%s seconds=%.3f", context, op, time.monotonic() - started)
        return _interpret(reply, filename, context)

    async def _send(self, line: bytes, filename: str) -> asyncio.subprocess.Process:
        """Writes one request line; a child found dead before it read anything is replaced once."""
        for attempt in (1, 2):
            proc = await self._ensure_child()
            assert proc.stdin is not None
            try:
                proc.stdin.write(line)
                await proc.stdin.drain()
            except OSError as exc:
                await self._kill(proc)
                if attempt == 2:
                    raise ScriptProblem(
                        filename, f"the script engine does not take requests ({exc})"
                    ) from None
                continue
            return proc
        raise AssertionError("unreachable")

    async def _reply(self, proc: asyncio.subprocess.Process, request_id: int) -> dict[str, Any]:
        assert proc.stdout is not None
        while True:
            line = await proc.stdout.readline()
            if not line:
                raise EOFError("the script engine closed its output")
            reply = json.loads(line)
            if not isinstance(reply, dict):
                raise ValueError("a reply that is not a JSON object")
            if reply.get("id") == request_id:
                return reply
            # The answer to a call that was cancelled while it waited: nobody wants it any more.
            self._abandoned = max(0, self._abandoned - 1)

    async def _kill(self, proc: asyncio.subprocess.Process) -> int | None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        code = await proc.wait()
        if self._proc is proc:
            self._proc = None
            await self._stop(proc)
        return code


def _alive(proc: asyncio.subprocess.Process) -> bool:
    """Whether the child still runs, also when asyncio has not yet noticed its death."""
    if proc.returncode is not None or (proc.stdout is not None and proc.stdout.at_eof()):
        return False
    try:
        # Looks without reaping (asyncio's child watcher does that) ...
        if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return False
    except ChildProcessError:
        return False
    # ... but a child that the watcher is reaping right now is no longer waitable: still a zombie.
    try:
        stat = Path(f"/proc/{proc.pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]


def _output(payload: dict[str, Any]) -> tuple[ScriptOutput, ...]:
    lines = payload.get("output")
    if not isinstance(lines, list):
        return ()
    return tuple(
        ScriptOutput(level=str(o.get("level", "info")), text=str(o.get("text", "")))
        for o in lines
        if isinstance(o, dict)
    )


def _interpret(reply: dict[str, Any], filename: str, context: str) -> dict[str, Any]:
    """The sandbox's payload on success; ScriptProblem for everything the script did wrong."""
    problem = reply.get("problem")
    if isinstance(problem, dict):
        raise ScriptProblem(
            filename,
            str(problem.get("message", "unknown problem")),
            _int_or_none(problem.get("line")),
            _int_or_none(problem.get("column")),
        )
    payload = reply.get("payload")
    if not isinstance(payload, dict):
        raise ScriptProblem(filename, "the sandbox returned no result")
    output = _output(payload)
    for item in output:
        level = logging.WARNING if item.level == "warning" else logging.INFO
        logger.log(level, "script output %s level=%s: %s", context, item.level, item.text)
    if "incomplete" in payload:
        raise ScriptProblem(filename, str(payload["incomplete"]), output=output)
    thrown = payload.get("thrown")
    if isinstance(thrown, dict):
        location = reply.get("location")
        line = column = None
        if isinstance(location, dict):
            line = _int_or_none(location.get("line"))
            column = _int_or_none(location.get("column"))
        raise ScriptProblem(filename, str(thrown.get("message", "")), line, column, output)
    return payload
