"""The listing commands: ``zoo backends``, ``zoo models`` and ``zoo recipes``.

None of them imports a framework: backends are read from entry-point metadata
and the plugins' registration hooks, models from the catalog.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from zoo_core.cli.common import err, out, reports_errors
from zoo_core.errors import RecipeError
from zoo_core.files import display_name


@reports_errors
def backends() -> None:
    """List installed backends: versions, devices with the precisions each trains in, capabilities.

    A CPU precision this CPU only emulates (:mod:`zoo_core.cpu_features`) is marked ``~``.

    Imports no framework.
    """
    from zoo_core.cpu_features import emulated_on_cpu
    from zoo_core.plugins import broken_plugins, list_backends

    def shown(device: str, precision: str) -> str:
        return f"{precision}~" if device == "cpu" and emulated_on_cpu(precision) else precision

    table = Table("backend", "plugin", "framework", "devices (precisions)", "capabilities")
    for b in list_backends():
        framework = (
            f"{b.spec.framework} {b.framework_version}"
            if b.framework_version
            else (f"{b.spec.framework} (not installed)")
        )
        table.add_row(
            b.spec.name,
            f"{b.plugin_distribution} {b.plugin_version}",
            framework,
            ", ".join(
                f"{d} ({' '.join(shown(d, p) for p in b.spec.precisions_on(d))})" for d in b.spec.devices
            ),
            ", ".join(sorted(b.spec.capabilities)) or "-",
        )
    out.print(table)
    if any(emulated_on_cpu(p) for b in list_backends() for p in b.spec.precisions_on("cpu")):
        out.print("~ emulated on this CPU (no native instructions): runs slower than fp32", markup=False)
    for message in broken_plugins().values():
        err.print(f"warning: {message}", markup=False)


@reports_errors
def models() -> None:
    """List the architecture catalog: shapes, parameter counts, where weights come from."""
    from zoo_core.models.catalog import CATALOG
    from zoo_core.models.weights import parameter_count

    table = Table("model", "layers", "hidden", "heads", "ffn", "params", "weights")
    for entry in CATALOG.values():
        c = entry.config
        if entry.weights_package is None:
            weights = "random init (or your checkpoint)"
        elif entry.weights_dir() is not None:
            weights = "local (pretrained)"
        else:
            weights = f"missing: {entry.install_hint}"
        table.add_row(
            entry.name,
            str(c.num_hidden_layers),
            str(c.hidden_size),
            str(c.num_attention_heads),
            str(c.intermediate_size),
            f"{parameter_count(c) / 1e6:.1f}M",
            weights,
        )
    out.print(table)
    out.print(
        "Any local Hugging Face-style BERT directory (config.json, vocab.txt, model.safetensors) works too."
    )


@reports_errors
def recipes(
    copy: Annotated[
        str | None,
        typer.Option("--copy", metavar="NAME", help="write recipe NAME out for editing (into DIR)"),
    ] = None,
    dest: Annotated[
        Path | None,
        typer.Argument(
            metavar="[DIR]",
            help="with --copy: a folder (default: the cwd) or a .yaml file name",
            show_default=False,
        ),
    ] = None,
) -> None:
    """List the bundled recipes (run one with `zoo run NAME`), or copy one out with --copy NAME [DIR].

    ./recipes in the cwd is searched first, then the recipes shipped with zoo; --copy
    never overwrites a file.
    """
    from zoo_core.recipes.bundled import bundled_recipes, copy_recipe

    if copy is not None:
        written = copy_recipe(copy, dest if dest is not None else Path("."))
        out.print(
            f"wrote {display_name(written)} (run it with `zoo run {display_name(written)}`)", markup=False
        )
        return
    if dest is not None:
        raise RecipeError(f"{display_name(dest)}: a DIR is given with --copy NAME only")
    table = Table("recipe", "file", "what it does")
    for recipe in bundled_recipes():
        table.add_row(Text(recipe.name), Text(str(recipe.path)), Text(recipe.summary))  # no markup
    out.print(table)
