"""The core's table-driven check of ``backend_options.<backend>`` (zoo_core.options)."""

from __future__ import annotations

from typing import Any

import pytest

from zoo_core.errors import RecipeError
from zoo_core.options import choice_option, defaults, flag_option, threads_option, validate_options

TABLE = {
    "threads": threads_option("the pool"),
    "compile": flag_option("compile the forward"),
    "mode": choice_option({"graph": "compiled", "pynative": "eager"}),
}


def test_defaults_fill_in_and_set_values_stay() -> None:
    assert defaults(TABLE) == {"threads": None, "compile": False, "mode": "graph"}
    assert validate_options("x", TABLE, {}) == defaults(TABLE)
    assert validate_options("x", TABLE, {"threads": 3, "compile": True, "mode": "pynative"}) == {
        "threads": 3,
        "compile": True,
        "mode": "pynative",
    }


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"thread": 2}, "backend_options.x.thread: unknown option (known: threads, compile, mode)"),
        ({"threads": 0}, "backend_options.x.threads: expected a positive integer (the pool) or null"),
        ({"threads": True}, "backend_options.x.threads: expected a positive integer"),
        ({"threads": "2"}, "backend_options.x.threads: expected a positive integer"),
        (
            {"compile": "yes"},
            "backend_options.x.compile: expected true or false (compile the forward), got 'yes'",
        ),
        ({"mode": "GRAPH"}, "backend_options.x.mode: expected 'graph' (compiled) or 'pynative' (eager), got"),
        ({"mode": ["graph"]}, "backend_options.x.mode: expected 'graph'"),
    ],
)
def test_bad_options_are_one_line_recipe_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(RecipeError) as info:
        validate_options("x", TABLE, options)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_every_problem_is_reported() -> None:
    with pytest.raises(RecipeError) as info:
        validate_options("x", TABLE, {"a": 1, "threads": -1, "mode": "eager"})
    assert len(info.value.problems) == 3


def test_a_backend_without_options_refuses_any() -> None:
    with pytest.raises(
        RecipeError, match=r"^backend_options\.numpy\.threads: unknown option \(known: none\)$"
    ):
        validate_options("numpy", {}, {"threads": 1})
