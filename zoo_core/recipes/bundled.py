"""The recipes that ship with zoo (``recipes/*.yaml`` beside the package) and finding one by name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from zoo_core.errors import RecipeError
from zoo_core.files import QUOTE_LIMIT, display_name, one_line

#: where the project's recipes live: the repository root's recipes/ (editable installs)
BUNDLED_DIR = Path(__file__).resolve().parents[2] / "recipes"
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
    """Folders searched for recipes by name: ./recipes, then the bundled folder."""
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
