"""Load recipes from YAML, apply ``--set`` overrides, report every error at once.

Errors name the file, the line, the dotted YAML path and what was expected, one
line each, e.g. ``x.yaml:7: train.batch_size: Input should be a valid
integer (got 'abc')``.  Files are read through :mod:`zoo_core.files` (size cap,
UTF-8, no alias bombs, bounded nesting); messages quote at most ~80 characters of
a value, and at most :data:`MAX_PROBLEMS` problems are listed per recipe.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from zoo_core.errors import RecipeError
from zoo_core.files import check_yaml_limits, display_name, kind_of, load_yaml, one_line, quote
from zoo_core.recipes import Recipe
from zoo_core.recipes.common import TASK_TAGS

_ADAPTER: TypeAdapter[Any] = TypeAdapter(Recipe)
_EXPONENT_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")
#: problems listed per recipe (the rest are counted)
MAX_PROBLEMS = 20


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into a path and a YAML-parsed value."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"--set {text!r}: expected PATH=VALUE, e.g. train.batch_size=16")
    check_yaml_limits(raw, f"--set {one_line(text)}", error=RecipeError)
    try:
        value = yaml.load(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) if raw.strip() else None
    except (yaml.YAMLError, ValueError):
        value = raw
    if isinstance(value, str) and _EXPONENT_FLOAT.match(value):  # YAML 1.1 reads 3e-5 as a string
        value = float(value)
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Set each ``path=value`` into ``data`` (in place), creating sections as needed.

    A number in the path indexes a list: ``stages.1.train.max_steps=300`` is the second stage's.
    """
    for text in overrides:
        path, value = parse_override(text)
        node: Any = data
        for i, part in enumerate(path):
            last = i == len(path) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise RecipeError(
                        f"--set {text!r}: {'.'.join(path[:i])} is a list of {len(node)}; "
                        f"expected an index 0..{len(node) - 1}, got {part!r}"
                    )
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
                continue
            if not isinstance(node, dict):
                raise RecipeError(f"--set {text!r}: {path[i - 1]!r} is not a section")
            if last:
                node[part] = value
            else:
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
    return data


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the deepest YAML node on ``loc`` that exists."""
    node, line = root, None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            line = node.start_mark.line + 1
            match = [v for k, v in node.value if getattr(k, "value", None) == str(part)]
            if not match:
                return line
            key_node = next(k for k, v in node.value if v is match[0])
            line = key_node.start_mark.line + 1
            node = match[0]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def format_errors(
    exc: ValidationError,
    source: str,
    root: yaml.Node | None,
    overridden: set[str],
    kind: str | None,
    flag: str = "--set",
) -> list[str]:
    """One line per pydantic error: ``file:line: dotted.path: message (got value)``.

    An error in an overridden field names the option that set it (``flag``: ``--set``, ``--grid``).
    """
    lines = []
    errors = exc.errors()
    for err in errors[:MAX_PROBLEMS]:
        loc = tuple(err["loc"])
        if kind is not None and loc and loc[0] == kind:
            loc = loc[1:]
        loc = tuple(part for part in loc if part not in TASK_TAGS)  # task: glue name | own mapping
        path = ".".join(str(p) for p in loc) or "(recipe)"
        msg = one_line(err["msg"].removeprefix("Value error, "), 300)
        if err["type"] == "union_tag_invalid":
            path, msg = (
                "kind",
                f"unknown recipe kind {quote(err['input'].get('kind'))}; "
                f"expected one of {err['ctx']['expected_tags']}",
            )
        elif err["type"] == "union_tag_not_found":
            path, msg = "kind", "missing; every recipe says its kind (e.g. kind: finetune)"
        elif err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] not in ("missing",) and "input" in err and not isinstance(err["input"], dict):
            msg += f" (got {quote(err['input'])})"
        if path in overridden:
            where = f"{source} ({flag} {path})"
        else:
            line = _line_of(root, loc)
            where = f"{source}:{line}" if line else source
        lines.append(f"{where}: {one_line(path)}: {msg}")
    if len(errors) > MAX_PROBLEMS:
        lines.append(f"{source}: {len(errors) - MAX_PROBLEMS} more problems not shown")
    return lines


def read_yaml(path: Path) -> tuple[dict[str, Any], yaml.Node | None]:
    """The recipe file's mapping and its node tree (for line numbers).

    Read through :func:`zoo_core.files.load_yaml`: every problem is one RecipeError line.
    """
    path = Path(path)
    try:
        missing = not path.exists() and not path.is_symlink()
    except (OSError, ValueError):  # a name too long, or with a NUL: the reader says so
        missing = False
    if missing:
        raise RecipeError(f"{display_name(path)}: recipe file not found")
    data, root = load_yaml(path, error=RecipeError, expect=None)
    if not isinstance(data, dict):
        raise RecipeError(
            f"{display_name(path)}: a recipe is a YAML mapping (key: value lines), got {kind_of(data)}"
        )
    return data, root


#: the top-level section of a recipe file that only ``zoo sweep`` reads (see :mod:`zoo_core.sweep`)
SWEEP_SECTION = "sweep"


def load_recipe(path: Path, overrides: Iterable[str] = (), *, flag: str = "--set") -> Any:
    """Read, override and validate a recipe; raise RecipeError listing every problem.

    A ``sweep:`` section is ``zoo sweep``'s and is left out: the file runs as one recipe.
    ``flag`` names the option the overrides came from in error messages.
    """
    data, root = read_yaml(path)
    data.pop(SWEEP_SECTION, None)
    overrides = list(overrides)
    apply_overrides(data, overrides)
    overridden = {".".join(parse_override(o)[0]) for o in overrides}
    return validate_recipe(data, display_name(path), root, overridden, flag=flag)


def validate_recipe(
    data: dict[str, Any],
    source: str = "<recipe>",
    root: yaml.Node | None = None,
    overridden: set[str] | None = None,
    *,
    flag: str = "--set",
) -> Any:
    """Validate a recipe mapping into its pydantic model."""
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        kind = data.get("kind") if isinstance(data.get("kind"), str) else None
        problems = format_errors(exc, source, root, overridden or set(), kind, flag)
        raise RecipeError(
            problems[0] if len(problems) == 1 else f"{source}: {len(problems)} problems", problems
        ) from None


def dump_recipe(recipe: Any) -> str:
    """The resolved recipe (every default filled in) as YAML."""
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)
