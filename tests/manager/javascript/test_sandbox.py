"""What a job script must not reach, and what it cannot break: each attempt is refused or contained,
and the engine keeps working afterwards."""

from __future__ import annotations

import asyncio
import os
import pathlib
from collections.abc import AsyncIterator

import pytest

import flamenco_manager.jobtypes.javascript.engine as engine_module
from flamenco_manager.jobtypes.javascript import EngineLimits, EngineMissing, ScriptEngine, ScriptProblem
from flamenco_manager.jobtypes.javascript.locate import parse_version
from tests.support.waiting import wait_for

from .conftest import evaluate, make_job, running_engine, value_script

HEALTHY = "return frameChunker('1-4', 2);"


async def assert_still_works(engine: ScriptEngine) -> None:
    assert await evaluate(engine, HEALTHY) == ["1,2", "3,4"]


@pytest.mark.parametrize(
    "module", ["fs", "child_process", "net", "worker_threads", "vm", "node:fs", "./other.js"]
)
async def test_require_of_node_modules_is_refused(engine: ScriptEngine, module: str) -> None:
    with pytest.raises(ScriptProblem) as caught:
        await evaluate(engine, f"return require({module!r});")
    assert caught.value.message == f"module {module} is not available to job scripts"
    assert caught.value.line == 2
    await assert_still_works(engine)


async def test_process_is_flamencos_small_module(engine: ScriptEngine) -> None:
    found = await evaluate(
        engine,
        """
        return {
            keys: Object.keys(process).sort(),
            cwd: process.cwd(),
            platform: process.platform,
            env: typeof process.env,
            binding: typeof process.binding,
            mainModule: typeof process.mainModule,
            exit: typeof process.exit,
        };
        """,
    )
    assert found == {
        "keys": ["platform"],
        "cwd": "/",
        "platform": "linux",
        "env": "undefined",
        "binding": "undefined",
        "mainModule": "undefined",
        "exit": "undefined",
    }
    with pytest.raises(ScriptProblem, match=r"process\.binding is not a function"):
        await evaluate(engine, "return process.binding('fs');")
    await assert_still_works(engine)


async def test_constructor_chains_stay_inside_the_sandbox(engine: ScriptEngine) -> None:
    found = await evaluate(
        engine,
        """
        const viaGlobal = globalThis.constructor.constructor('return process')();
        const viaFunction = Function('return this')();
        const viaDate = (new Date()).constructor.constructor('return this')();
        const viaError = (new Error('x')).constructor.constructor('return globalThis')();
        const viaAuthor = author.Task.constructor('return typeof require === "function" && require')();
        let requireRefused = false;
        try { viaAuthor('fs'); }
        catch (e) { requireRefused = e.message === 'module fs is not available to job scripts'; }
        return {
            sameProcess: viaGlobal === process,
            sameGlobal: viaFunction === globalThis && viaDate === globalThis && viaError === globalThis,
            hostProcess: typeof viaFunction.process.binding,
            requireRefused,
        };
        """,
    )
    assert found == {
        "sameProcess": True,
        "sameGlobal": True,
        "hostProcess": "undefined",
        "requireRefused": True,
    }
    await assert_still_works(engine)


async def test_no_network_timers_or_node_globals(engine: ScriptEngine) -> None:
    names = [
        "fetch",
        "WebSocket",
        "XMLHttpRequest",
        "setTimeout",
        "setInterval",
        "setImmediate",
        "Buffer",
        "module",
        "exports",
        "__filename",
        "__dirname",
        "global",
        "WebAssembly_compile",
    ]
    found = await evaluate(engine, f"return {names!r}.map((n) => [n, typeof globalThis[n]]);")
    assert dict(found) == dict.fromkeys(names, "undefined")


async def test_no_webassembly_shared_memory_or_atomics(engine: ScriptEngine) -> None:
    # Goja, Flamenco's engine, has none of them; WebAssembly memory lives outside the V8 heap.
    found = await evaluate(engine, "return [typeof WebAssembly, typeof SharedArrayBuffer, typeof Atomics];")
    assert found == ["undefined", "undefined", "undefined"]


async def test_buffers_past_the_memory_limit_are_refused(engine: ScriptEngine) -> None:
    found = await evaluate(
        engine,
        """
        const refused = [];
        const attempts = {
            buffer: () => new ArrayBuffer(2 ** 30),
            resizable: () => new ArrayBuffer(8, { maxByteLength: 2 ** 30 }),
            bytes: () => new Uint8Array(2 ** 29),
            doubles: () => new Float64Array(2 ** 26),
            arrayLike: () => new Int32Array({ length: 2 ** 27 }),
            viaConstructor: () => new (new Uint8Array(1).constructor)(2 ** 30),
            subclass: () => new (class Big extends Uint16Array {})(2 ** 28),
        };
        for (const [name, attempt] of Object.entries(attempts)) {
            try { attempt(); } catch (e) { if (e instanceof RangeError) refused.push(name); }
        }
        const small = new Uint8Array(new ArrayBuffer(1024));
        small.fill(3);
        return { refused, small: small.length, sum: small.reduce((a, b) => a + b, 0),
                 isView: small instanceof Uint8Array,
                 sub: class S extends Uint8Array {}.from([1, 2]).length };
        """,
    )
    assert found == {
        "refused": ["buffer", "resizable", "bytes", "doubles", "arrayLike", "viaConstructor", "subclass"],
        "small": 1024,
        "sum": 3072,
        "isView": True,
        "sub": 2,
    }


async def test_dynamic_import_fails(engine: ScriptEngine) -> None:
    # import() settles after the call has answered (Node's import hook is asynchronous), so all the
    # script can see is that nothing was loaded; the rejection is an error of the sandbox's own.
    source = """
let status = "pending";
try {
    import("fs").then(() => { status = "loaded"; }, (e) => { status = "refused"; });
    eval('import("child_process")').then(() => { status = "loaded"; }, () => {});
} catch (e) {
    status = "refused synchronously";
}
const JOB_TYPE = { get value() { return status; } };
function compileJob(job) {}
"""
    described = await engine.describe("import.js", source)
    assert described["value"] in {"pending", "refused"}
    await assert_still_works(engine)


@pytest.mark.slow
async def test_errors_of_the_runners_realm_give_no_code_execution(node: str) -> None:
    # Near the stack limit, the overflow can happen inside Node's own stack formatter: the script
    # then catches a RangeError of the runner's realm, whose Function constructor must be useless
    # and whose built-ins must not take getters that the runner's own code would then call.
    engine = ScriptEngine(node, EngineLimits(time_limit=60.0))  # 60 stack overflows take a while
    try:
        found = await evaluate(engine, PROBE_RUNNER_REALM)
    finally:
        await engine.close()
    assert found["runner"] > 0, "the probe no longer reaches the runner's realm: adjust it"
    assert found["escaped"] == 0
    assert found["refused"] == found["runner"]
    assert found["frozen"] == found["runner"]
    assert found["sandbox"] + found["runner"] == 60


PROBE_RUNNER_REALM = """
        Error.stackTraceLimit = 1;
        const seen = { sandbox: 0, runner: 0, escaped: 0, refused: 0, frozen: 0 };
        for (let pad = 0; pad < 60; pad++) {
            const recur = (...a) => { new Error().stack; return recur(...a); };
            try { recur(...Array(pad).fill(0)); } catch (e) {
                if (e instanceof RangeError) { seen.sandbox++; continue; }
                seen.runner++;
                try {
                    const p = e.constructor.constructor("return process")();
                    if (typeof p.binding === "function") seen.escaped++;
                } catch (x) {
                    if (x.name === "EvalError") seen.refused++;
                }
                try {
                    Object.getPrototypeOf(Object.getPrototypeOf(e)).polluted = () => 1;
                } catch (x) {
                    if (x instanceof TypeError) seen.frozen++;
                }
            }
        }
        return seen;
"""


async def test_stack_trace_api_gives_no_call_sites(engine: ScriptEngine) -> None:
    found = await evaluate(
        engine,
        """
        const results = {};
        try { Error.prepareStackTrace = (e, sites) => sites; results.assign = 'allowed'; }
        catch (e) { results.assign = e.constructor.name; }
        try {
            Object.defineProperty(Error, 'prepareStackTrace', { value: (e, s) => s });
            results.define = 'allowed';
        }
        catch (e) { results.define = e.constructor.name; }
        try { globalThis.Error = function Error() {}; results.swap = 'allowed'; }
        catch (e) { results.swap = e.constructor.name; }
        const probe = {};
        Error.captureStackTrace(probe);
        results.stackType = typeof new Error('x').stack;
        results.capturedType = typeof probe.stack;
        return results;
        """,
    )
    assert found == {
        "assign": "TypeError",
        "define": "TypeError",
        "swap": "TypeError",
        "stackType": "string",
        "capturedType": "string",
    }
    await assert_still_works(engine)


async def test_entry_point_cannot_be_replaced(engine: ScriptEngine) -> None:
    with pytest.raises(ScriptProblem, match="Cannot redefine property: __flamencoRun"):
        await evaluate(
            engine,
            "Object.defineProperty(globalThis, '__flamencoRun', { value: () => '{}' });\nreturn 1;",
        )
    with pytest.raises(ScriptProblem, match="SyntaxError"):
        await engine.describe(
            "shadow.js", "let __flamencoRun = 1;\nconst JOB_TYPE = {};\nfunction compileJob() {}"
        )
    await assert_still_works(engine)


async def test_eval_and_function_are_allowed_and_reach_only_the_sandbox(engine: ScriptEngine) -> None:
    found = await evaluate(
        engine,
        """
        const indirect = (0, eval)('this');
        return {
            direct: eval('6 * 7'),
            made: new Function('a', 'b', 'return a + b')(40, 2),
            sameGlobal: indirect === globalThis,
            env: eval('typeof process.env'),
            chunks: eval('frameChunker("1-3", 3)'),
        };
        """,
    )
    assert found == {"direct": 42, "made": 42, "sameGlobal": True, "env": "undefined", "chunks": ["1-3"]}


async def test_pollution_does_not_reach_the_next_run(engine: ScriptEngine) -> None:
    polluted = """
Object.prototype.polluted = "yes";
Array.prototype.push = function () { return -1; };
JSON.stringify = () => '{"result":{"name":"hijacked"}}';
globalThis.leftover = 1;
const JOB_TYPE = { label: "polluter" };
function compileJob(job) {
    const t = author.Task("a", "misc");
    job.addTask(t);
}
"""
    # The polluter's own result is still produced by the prelude's captured built-ins.
    job = await engine.compile("polluter.js", polluted, make_job())
    assert [t["name"] for t in job["tasks"]] == ["a"]
    found = await evaluate(
        engine,
        """
        const a = [];
        a.push(1);
        return { polluted: ({}).polluted === undefined, push: a.length, leftover: typeof leftover,
                 json: JSON.stringify({ a: 1 }) };
        """,
    )
    assert found == {"polluted": True, "push": 1, "leftover": "undefined", "json": '{"a":1}'}


@pytest.fixture
async def tight_engine(node: str) -> AsyncIterator[ScriptEngine]:
    async with running_engine(node, EngineLimits(time_limit=1.0, memory_mib=128)) as eng:
        yield eng


@pytest.mark.parametrize(
    "body",
    [
        "while (true) {}",
        "for (;;) { try { while (true) {} } catch (e) {} }",
        "Promise.resolve().then(() => { while (true) {} }); return 1;",
        "return /(a+)+$/.test('a'.repeat(40) + 'b');",
    ],
    ids=["loop", "loop-catching", "microtask-loop", "regexp-backtracking"],
)
@pytest.mark.slow
async def test_time_limit_stops_the_script(tight_engine: ScriptEngine, body: str) -> None:
    with pytest.raises(ScriptProblem) as caught:
        await evaluate(tight_engine, body)
    assert caught.value.message == "stopped after 1 s (time limit)"
    assert caught.value.line is None
    await assert_still_works(tight_engine)


@pytest.mark.slow
async def test_time_limit_in_compile_job(tight_engine: ScriptEngine) -> None:
    source = "const JOB_TYPE = {};\nfunction compileJob(job) {\n  while (true) {}\n}\n"
    with pytest.raises(ScriptProblem, match=r"^probe.js: stopped after 1 s \(time limit\)$"):
        await tight_engine.compile("probe.js", source, make_job())
    await assert_still_works(tight_engine)


@pytest.mark.parametrize(
    "body",
    [
        "const a = []; while (true) a.push({ n: a.length, s: 'x' + a.length });",
        "new Array(1 << 28).fill(0); return 1;",
        "const chunks = []; while (true) { const b = new Uint8Array(16 << 20); b.fill(1); chunks.push(b); }",
        "const b = new ArrayBuffer(2 ** 30); new Uint8Array(b).fill(7); return b.byteLength;",
        "const kept = []; while (true) { const b = new Uint8Array(100 << 20); b.fill(1); kept.push(b); }",
        "let s = 'x'; while (true) s = s + s;",
    ],
    ids=["objects", "big-array", "typed-arrays", "array-buffer-1GiB", "buffers-100MiB", "string-doubling"],
)
@pytest.mark.slow
async def test_memory_limit_stops_the_script(node: str, body: str) -> None:
    eng = ScriptEngine(node, EngineLimits(time_limit=20.0, memory_mib=128))
    try:
        with pytest.raises(ScriptProblem) as caught:
            await evaluate(eng, body)
        assert caught.value.message in {
            "stopped: used more than 128 MiB (memory limit)",
            "RangeError: Invalid string length",
            "RangeError: Array buffer allocation of 1073741824 bytes is over the memory limit (128 MiB)",
        }
        await assert_still_works(eng)
    finally:
        await eng.close()


async def test_deep_recursion_is_an_ordinary_error(engine: ScriptEngine) -> None:
    with pytest.raises(ScriptProblem) as caught:
        await evaluate(engine, "function down(n) { return down(n + 1) + 1; }\nreturn down(0);")
    assert caught.value.message == "RangeError: Maximum call stack size exceeded"
    assert caught.value.line == 2
    await assert_still_works(engine)


async def test_print_flood_is_capped(engine: ScriptEngine) -> None:
    source = (
        "const JOB_TYPE = {};\n"
        "function compileJob(job) {\n"
        "  for (let i = 0; i < 100000; i++) print('line', i, 'x'.repeat(100));\n"
        "  alert('not shown');\n"
        "}\n"
    )
    job = await engine.compile("flood.js", source, make_job())
    output = job["output"]
    assert len(output) == 201
    assert output[0]["text"] == "line 0 " + "x" * 100
    assert output[-1] == {"level": "warning", "text": "output truncated"}
    assert sum(len(o["text"]) for o in output) <= 64 * 1024 + 100


async def test_huge_single_print_is_capped(engine: ScriptEngine) -> None:
    source = (
        "const JOB_TYPE = {};\nfunction compileJob(job) { print('y'.repeat(1 << 20)); print('after'); }\n"
    )
    job = await engine.compile("flood.js", source, make_job())
    assert job["output"] == [{"level": "warning", "text": "output truncated"}]


async def test_child_runs_with_clean_environment_and_root_cwd(engine: ScriptEngine, node: str) -> None:
    pid = engine.pid
    assert pid is not None
    environ = _proc_file(pid, "environ")
    names = {entry.split(b"=", 1)[0].decode() for entry in environ if entry}
    assert names <= {"TZ", "LANG"}
    assert os.readlink(f"/proc/{pid}/cwd") == "/"
    cmdline = _proc_file(pid, "cmdline")
    assert b"--disallow-code-generation-from-strings" in cmdline
    assert b"--frozen-intrinsics" in cmdline
    version = parse_version(engine.version)
    assert version is not None
    if version[0] >= 20:
        assert any(arg in (b"--permission", b"--experimental-permission") for arg in cmdline)
        assert b"--allow-worker" in cmdline
        assert [arg for arg in cmdline if arg.startswith(b"--allow-fs-read=")] == [
            b"--allow-fs-read="
            + str(
                pathlib.Path(__file__).parents[3] / "flamenco_manager/jobtypes/javascript/runner.js"
            ).encode()
        ]
    else:
        assert b"--experimental-permission" not in cmdline


def _proc_file(pid: int, name: str) -> list[bytes]:
    return pathlib.Path(f"/proc/{pid}/{name}").read_bytes().split(b"\0")


def _dead(pid: int) -> bool:
    """The process has exited (a zombie waiting to be reaped counts as dead)."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):  # gone, or reaped between opening and reading
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _cpu_seconds(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def test_child_death_fails_the_request_and_the_next_call_restarts(node: str) -> None:
    eng = ScriptEngine(node, EngineLimits(time_limit=30.0, memory_mib=128))
    try:
        await eng.start()
        pid = eng.pid
        assert pid is not None
        base = _cpu_seconds(pid)
        running = asyncio.create_task(evaluate(eng, "while (true) {}"))
        await asyncio.to_thread(wait_for, lambda: _cpu_seconds(pid) > base + 0.3, 20, "the loop to run")
        os.kill(pid, 9)
        with pytest.raises(ScriptProblem, match="the script engine stopped while running the script"):
            await asyncio.wait_for(running, 20)
        await assert_still_works(eng)
        assert eng.pid not in (None, pid)
    finally:
        await eng.close()


async def test_idle_child_death_is_invisible_to_the_next_call(engine: ScriptEngine) -> None:
    pid = engine.pid
    assert pid is not None
    os.kill(pid, 9)
    await asyncio.to_thread(wait_for, lambda: _dead(pid), 10, "the child to die")
    await assert_still_works(engine)
    assert engine.pid != pid


async def test_close_leaves_no_process(node: str) -> None:
    eng = ScriptEngine(node, EngineLimits(time_limit=30.0, memory_mib=128))
    await eng.start()
    pid = eng.pid
    assert pid is not None
    running = asyncio.create_task(evaluate(eng, "while (true) {}"))
    base = _cpu_seconds(pid)
    await asyncio.to_thread(wait_for, lambda: _cpu_seconds(pid) > base + 0.2, 20, "the loop to run")
    await eng.close()
    with pytest.raises(ScriptProblem):
        await asyncio.wait_for(running, 20)
    assert _dead(pid)
    assert eng.pid is None


async def test_concurrent_calls_from_many_tasks(engine: ScriptEngine) -> None:
    source = (
        "const JOB_TYPE = { label: 'c' };\n"
        "function compileJob(job) {\n"
        "  for (const chunk of frameChunker(job.settings.frames, 1))\n"
        "    job.addTask(author.Task(chunk, 'misc'));\n"
        "}\n"
    )

    async def one(n: int) -> list[str]:
        job = await engine.compile("concurrent.js", source, make_job({"frames": f"1-{n}"}))
        return [t["name"] for t in job["tasks"]]

    results = await asyncio.wait_for(asyncio.gather(*(one(n) for n in range(1, 13))), 60)
    assert results == [[str(f) for f in range(1, n + 1)] for n in range(1, 13)]


async def test_cancelled_call_does_not_confuse_the_next(engine: ScriptEngine) -> None:
    slow = asyncio.create_task(
        evaluate(engine, "const end = Date.now() + 300; while (Date.now() < end) {} return 'slow';")
    )
    await asyncio.sleep(0)
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow
    assert await evaluate(engine, "return 'fast';") == "fast"
    assert await evaluate(engine, "return 'again';") == "again"


async def test_value_script_helper_is_sound(engine: ScriptEngine) -> None:
    assert await engine.describe("v.js", value_script("return 1;")) == {"value": 1}


async def test_calls_after_close_fail_until_start(node: str) -> None:
    eng = ScriptEngine(node, EngineLimits())
    await eng.start()
    await eng.close()
    with pytest.raises(EngineMissing, match="closed"):
        await evaluate(eng, "return 1;")
    assert eng.pid is None
    await eng.start()
    try:
        await assert_still_works(eng)
    finally:
        await eng.close()


@pytest.mark.slow
async def test_abandoned_slow_call_does_not_time_out_the_next(
    node: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A short grace, so that the Python-side deadline would pass if it ignored the abandoned call.
    monkeypatch.setattr(engine_module, "REPLY_GRACE", 0.5)
    eng = ScriptEngine(node, EngineLimits(time_limit=2.0))
    try:
        await eng.start()
        pid = eng.pid
        assert pid is not None
        base = _cpu_seconds(pid)
        slow = asyncio.create_task(
            evaluate(eng, "const end = Date.now() + 1800; while (Date.now() < end) {} return 1;")
        )
        await asyncio.to_thread(wait_for, lambda: _cpu_seconds(pid) > base + 0.2, 20, "the slow call to run")
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        # The child finishes the abandoned call first; this one still gets its full time.
        assert (
            await evaluate(eng, "const end = Date.now() + 1500; while (Date.now() < end) {} return 2;") == 2
        )
        assert eng.pid == pid
    finally:
        await eng.close()


async def test_console_writes_nowhere_and_keeps_the_protocol_intact(engine: ScriptEngine) -> None:
    # Flamenco has no console; V8's own one in the sandbox reaches neither stdout nor stderr.
    found = await evaluate(
        engine, "console.log('x\\n{\"id\": 99}'); console.error('y'); console.info({ a: 1 }); return 'after';"
    )
    assert found == "after"
    await assert_still_works(engine)
