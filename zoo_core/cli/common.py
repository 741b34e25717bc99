"""What every command shares: one-line errors with exit code 2, and the consoles."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console

from zoo_core.distributed import record_error
from zoo_core.errors import RecipeError, ZooError

P = ParamSpec("P")
R = TypeVar("R")

#: exit code of an interrupted command (128 + SIGINT), as shells report it
INTERRUPTED = 130

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn a :class:`ZooError` into ``error: <message>`` lines on stderr and its exit code.

    A recipe error prints one line per problem; every other error is one line.
    Ctrl-C prints one line and exits with 130, SIGTERM (``zoo run``) with 143
    (checkpoints are written atomically, so whatever was saved stays resumable).
    In a data-parallel worker the message also goes to the rank's error file
    (:func:`zoo_core.distributed.record_error`).
    """

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except RecipeError as exc:
            for problem in exc.problems:
                err.print(f"error: {problem}", markup=False)
            record_error(exc.problems[0] if exc.problems else str(exc))
            raise typer.Exit(exc.exit_code) from None
        except ZooError as exc:
            err.print(f"error: {exc}", markup=False)
            record_error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (a subclass carrying its own code)
            message = "interrupted; earlier checkpoints are intact: run the same command to resume"
            err.print(getattr(exc, "message", message), markup=False)
            raise typer.Exit(getattr(exc, "exit_code", INTERRUPTED)) from None

    return wrapper
