"""Flamenco v3 job-type scripts (JavaScript), run unchanged in a sandboxed Node.js child process."""

from .engine import EngineLimits, ScriptEngine, ScriptOutput, ScriptProblem
from .locate import EngineMissing, find_engine

__all__ = ["EngineLimits", "EngineMissing", "ScriptEngine", "ScriptOutput", "ScriptProblem", "find_engine"]
