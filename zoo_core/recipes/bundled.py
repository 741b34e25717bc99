"""The recipes that ship with zoo (package data, ``zoo_core/recipes/files/*.yaml``); finding one by name."""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path

from zoo_core.errors import RecipeError
from zoo_core.files import QUOTE_LIMIT, display_name, one_line

#: where the recipes shipped with zoo live: package data of ``zoo_core.recipes`` (a real folder
#: in any installed wheel or editable install; zoo is not run from a zip)
BUNDLED_DIR = Path(str(importlib.resources.files("zoo_core.recipes").joinpath("files")))
#: bytes of a recipe file read for its summary line
SUMMARY_BYTES = 4096


@dataclass(frozen=True)
class BundledRecipe:
    """A recipe file and the first line of its opening comment."""

    name: str
    path: Path
    summary: str


def _summary(path: Path) -> str:
    """The opening comment's first line, without the ``#`` (from the first few KB; "" if unreadable).

    Only :data:`SUMMARY_BYTES` are read, bytes that are not UTF-8 are replaced, and the
    line is cut to one short line: any file in ./recipes can be listed.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(SUMMARY_BYTES)
    except (OSError, ValueError):
        return ""
    for line in head.decode("utf-8", errors="replace").removeprefix("\ufeff").splitlines():
        if line.startswith("#"):
            return one_line(line.lstrip("#").strip())
        if line.strip():
            break
    return ""


def recipe_dirs() -> list[Path]:
    """Folders searched for recipes by name: ./recipes in the cwd, then the recipes shipped with zoo."""
    dirs = [Path("recipes"), BUNDLED_DIR]
    out: list[Path] = []
    for d in dirs:
        if d.is_dir() and all(d.resolve() != o.resolve() for o in out):
            out.append(d)
    return out


def bundled_recipes() -> list[BundledRecipe]:
    """Every recipe in :func:`recipe_dirs`, first folder winning on equal names."""
    found: dict[str, BundledRecipe] = {}
    for d in recipe_dirs():
        for path in sorted(d.glob("*.yaml")):
            found.setdefault(path.stem, BundledRecipe(path.stem, path, _summary(path)))
    return sorted(found.values(), key=lambda r: r.name)


def find_recipe(ref: str) -> Path:
    """A recipe file: ``ref`` itself if it is a file, else a bundled recipe of that name."""
    path = Path(ref)
    try:
        if path.is_file():
            return path
    except (OSError, ValueError):  # a name too long for the filesystem: no such file
        pass
    if path.suffix in ("", ".yaml", ".yml") and "/" not in ref:
        for recipe in bundled_recipes():
            if recipe.name == path.stem:
                return recipe.path
    shown = one_line(display_name(ref), QUOTE_LIMIT)
    raise RecipeError(f"{shown}: recipe file not found (bundled recipes are listed by `zoo recipes`)")


def copy_recipe(name: str, dest: Path) -> Path:
    """Write the recipe ``name`` (``.yaml`` optional) shipped with zoo to ``dest``; return the file written.

    ``dest`` is a folder (created if missing; the file is ``NAME.yaml`` in it) or a file
    name ending in ``.yaml`` / ``.yml``.  An existing file is never overwritten: a
    :class:`RecipeError` says so, as it does for a name zoo does not ship.
    """
    source = BUNDLED_DIR / f"{name.removesuffix('.yaml')}.yaml"
    if "/" in name or name.startswith(".") or not source.is_file():
        shown = one_line(display_name(name), QUOTE_LIMIT)
        raise RecipeError(f"{shown}: no such recipe ships with zoo (`zoo recipes` lists them)")
    target = dest if dest.suffix in (".yaml", ".yml") else dest / source.name
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "xb") as out:  # "x": never replaces a file
            out.write(source.read_bytes())
    except FileExistsError:
        raise RecipeError(
            f"{display_name(target)}: file exists; not overwritten (remove it or give another DIR)"
        ) from None
    except OSError as exc:
        raise RecipeError(f"{display_name(target)}: cannot write ({exc.strerror or exc})") from None
    return target
