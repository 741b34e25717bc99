"""The data root: where the bundled recipes' data lives when zoo runs outside the repository.

The bundled recipes name their data ``data/glue/SST-2``, ``data/trec/train.jsonl``.  Such
a path is read from the current directory when it exists there (a clone of the repository,
or a folder laid out the same way); otherwise from the data root, ``data/`` standing for
it: ``data/glue/SST-2`` is ``<data root>/glue/SST-2``.  The data root is
``$ZOO_DATA_DIR``, else ``$XDG_DATA_HOME/zoo``, else ``~/.local/share/zoo``.

``zoo data prepare glue --from DIR`` fills it from files the user has: each file's sha256
is checked against :data:`DATASETS` (the published files), then it is hard-linked or
copied into place.  Nothing is downloaded.  Imports nothing heavy: recipes validate
through :func:`resolve_data_path`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePath

from zoo_core.errors import DataError
from zoo_core.files import sha256_file

#: the first part of a recipe's data path that stands for the data root
DATA_PREFIX = "data"


@dataclass(frozen=True)
class Dataset:
    """A dataset ``zoo data prepare`` lays out: its folder under the data root and its files."""

    name: str
    #: what ``--from`` points at, for messages
    source: str
    #: path relative to the dataset's folder -> sha256 of the published file
    files: dict[str, str]


#: the datasets the bundled recipes read, with the sha256 of each published file (the GLUE
#: benchmark's glue_data layout; TREC's training set as JSON Lines, see docs/install.md)
DATASETS: dict[str, Dataset] = {
    "glue": Dataset(
        "glue",
        "a GLUE folder in the glue_data layout (SST-2/train.tsv, ...)",
        {
            "CoLA/train.tsv": "cb368ebeb9f27d7ad03720d27ddc95687a311bdb100781a2fe59a5f5b1bc0624",
            "CoLA/dev.tsv": "8c013e21dc39957cac37378d87bebe225b694a0d5fe13eded66c2856628833fd",
            "MRPC/train.tsv": "f178bcc72ab4c2c1c778b480912e0c8e1dba3ead150dc1d490d70682ab888c1e",
            "MRPC/dev.tsv": "9e8f284788040f7c9ecde2e1b3c07237c756f926bd9ef8548ef5d34b56f69f17",
            "RTE/train.tsv": "41e3a9b063433392343fad9e962cf2f58b681c78d8f71592f4186f0837246c5c",
            "RTE/dev.tsv": "80230dfa1347282e7b532b06a1004a76a710087541189bf874223ddf0e3819fb",
            "SST-2/train.tsv": "48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1",
            "SST-2/dev.tsv": "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0",
            "STS-B/train.tsv": "41c4d978b6162abdcada7e49a982211954cca5459c228db478af333124b257a2",
            "STS-B/dev.tsv": "fe7dc0632a5033562f3cadff991f6e8d9b9b6311861660e78c3c82eb7db67f59",
            "STS-B/LICENSE.txt": "3dfc3217395f8c5dd05c5f8995f25fe2f8fd258e6dd770b3de480749caee8c70",
            "WNLI/train.tsv": "9a88e9d54b6861cc796a088e9acf4f5f65064a9ef65ae6fa7a688b28391e5c9a",
            "WNLI/dev.tsv": "cba00490596dd14be8cf53b4f53bb744abe3a7b89f81ab210528d80225338ed5",
        },
    ),
    "trec": Dataset(
        "trec",
        "a folder holding TREC's train.jsonl",
        {"train.jsonl": "8e4b311bdcfc2491e8cabc114d0b8c91f8405b53d93f4ee4af26c81b343d1f60"},
    ),
}


def data_root() -> Path:
    """The data root: ``$ZOO_DATA_DIR``, else ``$XDG_DATA_HOME/zoo``, else ``~/.local/share/zoo``."""
    configured = os.environ.get("ZOO_DATA_DIR")
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    if xdg and Path(xdg).is_absolute():  # the XDG spec: a relative value is ignored
        return Path(xdg) / "zoo"
    return Path.home() / ".local" / "share" / "zoo"


def _under_root(path: PurePath) -> PurePath | None:
    """``data/glue/SST-2`` -> ``glue/SST-2``; None for a path that does not start with ``data/``."""
    if path.is_absolute() or len(path.parts) < 2 or path.parts[0] != DATA_PREFIX:
        return None
    return PurePath(*path.parts[1:])


def resolve_data_path(path: Path) -> Path:
    """Where a recipe's data path is read from.

    ``path`` itself when it exists (relative to the cwd) or does not start with ``data/``;
    else its place under :func:`data_root` when that exists; else ``path`` unchanged, so
    that the error for a missing file names what the recipe says (see :func:`prepare_hint`).
    """
    rest = _under_root(path)
    if rest is None:
        return path
    try:
        if path.exists():
            return path
        rooted = data_root() / rest
        return rooted if rooted.exists() else path
    except (OSError, ValueError):  # a name too long, or with a NUL: the reader says so
        return path


def prepare_hint(path: Path | str) -> str:
    """For a missing ``data/<dataset>/...`` path, the command that prepares it ("" for others).

    E.g. ``; not under the data root /home/u/.local/share/zoo either: prepare it with
    `zoo data prepare glue --from DIR` (DIR: a GLUE folder ...)``.
    """
    rest = _under_root(PurePath(path))
    if rest is None or rest.parts[0] not in DATASETS:
        return ""
    dataset = DATASETS[rest.parts[0]]
    return (
        f"; not under the data root {data_root()} either: prepare it with "
        f"`zoo data prepare {dataset.name} --from DIR` (DIR: {dataset.source})"
    )


@dataclass(frozen=True)
class PreparedFile:
    """One file laid out by :func:`prepare`: where it went and how."""

    name: str
    target: Path
    #: "linked", "copied" or "already there"
    how: str
    verified: bool


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def _place(source: Path, target: Path) -> str:
    """Hard-link ``source`` at ``target`` (a copy across file systems), atomically; how it was done."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        tmp.unlink()
        try:
            os.link(source, tmp)
            how = "linked"
        except OSError:  # another file system, or hard links not allowed here
            shutil.copyfile(source, tmp)
            how = "copied"
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return how


def prepare(
    name: str,
    source: Path,
    *,
    verify: bool = True,
    root: Path | None = None,
    progress: Callable[[PreparedFile], None] | None = None,
) -> list[PreparedFile]:
    """Check ``source``'s files of dataset ``name`` and lay them out under the data root.

    Every known file found in ``source`` is checked against its published sha256 (unless
    ``verify`` is False) before anything is written; a missing file is skipped (a GLUE
    folder may hold some tasks only) unless none is there.  Raises :class:`DataError`
    (one line) for an unknown dataset, a missing folder, no known file, or a checksum
    that differs.  Returns the files laid out under ``<root>/<name>/``.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; zoo data prepare knows: {', '.join(DATASETS)}")
    dataset = DATASETS[name]
    if not source.is_dir():
        raise DataError(f"--from {source}: not a directory (expected {dataset.source})")
    found = {rel: source / rel for rel in dataset.files if (source / rel).is_file()}
    if not found:
        expected = ", ".join(list(dataset.files)[:3])
        raise DataError(f"--from {source}: no {name} file there (expected {dataset.source}: {expected}, ...)")
    if verify:
        for rel, path in found.items():
            try:
                digest = sha256_file(path)
            except OSError as exc:
                raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
            if digest != dataset.files[rel]:
                raise DataError(
                    f"{path}: sha256 {digest[:12]}... is not the published file's "
                    f"({dataset.files[rel][:12]}...); pass --no-verify to use it anyway"
                )
    target_dir = (root or data_root()) / name
    done = []
    for rel, path in found.items():
        target = target_dir / rel
        try:
            how = "already there" if _same_file(path, target) else _place(path, target)
        except OSError as exc:
            raise DataError(f"{target}: cannot write ({exc.strerror or exc})") from None
        record = PreparedFile(rel, target, how, verify)
        if progress is not None:
            progress(record)
        done.append(record)
    return done
