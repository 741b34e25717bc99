"""Console output for runs: a rich progress bar on terminals, log lines elsewhere."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class TrainingProgress:
    """Progress bar with loss, learning rate, samples/s and GFLOP/s; silent when disabled."""

    def __init__(self, console: Console, total: int, description: str, enabled: bool = True) -> None:
        self.console = console
        self.enabled = enabled
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "loss {task.fields[loss]}  lr {task.fields[lr]}  {task.fields[speed]} samples/s"
                "{task.fields[gflops]}"
            ),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
            disable=not enabled or not console.is_terminal,
        )
        self._task = self._progress.add_task(description, total=total, loss="-", lr="-", speed="-", gflops="")

    def __enter__(self) -> TrainingProgress:
        self._progress.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def advance_to(
        self, step: int, loss: float | None, lr: float, speed: float | None, gflops: float | None = None
    ) -> None:
        """Move the bar to ``step`` and refresh its fields (``gflops``: the window's GFLOP/s, if known)."""
        self._progress.update(
            self._task,
            completed=step,
            loss="-" if loss is None else f"{loss:.4f}",
            lr=f"{lr:.2e}",
            speed="-" if speed is None else f"{speed:.1f}",
            gflops="" if gflops is None else f"  {gflops:.1f} GFLOP/s",
        )

    def print(self, message: str, always: bool = False) -> None:
        """Print above the bar; log lines (``always=False``) only when there is no bar."""
        if not self.enabled:
            return
        if always or not self.console.is_terminal:
            self.console.print(message, highlight=False, markup=False)
