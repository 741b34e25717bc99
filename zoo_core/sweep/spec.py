"""A sweep's settings, from ``zoo sweep``'s options and the recipe file's ``sweep:`` section.

Everything here is checked before any trial starts, each problem one line: a grid key
that is not a recipe field or a value of the wrong type (every grid point is validated
as the recipe it makes, through the recipe loader), an empty grid, a metric the task
does not report.  Nothing here imports Optuna or a framework.

The ``sweep:`` section of a recipe file (``zoo run`` ignores it)::

    sweep:
      grid:                       # dotted recipe fields, as for --set
        train.learning_rate: [3.0e-4, 1.0e-4]
        train.batch_size: [16, 32]
      sampler: grid               # grid (default) or tpe
      trials: 4                   # default: the number of grid points
      metric: accuracy            # default: the task's main dev metric
      pruner: median              # median (default) or none

Options given on the command line win; ``--grid`` replaces the section's whole grid.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from zoo_core.errors import RecipeError
from zoo_core.files import display_name, one_line, quote
from zoo_core.recipes.bundled import find_recipe
from zoo_core.recipes.loader import SWEEP_SECTION, load_recipe, parse_override, read_yaml

Sampler = Literal["grid", "tpe"]
Pruner = Literal["median", "none"]
#: grid points a sweep may have (each is validated as a recipe before the first trial)
MAX_POINTS = 1000
#: recipe fields a sweep sets itself
RESERVED = ("output_dir", "name", "kind")
#: characters kept in a trial directory's name; others become "_"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.=,+-]")


class SweepSection(BaseModel):
    """The ``sweep:`` section of a recipe file."""

    model_config = ConfigDict(extra="forbid")

    grid: dict[str, list[Any]] = Field(default_factory=dict)
    sampler: Sampler | None = None
    trials: int | None = Field(None, gt=0)
    metric: str | None = None
    pruner: Pruner | None = None


@dataclass(frozen=True)
class Sweep:
    """A checked sweep: the recipe, the grid, the sampler, the metric and where it all goes."""

    recipe: Path
    #: ``--set`` overrides shared by every trial
    overrides: tuple[str, ...]
    #: dotted recipe field -> the values to try, in order
    grid: dict[str, list[Any]]
    sampler: Sampler
    trials: int
    metric: str
    pruner: Pruner
    backend: str
    directory: Path
    #: an Optuna storage URL
    storage: str
    #: the recipe's name: the study's name in the storage
    name: str
    seed: int = 0

    @property
    def points(self) -> list[dict[str, Any]]:
        """Every grid point as ``{field: value}``, in grid order."""
        keys = list(self.grid)
        return [dict(zip(keys, values, strict=True)) for values in itertools.product(*self.grid.values())]

    @property
    def trials_dir(self) -> Path:
        """Where the trials' run directories are."""
        return self.directory / "trials"

    def trial_dir(self, params: dict[str, Any]) -> Path:
        """The run directory of the trial with ``params``, named after them."""
        return self.trials_dir / trial_name(params, list(self.grid))

    def trial_overrides(self, params: dict[str, Any]) -> list[str]:
        """The overrides that make the trial's recipe: the sweep's ``--set``, the settings, the directory."""
        settings = [f"{key}={json.dumps(params[key])}" for key in self.grid]
        return [*self.overrides, *settings, f"output_dir={json.dumps(str(self.trial_dir(params)))}"]

    def load_trial(self, params: dict[str, Any]) -> Any:
        """The validated recipe of the trial with ``params``."""
        return load_recipe(self.recipe, self.trial_overrides(params), flag="--grid")


def format_value(value: Any) -> str:
    """A setting as a trial's name shows it: ``5e-05``, ``16``, ``true``, ``bf16``."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def short_names(keys: list[str]) -> dict[str, str]:
    """Each dotted key's last part (``learning_rate``), or the whole key where last parts repeat."""
    last = [key.rsplit(".", 1)[-1] for key in keys]
    return {key: part if last.count(part) == 1 else key for key, part in zip(keys, last, strict=True)}


def trial_name(params: dict[str, Any], keys: list[str]) -> str:
    """``learning_rate=5e-05,batch_size=16``: a trial's settings as a directory name."""
    names = short_names(keys)
    text = ",".join(f"{names[key]}={format_value(params[key])}" for key in keys)
    return _UNSAFE.sub("_", text)[:200]


def split_values(text: str) -> list[str]:
    """``3e-4,1e-4`` -> ``["3e-4", "1e-4"]``; commas inside brackets or quotes do not split."""
    values, depth, quote_char, current = [], 0, "", ""
    for char in text:
        if quote_char:
            quote_char = "" if char == quote_char else quote_char
        elif char in "\"'":
            quote_char = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            values.append(current)
            current = ""
            continue
        current += char
    values.append(current)
    return [v.strip() for v in values]


def parse_grid(options: list[str]) -> dict[str, list[Any]]:
    """``--grid KEY=V1,V2`` options as ``{KEY: [V1, V2]}``, each value read as ``--set`` reads one."""
    grid: dict[str, list[Any]] = {}
    for option in options:
        key, sep, raw = option.partition("=")
        key = key.strip()
        if not sep or not key:
            raise RecipeError(f"--grid {option!r}: expected KEY=V1,V2,..., e.g. train.batch_size=16,32")
        if key in grid:
            raise RecipeError(f"--grid {key}: given twice; list all its values in one --grid")
        raws = split_values(raw)
        if not any(raws):
            raise RecipeError(f"--grid {key}: no values; expected {key}=V1,V2,...")
        if not all(raws):
            raise RecipeError(f"--grid {one_line(option)}: an empty value; expected {key}=V1,V2,...")
        grid[key] = [parse_override(f"{key}={value}")[1] for value in raws]
    return grid


def _section(path: Path) -> SweepSection:
    """The recipe file's ``sweep:`` section (empty if it has none); its problems one line each."""
    data, _ = read_yaml(path)
    raw = data.get(SWEEP_SECTION)
    if raw is None:
        return SweepSection()
    source = display_name(path)
    if not isinstance(raw, dict):
        raise RecipeError(f"{source}: sweep: expected a mapping (grid, sampler, trials, metric, pruner)")
    try:
        section = SweepSection.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(f"{source}: sweep.{where}: {msg}")
        raise RecipeError(problems[0], problems) from None
    # YAML 1.1 reads 3e-4 as a string: read every value as --set reads it
    section.grid = {
        key: [parse_override(f"{key}={v}")[1] if isinstance(v, str) else v for v in values]
        for key, values in section.grid.items()
    }
    return section


def check_grid(grid: dict[str, list[Any]], source: str) -> None:
    """Refuse an empty grid, a key without values, a repeated value, a reserved key, a list value."""
    if not grid:
        raise RecipeError(
            f"{source}: nothing to sweep; give --grid FIELD=V1,V2 (e.g. --grid train.batch_size=16,32) "
            "or a sweep: grid section in the recipe file"
        )
    for key, values in grid.items():
        if key.split(".")[0] in RESERVED:
            raise RecipeError(f"--grid {key}: the sweep sets {key.split('.')[0]} itself; sweep another field")
        if not values:
            raise RecipeError(f"--grid {key}: no values; expected {key}=V1,V2,...")
        for value in values:
            if not (value is None or isinstance(value, str | int | float | bool)):
                raise RecipeError(
                    f"--grid {key}: {quote(value)} is not a number, string, boolean or null; "
                    "a grid sweeps one field's values"
                )
        shown = [format_value(v) for v in values]
        repeated = sorted({s for s in shown if shown.count(s) > 1})
        if repeated:
            raise RecipeError(f"--grid {key}: value {repeated[0]} given twice")


def metric_names(recipe: Any) -> tuple[list[str], str]:
    """Every dev metric a run of ``recipe`` reports (as metrics.jsonl names them), and the default one.

    The default is the task's main metric; for a DynaBERT width run, at its smallest width.
    """
    from zoo_core.data.splits import resolve_task
    from zoo_core.runners.stage import metric_key
    from zoo_core.runners.widths import width_metric

    task = resolve_task(recipe.task, recipe.data)
    splits = [recipe.data.eval_split] if recipe.data.eval_split else list(task.eval_splits)
    names = [metric_key(split, metric, splits) for split in splits for metric in task.metrics]
    default = metric_key(splits[0], task.main_metric, splits)
    if recipe.kind == "width":
        widths = sorted(recipe.width.width_mult_list)
        names = [width_metric(name, w) for name in names for w in widths]
        default = width_metric(default, widths[0])
    return names, default


def build_sweep(
    recipe_ref: str,
    grid_options: list[str],
    *,
    overrides: list[str],
    backend: str,
    sampler: Sampler | None = None,
    trials: int | None = None,
    metric: str | None = None,
    pruner: Pruner | None = None,
    storage: str | None = None,
    output: Path | None = None,
) -> Sweep:
    """The checked sweep; RecipeError (one line per problem) for anything a trial would trip on."""
    path = find_recipe(recipe_ref)
    base = load_recipe(path, overrides)
    section = _section(path)
    source = display_name(path)
    grid = parse_grid(grid_options) if grid_options else section.grid
    check_grid(grid, source)
    size = 1
    for values in grid.values():
        size *= len(values)
    if size > MAX_POINTS:
        raise RecipeError(f"--grid: {size} grid points; at most {MAX_POINTS}")

    directory = Path(output) if output is not None else base.run_dir.with_name(base.run_dir.name + "-sweep")
    sweep = Sweep(
        recipe=path,
        overrides=tuple(overrides),
        grid=grid,
        sampler=sampler or section.sampler or "grid",
        trials=trials or section.trials or size,
        metric="",
        pruner=pruner or section.pruner or "median",
        backend=backend,
        directory=directory,
        storage=storage or f"sqlite:///{directory.resolve() / 'sweep.db'}",
        name=base.name,
    )
    problems: dict[str, None] = {}
    for params in sweep.points:  # every point is a recipe a trial will load: validate them all now
        try:
            sweep.load_trial(params)
        except RecipeError as exc:
            problems.update(dict.fromkeys(exc.problems))
    if problems:
        lines = list(problems)
        raise RecipeError(lines[0], lines)
    if sweep.sampler == "grid" and sweep.trials > size:
        raise RecipeError(f"--trials {sweep.trials}: the grid has only {size} points")

    names, default = metric_names(base)
    chosen = metric or section.metric or default
    if chosen not in names:
        raise RecipeError(
            f"--metric {chosen}: task {base.task_name} reports no such dev metric; "
            f"expected one of {', '.join(names)}"
        )
    return replace(sweep, metric=chosen)
