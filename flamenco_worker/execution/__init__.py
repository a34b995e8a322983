"""Running a task's commands on the worker: Flamenco's built-in commands, child processes, task listener."""

from flamenco_worker.execution.executor import Executor
from flamenco_worker.execution.model import Command, CommandError, TaskListener, parse_commands

__all__ = ["Command", "CommandError", "Executor", "TaskListener", "parse_commands"]
