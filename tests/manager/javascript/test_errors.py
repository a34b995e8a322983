"""Script problems name the file, the line (and column) in the script, and the message."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import flamenco_manager.jobtypes.javascript.engine as engine_module
from flamenco_manager.jobtypes.javascript import EngineLimits, ScriptEngine, ScriptProblem
from flamenco_manager.jobtypes.javascript.locate import parse_version

from .conftest import make_job


@pytest.fixture(params=["permission-model", "no-permission-model"])
async def either_engine(request: pytest.FixtureRequest, node: str) -> AsyncIterator[ScriptEngine]:
    """An engine with Node's permission model where the version has one, and one without it.

    Without the permission model the debugger locates thrown strings; with it (Node 20 and newer)
    the debugger is refused, and only literal `throw "..."` statements are found in the source.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine_module, "USE_PERMISSION_MODEL", request.param == "permission-model")
        eng = ScriptEngine(node, EngineLimits())
        await eng.start()
    try:
        yield eng
    finally:
        await eng.close()


async def problem_of(engine: ScriptEngine, source: str, op: str = "compile") -> ScriptProblem:
    with pytest.raises(ScriptProblem) as caught:
        if op == "compile":
            await engine.compile("broken.js", source, make_job({"frames": "1-3"}))
        else:
            await engine.describe("broken.js", source)
    assert caught.value.filename == "broken.js"
    return caught.value


HEAD = "const JOB_TYPE = { label: 'x' };\n"


async def test_thrown_string_literal(either_engine: ScriptEngine) -> None:
    source = HEAD + "function compileJob(job) {\n    print('before');\n    throw 'no frames setting!';\n}\n"
    problem = await problem_of(either_engine, source)
    assert (problem.message, problem.line, problem.column) == ("no frames setting!", 4, 5)
    assert str(problem) == "broken.js:4: no frames setting!"
    assert [o.text for o in problem.output] == ["before"]


async def test_thrown_computed_string(either_engine: ScriptEngine) -> None:
    source = (
        HEAD + "function compileJob(job) {\n  const what = 'frames';\n  throw 'no ' + what + ' setting';\n}\n"
    )
    problem = await problem_of(either_engine, source)
    assert problem.message == "no frames setting"
    if either_engine.inspector:
        assert (problem.line, problem.column) == (4, 3)
    else:
        assert problem.line is None
        assert str(problem) == "broken.js: no frames setting"


async def test_thrown_string_at_top_level(either_engine: ScriptEngine) -> None:
    source = "const n = 2;\nif (n > 1) {\n  throw `top ${n}`;\n}\nconst JOB_TYPE = {};\n"
    problem = await problem_of(either_engine, source, "describe")
    assert problem.message == "top 2"
    assert problem.line == (3 if either_engine.inspector else None)


async def test_thrown_number_and_object(engine: ScriptEngine) -> None:
    problem = await problem_of(engine, HEAD + "function compileJob(job) { throw 42; }\n")
    assert problem.message == "42"
    problem = await problem_of(
        engine, HEAD + "function compileJob(job) { throw { message: 'as object' }; }\n"
    )
    assert problem.message == "as object"
    problem = await problem_of(engine, HEAD + "function compileJob(job) { throw { code: 3 }; }\n")
    assert problem.message == '{"code":3}'


async def test_error_object_with_line_and_column(either_engine: ScriptEngine) -> None:
    source = (
        HEAD
        + "function helper() {\n    throw new Error('helper failed');\n}\n"
        + "function compileJob(job) { helper(); }\n"
    )
    problem = await problem_of(either_engine, source)
    assert (problem.message, problem.line, problem.column) == ("helper failed", 3, 11)


async def test_error_on_the_first_line_has_the_scripts_column(engine: ScriptEngine) -> None:
    problem = await problem_of(engine, "throw new Error('first');\n", "describe")
    assert (problem.line, problem.column) == (1, 7)


async def test_type_error_keeps_its_name(either_engine: ScriptEngine) -> None:
    source = HEAD + "function compileJob(job) {\n  return job.settings.missing.deeper;\n}\n"
    problem = await problem_of(either_engine, source)
    assert problem.message.startswith("TypeError: Cannot read properties of undefined")
    assert problem.line == 3


async def test_helper_error_points_at_the_calling_line(either_engine: ScriptEngine) -> None:
    source = HEAD + "function compileJob(job) {\n\n  const chunks = frameChunker('3-1', 2);\n}\n"
    problem = await problem_of(either_engine, source)
    assert str(problem) == 'broken.js:4: invalid range "3-1": empty range'
    assert problem.column == 18
    source = HEAD + "function compileJob(job) {\n  shellSplit('\"open');\n}\n"
    problem = await problem_of(either_engine, source)
    assert str(problem) == "broken.js:3: EOF found when expecting closing quote"
    source = HEAD + "function compileJob(job) {\n  author.Task('', 'blender');\n}\n"
    problem = await problem_of(either_engine, source)
    assert str(problem) == "broken.js:3: author.Task(name, type): name is required"


async def test_caught_and_rethrown(either_engine: ScriptEngine) -> None:
    source = HEAD + (
        "function compileJob(job) {\n"
        "  try { frameChunker('x', 1); } catch (e) { print('caught', e.message); }\n"
        "  throw 'after catching';\n"
        "}\n"
    )
    problem = await problem_of(either_engine, source)
    assert (problem.message, problem.line) == ("after catching", 4)
    assert problem.output[0].text.startswith('caught invalid range "x"')


@pytest.mark.parametrize(
    ("source", "line", "column", "message"),
    [
        (
            "const JOB_TYPE = {};\nfunction compileJob(job) {\n  let x = ;\n}\n",
            3,
            11,
            "SyntaxError: Unexpected token ';'",
        ),
        ("const JOB_TYPE = {;\n", 1, 19, "SyntaxError: Unexpected token ';'"),
        (
            "const JOB_TYPE = {};\nfunction compileJob(job) {\n",
            3,
            None,
            "SyntaxError: Unexpected end of input",
        ),
        (
            "const JOB_TYPE = {};\nwith (JOB_TYPE) {}\n",
            2,
            1,
            "SyntaxError: Strict mode code may not include a with statement",
        ),
    ],
    ids=["token", "first-line", "end", "strict"],
)
async def test_syntax_errors(
    engine: ScriptEngine, source: str, line: int, column: int | None, message: str
) -> None:
    problem = await problem_of(engine, source, "describe")
    assert (problem.message, problem.line) == (message, line)
    if column is not None:
        assert problem.column == column
    assert str(problem) == f"broken.js:{line}: {message}"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("function compileJob(job) {}\n", "does not define a JOB_TYPE object"),
        ("var JOB_TYPE;\nfunction compileJob(job) {}\n", "does not define a JOB_TYPE object"),
        ("const JOB_TYPE = 5;\nfunction compileJob(job) {}\n", "does not define a proper JOB_TYPE object"),
        ("const JOB_TYPE = null;\nfunction compileJob(job) {}\n", "does not define a proper JOB_TYPE object"),
        ("const JOB_TYPE = {};\n", "does not define a compileJob(job) function"),
        ("const JOB_TYPE = {};\nconst compileJob = 'no';\n", "does not define a compileJob(job) function"),
    ],
)
@pytest.mark.parametrize("op", ["describe", "compile"])
async def test_incomplete_scripts(engine: ScriptEngine, source: str, message: str, op: str) -> None:
    problem = await problem_of(engine, source, op)
    assert problem.message == message
    assert str(problem) == f"broken.js: {message}"


async def test_globals_defined_other_ways_count(engine: ScriptEngine) -> None:
    source = "globalThis.JOB_TYPE = { label: 'g' };\nvar compileJob = function (job) {};\n"
    assert await engine.describe("other.js", source) == {"label": "g"}
    source = "let JOB_TYPE = { label: 'l' };\nconst compileJob = (job) => {};\n"
    assert await engine.describe("other.js", source) == {"label": "l"}


async def test_problem_str_without_line() -> None:
    assert str(ScriptProblem("a.js", "boom")) == "a.js: boom"
    assert str(ScriptProblem("a.js", "boom", 42, 3)) == "a.js:42: boom"


async def test_debugger_is_used_exactly_when_no_permission_model_refuses_it(
    either_engine: ScriptEngine, request: pytest.FixtureRequest
) -> None:
    version = parse_version(either_engine.version)
    assert version is not None
    permission = request.node.callspec.params["either_engine"] == "permission-model"
    assert either_engine.inspector is (not permission or version[0] < 20)
