"""The prologue every recipe kind's run starts with, written once.

A run goes through the same steps whatever its kind; only the model in the middle
differs (a pretrained encoder, a teacher and its student, a teacher to shrink):

1. :func:`prepare_context`: an identical finished run is reused; the backend must
   declare the kind's capability; the task is resolved.
2. the kind's own model step, then :meth:`RunContext.read_data`: the tokenizer, the
   model's length checks, the data.
3. :meth:`RunContext.open`: the backend is created (the framework imported) and the
   run directory prepared.

Order matters for the user: every check that can fail cheaply (run directory,
model, data) runs before the framework is imported or anything is written, so a
bad input costs a second and leaves nothing behind.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from zoo_core.backend import Backend
from zoo_core.data.splits import resolve_task
from zoo_core.data.tokenizer import WordPieceTokenizer
from zoo_core.models.config import BertConfig
from zoo_core.plugins import create_backend, require_capability, require_precisions
from zoo_core.recipes.kinds import KINDS
from zoo_core.runners.common import Say, TaskData, check_lengths, load_task_data, reuse_finished, speaker
from zoo_core.runners.stage import RunResult
from zoo_core.runs import RunDir
from zoo_core.tasks import Task


@dataclass
class RunContext:
    """One run of a recipe, as far as it has been prepared (see the module docstring).

    ``tokenizer`` and ``data`` are set by :meth:`read_data`, ``backend`` (unless passed
    in) and ``rundir`` by :meth:`open`.
    """

    recipe: Any
    backend_name: str
    console: Console
    restart: bool
    progress: bool
    say: Say
    #: the recipe as JSON: what the run directory records and compares
    resolved: dict[str, Any]
    task: Task
    #: ``backend_options.<backend_name>`` of the recipe
    options: dict[str, Any]
    #: ``time.perf_counter()`` when the run began (before a teacher's run, if any)
    started: float
    backend: Backend | None = None
    tokenizer: WordPieceTokenizer | None = field(default=None, repr=False)
    data: TaskData | None = field(default=None, repr=False)
    rundir: RunDir | None = None

    def read_data(self, config: BertConfig, vocab_path: Path, lowercase: bool, news: str) -> TaskData:
        """The task's data, tokenised with ``vocab_path``, after checking ``config`` can embed it.

        ``news`` is said between the checks and the reading (which model, which data).
        """
        self.tokenizer = WordPieceTokenizer(vocab_path, lowercase=lowercase)
        check_lengths(config, self.tokenizer, self.recipe.data.max_seq_length)
        self.say(news)
        self.data = load_task_data(self.task, self.recipe.data, self.tokenizer, self.say)
        return self.data

    def open(self) -> tuple[Backend, RunDir]:
        """The backend (created now unless passed in) and the prepared run directory."""
        if self.backend is None:
            self.backend = create_backend(self.backend_name, self.recipe.device, self.options)
        self.rundir = RunDir(self.recipe.run_dir, writer=self.backend.rank == 0)
        self.rundir.prepare(self.resolved, self.restart)
        return self.backend, self.rundir


def prepare_context(
    recipe: Any,
    backend_name: str,
    *,
    console: Console,
    restart: bool,
    progress: bool,
    backend: Backend | None = None,
) -> RunContext | RunResult:
    """The start of a run of ``recipe`` on ``backend_name``, or the result of an identical finished run.

    Raises before anything is written if the run directory holds another recipe's run,
    the backend lacks the capability the recipe's kind needs (:data:`~zoo_core.recipes.kinds.KINDS`)
    or the task cannot be resolved.  ``backend`` may
    be passed in already built (tests do); otherwise :meth:`RunContext.open` creates it
    from the recipe's device and options.
    """
    started = time.perf_counter()
    resolved = recipe.model_dump(mode="json")
    if (done := reuse_finished(RunDir(recipe.run_dir), resolved, restart, console)) is not None:
        return done
    say = speaker(console, progress)
    require_capability(backend_name, KINDS[recipe.kind].capability)
    require_precisions(backend_name, recipe.device, recipe)
    return RunContext(
        recipe=recipe,
        backend_name=backend_name,
        console=console,
        restart=restart,
        progress=progress,
        say=say,
        resolved=resolved,
        task=resolve_task(recipe.task, recipe.data),
        options=recipe.backend_options.get(backend_name, {}),
        started=started,
        backend=backend,
    )
