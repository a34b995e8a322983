"""What a command implementation gets to work with: its parameters, the task log and a process runner."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from flamenco_worker.execution.model import Command, TaskListener
from flamenco_worker.execution.params import Parameters
from flamenco_worker.execution.runner import ProcessRunner


@dataclass(frozen=True)
class CommandContext:
    command: Command
    listener: TaskListener
    runner: ProcessRunner

    @property
    def name(self) -> str:
        return self.command.name

    @property
    def params(self) -> Parameters:
        return Parameters(self.command)

    def log(self, line: str) -> None:
        self.listener.log_line(line)

    async def run_process(self, argv: Sequence[str], on_line: Callable[[str], None] | None = None) -> None:
        """Run a child to the end; non-zero exit raises CommandError, cancellation aborts it."""
        await self.runner.run(self.command.name, argv, on_line)
