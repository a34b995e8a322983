"""Flamenco's globals inside the sandbox behave as Flamenco's (goja) ones do."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flamenco_manager.jobtypes.javascript import EngineLimits, ScriptEngine, ScriptProblem

from .conftest import evaluate, make_job


async def each(engine: ScriptEngine, function: str, cases: list[list[Any]]) -> list[dict[str, Any]]:
    """Calls `function(...case)` for every case in one sandbox: {"ok": value} or {"error": message}."""
    body = f"""
    return {json.dumps(cases)}.map((args) => {{
        try {{ return {{ ok: {function}(...args) }}; }}
        catch (e) {{ return {{ error: e instanceof Error ? e.message : 'not an Error: ' + String(e) }}; }}
    }});
    """
    return await evaluate(engine, body)


CHUNKER_CASES: list[tuple[str, int, dict[str, Any]]] = [
    ("1-10", 3, {"ok": ["1-3", "4-6", "7-9", "10"]}),
    ("1,3,5-7", 10, {"ok": ["1,3,5-7"]}),
    (" 1 .. 4 ", 2, {"ok": ["1,2", "3,4"]}),
    ("1..10,20..25,40,3..8", 4, {"ok": ["1-4", "5-8", "9,10,20,21", "22-25", "40"]}),
    (" 1  .. 10,\t20..25\n,40   ", 4, {"ok": ["1-4", "5-8", "9,10,20,21", "22-25", "40"]}),
    ("47", 4, {"ok": ["47"]}),
    ("1-3", 3, {"ok": ["1-3"]}),
    ("1-5", 1, {"ok": ["1", "2", "3", "4", "5"]}),
    ("1-5", 100, {"ok": ["1-5"]}),
    ("1,2", 5, {"ok": ["1,2"]}),
    ("5,3,1-3", 10, {"ok": ["1-3,5"]}),
    ("+4-6", 10, {"ok": ["4-6"]}),
    ("10-1", 3, {"error": 'invalid range "10-1": empty range'}),
    ("   ", 4, {"error": 'invalid range "": empty range'}),
    ("1-10", 0, {"error": "invalid chunk size, must be positive number: 0"}),
    ("1-10", -3, {"error": "invalid chunk size, must be positive number: -3"}),
    (" 1 10", 4, {"error": 'invalid range "1 10":  1 10 (strconv.ParseInt: parsing "1 10": invalid syntax)'}),
    ("1-2-3", 2, {"error": 'invalid range "1-2-3": 1-2-3'}),
    ("a..b", 1, {"error": 'invalid range "a-b":  a-b (strconv.ParseInt: parsing "a": invalid syntax)'}),
    ("1,,2", 1, {"error": 'invalid range "1,,2":   (strconv.ParseInt: parsing "": invalid syntax)'}),
    (
        "99999999999999999999",
        1,
        {
            "error": 'invalid range "99999999999999999999":  99999999999999999999 '
            '(strconv.ParseInt: parsing "99999999999999999999": value out of range)'
        },
    ),
]


async def test_frame_chunker(engine: ScriptEngine) -> None:
    results = await each(engine, "frameChunker", [[frames, size] for frames, size, _ in CHUNKER_CASES])
    for (frames, size, expected), got in zip(CHUNKER_CASES, results, strict=True):
        assert got == expected, f"frameChunker({frames!r}, {size})"


async def test_frame_count(engine: ScriptEngine) -> None:
    cases = [["1-10"], ["10-1"], ["1..3,2-5"], ["7"], [" 1, 2 ,3 "], ["x"], [""]]
    assert await each(engine, "frameCount", cases) == [
        {"ok": 10},
        {"ok": 0},
        {"ok": 5},
        {"ok": 1},
        {"ok": 3},
        {"error": 'invalid range "x":  x (strconv.ParseInt: parsing "x": invalid syntax)'},
        {"error": 'invalid range "":   (strconv.ParseInt: parsing "": invalid syntax)'},
    ]


SHELL_CASES: list[tuple[str, dict[str, Any]]] = [
    ("one two  three", {"ok": ["one", "two", "three"]}),
    ("  \t-b\n-y\r\n", {"ok": ["-b", "-y"]}),
    ('a "b c" d', {"ok": ["a", "b c", "d"]}),
    ("a 'b \\\" c' d", {"ok": ["a", 'b \\" c', "d"]}),
    ("a\\ b c", {"ok": ["a b", "c"]}),
    ('"a\\"b"', {"ok": ['a"b']}),
    ('"a\\nb"', {"ok": ["anb"]}),
    ('x"y z"w', {"ok": ["xy zw"]}),
    ("", {"ok": []}),
    ('"" a', {"ok": ["", "a"]}),
    ("a #comment here\nb", {"ok": ["a", "b"]}),
    ("a#b", {"ok": ["a#b"]}),
    ("--python-expr 'import bpy; print(1)'", {"ok": ["--python-expr", "import bpy; print(1)"]}),
    ('"unterminated', {"error": "EOF found when expecting closing quote"}),
    ("'unterminated", {"error": "EOF found when expecting closing quote"}),
    ("trailing\\", {"error": "EOF found after escape character"}),
    ('"x\\', {"error": "EOF found after escape character"}),
]


async def test_shell_split(engine: ScriptEngine) -> None:
    results = await each(engine, "shellSplit", [[text] for text, _ in SHELL_CASES])
    for (text, expected), got in zip(SHELL_CASES, results, strict=True):
        assert got == expected, f"shellSplit({text!r})"


PATH_CASES: list[tuple[str, list[str], str]] = [
    ("basename", [""], "."),
    ("basename", ["justafile.txt"], "justafile.txt"),
    ("basename", ["/Linux path/with spaces.txt"], "with spaces.txt"),
    ("basename", ["C:\\ünicode\\is\\awésom.tar.gz"], "awésom.tar.gz"),
    (
        "basename",
        ["\\\\?\\UNC\\ComputerName\\SharedFolder\\Resource with ext.ension"],
        "Resource with ext.ension",
    ),
    ("basename", ["/trailing/slash/"], "slash"),
    ("basename", ["///"], "/"),
    ("dirname", [""], "."),
    ("dirname", ["justafile.txt"], "."),
    ("dirname", ["/"], "/"),
    ("dirname", ["/file-at-root"], "/"),
    ("dirname", ["C:\\file-at-root"], "C:"),
    ("dirname", ["/Linux path/with spaces.txt"], "/Linux path"),
    ("dirname", ["/Mixed path\\with/slash.txt"], "/Mixed path/with"),
    ("dirname", ["C:\\ünicode\\is\\awésom.tar.gz"], "C:/ünicode/is"),
    ("dirname", ["\\\\SERVER\\ünicode\\is\\awésom.tar.gz"], "//SERVER/ünicode/is"),
    ("dirname", ["/render/shot//frame.png"], "/render/shot/"),
    ("join", [], ""),
    ("join", [""], ""),
    ("join", ["", "", "a", "", "b", ""], "a/b"),
    ("join", ["/", "file-at-root"], "/file-at-root"),
    ("join", ["C:", "file-at-root"], "C:/file-at-root"),
    ("join", ["/Linux path", "with spaces.txt"], "/Linux path/with spaces.txt"),
    ("join", ["C:\\ünicode", "is\\awésom.tar.gz"], "C:/ünicode/is/awésom.tar.gz"),
    ("join", ["\\\\SERVER", "mount", "dir", "file.txt"], "//SERVER/mount/dir/file.txt"),
    ("join", ["/a/b/../c", "./d/"], "/a/c/d"),
    ("join", ["a", "../../b"], "../b"),
    ("join", ["/..", "x"], "/x"),
    ("stem", [""], ""),
    ("stem", ["stem.txt"], "stem"),
    ("stem", ["stem.tar.gz"], "stem.tar"),
    ("stem", ["/path/to/file.txt"], "file"),
    ("stem", ["C:\\path\\to\\file.txt"], "file"),
    ("stem", ["C:\\path/to\\mixed/slashes\\file.txt"], "file"),
    ("stem", ["\\\\?\\UNC\\ComputerName\\SharedFolder\\Resource with ext.ension"], "Resource with ext"),
]


async def test_path_module(engine: ScriptEngine) -> None:
    body = f"""
    return {json.dumps([[fn, args] for fn, args, _ in PATH_CASES])}.map(([fn, args]) => path[fn](...args));
    """
    results = await evaluate(engine, body)
    for (fn, args, expected), got in zip(PATH_CASES, results, strict=True):
        assert got == expected, f"path.{fn}{tuple(args)}"


async def test_require_gives_the_same_modules(engine: ScriptEngine) -> None:
    found = await evaluate(
        engine,
        """
        return [require('author') === author, require('path') === path, require('process') === process,
                process.cwd(), process.platform];
        """,
    )
    assert found == [True, True, True, "/", "linux"]


async def test_author_task_and_command(engine: ScriptEngine) -> None:
    found = await evaluate(
        engine,
        """
        const t = author.Task('  render-1  ', ' blender ');
        const c1 = author.Command('blender-render', { exe: 'blender' });
        const c2 = author.Command('ffmpeg', { fps: 24 }, 7);
        t.addCommand(c1);
        t.addCommand(c2);
        const errors = [];
        for (const [n, ty] of [['', 'x'], ['  ', 'x'], ['x', ''], ['x', '\\t'], [undefined, 'x']]) {
            try { author.Task(n, ty); } catch (e) { errors.push(e.message); }
        }
        return { name: t.name, type: t.type, priority: t.priority, sameId: t.uUID === t.uuid,
                 idLength: t.uUID.length, commands: t.commands, dependencies: t.dependencies, errors,
                 fresh: author.Task('a', 'b').uUID !== author.Task('a', 'b').uUID };
        """,
    )
    assert found == {
        "name": "render-1",
        "type": "blender",
        "priority": 50,
        "sameId": True,
        "idLength": 36,
        "commands": [
            {"name": "blender-render", "parameters": {"exe": "blender"}, "totalStepCount": 0},
            {"name": "ffmpeg", "parameters": {"fps": 24}, "totalStepCount": 7},
        ],
        "dependencies": [],
        "errors": [
            "author.Task(name, type): name is required",
            "author.Task(name, type): name is required",
            "author.Task(name, type): type is required",
            "author.Task(name, type): type is required",
            "author.Task(name, type): name is required",
        ],
        "fresh": True,
    }


JOB_SCRIPT = """
const JOB_TYPE = { label: "Fields" };
function compileJob(job) {
    print(job.jobID, job.workerTagUUID, job.jobType, job.storage.shamanCheckoutID, job.status);
    print(job.created instanceof Date, job.created.toISOString(), formatTimestampLocal(job.created));
    print(Array.isArray(job.tasks), job.tasks.length, job.name, job.priority);
    alert("careful", 1, { a: [1, 2] }, null, undefined, true);
    job.name = job.name + "-renamed";
    job.priority = 70;
    job.metadata.added = "yes";
    const first = author.Task("first", "misc");
    const second = author.Task("second", "misc");
    second.addDependency(first);
    job.addTask(first);
    job.addTask(second);
    // Flamenco copies a task into the job: what happens to it afterwards is not part of the job.
    first.addCommand(author.Command("late", {}));
    print(job.tasks.length, job.tasks[0].uuid === first.uuid);
}
"""


async def test_job_fields_and_authored_job(engine: ScriptEngine) -> None:
    given = make_job(
        {"x": 1},
        jobID="f1e2d3c4-0000-4000-8000-000000000001",
        workerTagUUID="tag-1",
        storage={"shamanCheckoutID": "checkout-7"},
    )
    job = await engine.compile("fields.js", JOB_SCRIPT, given)
    assert [o["text"] for o in job["output"]] == [
        "f1e2d3c4-0000-4000-8000-000000000001 tag-1 render-frames checkout-7 under-construction",
        "true 2026-11-30T09:12:13.123Z 2026-11-30_091213",
        "true 0 shot-010 50",
        'careful 1 {"a":[1,2]} null undefined true',
        "2 true",
    ]
    assert [o["level"] for o in job["output"]] == ["info", "info", "info", "warning", "info"]
    assert job["name"] == "shot-010-renamed"
    assert job["priority"] == 70
    assert job["metadata"] == {"project": "sprite", "added": "yes"}
    assert job["settings"] == {"x": 1}
    assert [t["name"] for t in job["tasks"]] == ["first", "second"]
    assert job["tasks"][0]["commands"] == []
    assert job["tasks"][1]["dependencies"] == [0]


async def test_dependency_on_a_task_never_added(engine: ScriptEngine) -> None:
    source = """const JOB_TYPE = {};
function compileJob(job) {
    const a = author.Task("a", "misc");
    const b = author.Task("b", "misc");
    b.addDependency(a);
    job.addTask(b);
}
"""
    with pytest.raises(ScriptProblem) as caught:
        await engine.compile("deps.js", source, make_job())
    assert caught.value.message == 'task "b" depends on task "a", which was never added to the job'


async def test_task_added_twice(engine: ScriptEngine) -> None:
    source = (
        "const JOB_TYPE = {};\n"
        'function compileJob(job) { const a = author.Task("a", "x"); job.addTask(a); job.addTask(a); }\n'
    )
    with pytest.raises(ScriptProblem, match='task "a" was added to the job more than once'):
        await engine.compile("twice.js", source, make_job())


@pytest.mark.parametrize(
    ("tz", "expected"),
    [
        ("UTC", "2026-11-30_091213"),
        ("Europe/Amsterdam", "2026-11-30_101213"),
        ("America/New_York", "2026-11-30_041213"),
    ],
)
async def test_format_timestamp_local_uses_the_managers_zone(
    node: str, monkeypatch: pytest.MonkeyPatch, tz: str, expected: str
) -> None:
    monkeypatch.setenv("TZ", tz)
    eng = ScriptEngine(node, EngineLimits())
    try:
        found = await evaluate(
            eng,
            "return [formatTimestampLocal(new Date('2026-11-30T09:12:13.999Z')), "
            "formatTimestampLocal(new Date(Date.UTC(5, 0, 2, 3, 4, 5)))];",
        )
    finally:
        await eng.close()
    assert found[0] == expected
    assert found[1][:4] == "0005" or found[1][:4] == "1905"


async def test_format_timestamp_local_wants_a_date(engine: ScriptEngine) -> None:
    with pytest.raises(ScriptProblem, match="formatTimestampLocal"):
        await evaluate(engine, "return formatTimestampLocal('2026-01-01');")


async def test_script_runs_in_strict_mode(engine: ScriptEngine) -> None:
    # Flamenco compiles job scripts in strict mode: assigning an undeclared name is an error.
    with pytest.raises(ScriptProblem) as caught:
        await evaluate(engine, "undeclared = 1;\nreturn 1;")
    assert caught.value.message == "ReferenceError: undeclared is not defined"
    assert caught.value.line == 2
