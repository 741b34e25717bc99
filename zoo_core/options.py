"""Backend options as a table: each plugin declares its keys, the core checks them once.

A plugin lists ``backend_options.<backend>`` in its :class:`~zoo_core.backend.BackendSpec`
as ``options={"threads": threads_option("torch.set_num_threads"), ...}``;
:func:`validate_options` (called by ``create_backend`` and ``zoo validate``) refuses
unknown keys and bad values, every problem at once, each naming the key and what was
expected, and fills in the defaults.  The factory then gets the cleaned options.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from zoo_core.errors import RecipeError


@dataclass(frozen=True)
class Option:
    """One key of ``backend_options.<backend>``: its default, what it must be, and the check."""

    #: the value when the recipe does not set the key
    default: Any
    #: what the value must be, as an error message says it ("expected <expected>, got ...")
    expected: str
    #: True when ``value`` is acceptable
    accepts: Callable[[Any], bool]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def threads_option(what: str) -> Option:
    """``threads``: a positive integer (``what`` says what it sets) or null for the framework's default."""
    return Option(
        None,
        f"a positive integer ({what}) or null for the framework's default",
        lambda v: v is None or (_is_int(v) and v >= 1),
    )


def flag_option(what: str, default: bool = False) -> Option:
    """A true/false switch; ``what`` says what true does."""
    return Option(default, f"true or false ({what})", lambda v: isinstance(v, bool))


def choice_option(choices: Mapping[str, str]) -> Option:
    """One of ``choices`` (value -> what it means); the first is the default."""
    expected = " or ".join(f"{value!r} ({meaning})" for value, meaning in choices.items())
    return Option(next(iter(choices)), expected, lambda v: isinstance(v, str) and v in choices)


def defaults(table: Mapping[str, Option]) -> dict[str, Any]:
    """Every option of ``table`` at its default (a backend built without options starts from these)."""
    return {key: option.default for key, option in table.items()}


def validate_options(backend: str, table: Mapping[str, Option], options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` checked against ``table`` with the defaults filled in.

    Raises :class:`RecipeError` whose message is the first problem and whose
    ``problems`` are all of them: ``backend_options.<backend>.<key>: unknown option
    (known: ...)`` or ``...: expected <what>, got <value>``.
    """
    where = f"backend_options.{backend}"
    known = ", ".join(table) or "none"
    problems = [f"{where}.{key}: unknown option (known: {known})" for key in options if key not in table]
    cleaned = defaults(table)
    for key, option in table.items():
        if key not in options:
            continue
        value = options[key]
        if option.accepts(value):
            cleaned[key] = value
        else:
            problems.append(f"{where}.{key}: expected {option.expected}, got {value!r}")
    if problems:
        raise RecipeError(problems[0], problems)
    return cleaned
