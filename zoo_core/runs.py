"""Run directories: ``runs/<recipe-name>/`` with the resolved recipe, a log,
``metrics.jsonl``, step checkpoints and the best checkpoint.

    recipe.yaml            the resolved recipe (every default filled in)
    run.log                human-readable log
    metrics.jsonl          one JSON object per logging step / evaluation
    checkpoints/step-N/    portable checkpoint + trainer_state.json + optimizer state
    best/                  portable checkpoint with the best dev metric
    result.json            written last: final metrics, best checkpoint
    .lock                  held (``flock``) by the one process writing the directory

Only the writer (rank 0) touches the directory, and only while it holds ``.lock``.

Crash consistency: the newest complete step checkpoint is the truth.  Every
directory is written atomically (temporary sibling, then rename); on resume
:meth:`RunDir.sync_best` re-derives ``best/`` from the checkpoint's trainer state and
:meth:`RunDir.trim_metrics` drops the records written after it, and
:meth:`RunDir.prepare` removes the temporary directories a killed process left.

Every durable write goes through :func:`durable_write`, which counts it and is the
fault-injection hook of the tests (environment variables):

    ZOO_FAULT_KILL_AT=N         SIGKILL this process just before its N-th durable write
    ZOO_FAULT_ERROR_AT=N:ENOSPC raise OSError(ENOSPC) (or any errno name) at the N-th one
    ZOO_FAULT_TRACE=FILE        append "N<TAB>what" for every durable write to FILE
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import yaml

from zoo_core.checkpoint import atomic_directory
from zoo_core.errors import RunDirError, ZooError
from zoo_core.files import Count, check_fields, load_json, load_yaml, quote, read_bytes

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one writer is then the user's business
    fcntl = None  # type: ignore[assignment]

#: recipe fields that may change between a run and its resumption
RESUMABLE_CHANGES = (
    "description",
    "device",
    "output_dir",
    "backend_options",
    "eval",
    "checkpoints",
    "train.max_steps",
    "train.num_epochs",
    "train.logging_steps",
)
_CKPT_PREFIX = "step-"
LOCK_FILE = ".lock"
#: markers in the names of the temporary entries a killed process may leave behind
_TEMP_MARKERS = (".tmp-", ".old-", ".trash-")
#: errors of a write that are the disk's or the path's fault, not zoo's
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EXDEV})
MiB = 2**20
#: the context of the error about a run directory's unreadable recipe.yaml
_CORRUPT_RECIPE = (
    "corrupt, so whose run this is is unknown (choose another output_dir, or delete the directory)"
)
#: types of the result.json fields read back (:meth:`RunDir.finished`)
RESULT_FIELDS: dict[str, type | tuple[type, ...]] = {
    "final": dict,
    "final.*": float,
    "best": (float, type(None)),
    "best_step": (Count, type(None)),
    "steps": Count,
    "wall_seconds": float,
    "train_samples": Count,
    "train_seconds": float,
}
#: largest metrics.jsonl read (one ~150-byte line per logging window and evaluation)
MAX_METRICS_BYTES = 1 << 30

# ---- durable writes and fault injection ---------------------------------------------
_writes = 0


def durable_write(what: str) -> None:
    """Count one durable write of a run directory, about to happen; inject a fault if asked.

    See the module docstring for ``ZOO_FAULT_KILL_AT``, ``ZOO_FAULT_ERROR_AT`` and
    ``ZOO_FAULT_TRACE``; without them this only counts.
    """
    global _writes
    _writes += 1
    trace = os.environ.get("ZOO_FAULT_TRACE")
    if trace:
        with open(trace, "a", encoding="utf-8") as f:
            f.write(f"{_writes}\t{what}\n")
    if os.environ.get("ZOO_FAULT_KILL_AT") == str(_writes):
        os.kill(os.getpid(), signal.SIGKILL)
    at, _, name = os.environ.get("ZOO_FAULT_ERROR_AT", "").partition(":")
    if at == str(_writes):
        code = getattr(errno, name or "ENOSPC")
        raise OSError(code, os.strerror(code), what)


def free_bytes(path: Path) -> int:
    """Bytes available to this user on the filesystem of ``path`` (or of its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def recipe_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Dotted fields that differ between two resolved recipes, ignoring resumable ones."""
    a, b = _flatten(old), _flatten(new)
    keys = sorted(set(a) | set(b))
    return [
        k
        for k in keys
        if a.get(k) != b.get(k) and not any(k == r or k.startswith(r + ".") for r in RESUMABLE_CHANGES)
    ]


def _is_temporary(name: str) -> bool:
    """True for the name of a temporary entry (``.best.tmp-123``, ``result.tmp``) a killed process left."""
    return (name.startswith(".") and any(m in name for m in _TEMP_MARKERS)) or name.endswith(".tmp")


def _is_run_entry(name: str) -> bool:
    """True unless ``name`` is the lock or a temporary entry (a directory holding only those is empty)."""
    return name != LOCK_FILE and not _is_temporary(name)


def _remove(path: Path) -> None:
    """Delete a file or a directory tree, whichever ``path`` is."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# ---- the lock ---------------------------------------------------------------------------
#: run directories (resolved) whose lock this process holds, and the open lock files
_HELD: dict[Path, IO[str]] = {}


def release_locks() -> None:
    """Release every run directory lock this process holds (a command calls this when done)."""
    for handle in _HELD.values():
        handle.close()
    _HELD.clear()


class RunDir:
    """One run's directory; create with :meth:`prepare`."""

    def __init__(self, path: Path, writer: bool = True) -> None:
        self.path = Path(path)
        self.writer = writer
        #: bytes a checkpoint of the run's model takes (set by the stage); less free than
        #: this after a failed write means the disk was full
        self.checkpoint_bytes = MiB

    # ---- layout ----------------------------------------------------------------
    @property
    def checkpoints_dir(self) -> Path:
        """Folder of the step checkpoints."""
        return self.path / "checkpoints"

    @property
    def best_dir(self) -> Path:
        """The best checkpoint so far."""
        return self.path / "best"

    @property
    def result_file(self) -> Path:
        """Written when the run finishes."""
        return self.path / "result.json"

    @property
    def metrics_file(self) -> Path:
        """One JSON line per logging window and per evaluation."""
        return self.path / "metrics.jsonl"

    def checkpoint_dir(self, step: int) -> Path:
        """Where the checkpoint of ``step`` goes."""
        return self.checkpoints_dir / f"{_CKPT_PREFIX}{step:07d}"

    # ---- errors of the disk ------------------------------------------------------
    @contextmanager
    def writing(self, what: str, hint: str = "earlier checkpoints are intact") -> Iterator[None]:
        """Turn a failed write into one line: ``<run>: no space left on device while writing <what>; ...``.

        An OSError of :data:`WRITE_ERRNOS` (full disk, quota, read-only, permissions,
        cross-device rename) is reported by its errno; any other failure while the
        filesystem has less room than a checkpoint (a framework's own message, such
        as torch's ``unexpected pos``) is reported as a full disk.  Whatever else
        fails is re-raised as it is.  ``hint`` ends the line.
        """
        try:
            yield
        except ZooError:
            raise
        except OSError as exc:
            if exc.errno not in WRITE_ERRNOS:
                raise
            raise RunDirError(self._write_failure(os.strerror(exc.errno).lower(), what, hint)) from None
        except Exception:
            if not self._disk_full():
                raise
            raise RunDirError(self._write_failure("no space left on device", what, hint)) from None

    def _write_failure(self, reason: str, what: str, hint: str) -> str:
        return f"{self.path}: {reason} while writing {what}; {hint}"

    def _disk_full(self) -> bool:
        try:
            return free_bytes(self.path) < self.checkpoint_bytes
        except OSError:
            return False

    def check_space(self, checkpoint_bytes: int) -> None:
        """Refuse to start with less free space than two checkpoints of ``checkpoint_bytes`` need."""
        self.checkpoint_bytes = checkpoint_bytes
        if not self.writer:
            return
        free = free_bytes(self.path)
        if free < 2 * checkpoint_bytes:
            raise RunDirError(
                f"{self.path}: {free / MiB:.0f} MiB free, but a checkpoint of this model takes about "
                f"{checkpoint_bytes / MiB:.0f} MiB and a run needs room for two; "
                "free some space or set output_dir"
            )

    # ---- the lock ------------------------------------------------------------------
    def lock(self) -> None:
        """Become the directory's one writer: ``flock`` its ``.lock`` (released when the process dies).

        Raises RunDirError naming the holder (pid, host, start time) if another
        process writes the directory.  Holding it already (in this process) is fine.
        """
        key = self.path.resolve()
        if fcntl is None or key in _HELD:
            return
        with self.writing("its lock file", "choose another output_dir or make room"):
            handle = open(self.path / LOCK_FILE, "a+", encoding="utf-8")  # noqa: SIM115 (held open)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            raise RunDirError(
                f"{self.path} is being written by another zoo run ({_describe_holder(holder)}); "
                "wait for it to finish or stop it, or set output_dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        started = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
        handle.write(
            json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started}) + "\n"
        )
        handle.flush()
        _HELD[key] = handle

    def lock_held(self) -> bool:
        """True while a ``zoo run`` (in any process, this one included) holds the directory's lock.

        Probes with a shared ``flock`` taken and dropped at once (a run starting in that
        instant is refused as if another run held it); reads and writes nothing.
        """
        if fcntl is None:
            return False
        try:
            handle = open(self.path / LOCK_FILE, encoding="utf-8")  # noqa: SIM115 (closed below)
        except (OSError, ValueError):
            return False
        with handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return True
            return False

    def release(self) -> None:
        """Release this directory's lock, if this process holds it."""
        handle = _HELD.pop(self.path.resolve(), None)
        if handle is not None:
            handle.close()

    # ---- lifecycle -------------------------------------------------------------
    def check(self, recipe: dict[str, Any], restart: bool = False) -> None:
        """Raise RunDirError unless the directory is absent, empty, or a run of this recipe.

        Reads only; a run calls this before any expensive work so that a clash is
        reported at once.  With ``restart`` a run of this recipe with other settings is
        acceptable (:meth:`prepare` then deletes it); a run of another recipe (name or
        kind), a directory with a corrupt ``recipe.yaml`` and a foreign non-empty
        directory never are: zoo does not delete what may be someone else's work.
        """
        saved = self.path / "recipe.yaml"
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"output directory {self.path} is a file; choose another output_dir")
        if self.path.exists() and any(_is_run_entry(p.name) for p in self.path.iterdir()):
            if not saved.is_file():
                raise RunDirError(
                    f"output directory {self.path} exists and is not a zoo run directory; "
                    "choose another output_dir"
                )
            else:
                old = self.saved_recipe() or {}
                if old.get("name") != recipe.get("name") or old.get("kind") != recipe.get("kind"):
                    raise RunDirError(
                        f"output directory {self.path} holds a run of recipe {quote(old.get('name'))} "
                        f"({quote(old.get('kind'))}), which zoo does not replace (not even with --restart); "
                        "choose another output_dir, or delete that directory yourself"
                    )
                diff = recipe_differences(old, recipe)
                if diff and not restart:
                    raise RunDirError(
                        f"output directory {self.path} holds a run of recipe {quote(old.get('name'))} with "
                        f"other settings ({', '.join(diff[:4])}); "
                        "pass --restart to replace it, or set output_dir"
                    )

    def prepare(self, recipe: dict[str, Any], restart: bool = False) -> None:
        """Check the directory (:meth:`check`), lock it, tidy it and save the resolved recipe.

        Removes what a killed process left (temporary directories), and a result of
        an earlier run whose recipe differs (``train.max_steps`` raised: the run goes
        on).  With ``restart`` an earlier run of the recipe is deleted first.
        """
        self.check(recipe, restart)
        if not self.writer:
            return
        hint = "choose another output_dir or make room"
        with self.writing("the run directory", hint):
            self.path.mkdir(parents=True, exist_ok=True)
        self.lock()
        with self.writing("the run directory", hint):
            self.remove_temporary()
            if restart and (self.path / "recipe.yaml").is_file():
                self.clear()
            elif self.result_file.exists() and self.saved_recipe() != recipe:
                durable_write(f"remove {self.result_file}")
                self.result_file.unlink()
            self._replace_text(self.path / "recipe.yaml", yaml.safe_dump(recipe, sort_keys=False))

    def remove_temporary(self) -> None:
        """Delete the temporary files and directories a killed process left behind."""
        for folder in (self.path, self.checkpoints_dir):
            if not folder.is_dir():
                continue
            for entry in sorted(folder.iterdir()):
                if _is_temporary(entry.name):
                    durable_write(f"remove stale {entry}")
                    _remove(entry)

    def clear(self) -> None:
        """Delete the run (keeping the lock): result.json first, recipe.yaml last.

        Each entry is renamed away before it is deleted, so a kill leaves either a
        whole entry or a temporary one (removed on the next start).
        """
        order = {"result.json": 0, "recipe.yaml": 2}
        entries = [p for p in self.path.iterdir() if p.name != LOCK_FILE]
        for entry in sorted(entries, key=lambda p: (order.get(p.name, 1), p.name)):
            self._trash(entry)

    def _trash(self, path: Path) -> None:
        """Rename ``path`` to a temporary name (atomic), then delete it."""
        trash = path.parent / f".{path.name}.trash-{os.getpid()}"
        durable_write(f"rename {path} to {trash.name}")
        os.replace(path, trash)
        durable_write(f"remove {trash}")
        _remove(trash)

    def _replace_text(self, path: Path, text: str) -> None:
        """Write ``path`` atomically: a temporary sibling, then rename."""
        tmp = path.with_name(path.name + ".tmp")
        durable_write(f"write {tmp.name}")
        tmp.write_text(text, encoding="utf-8")
        durable_write(f"rename {tmp.name} to {path.name}")
        tmp.replace(path)

    def saved_recipe(self) -> dict[str, Any] | None:
        """The resolved recipe saved by :meth:`prepare`, or None if there is none.

        A corrupt one (not UTF-8, not YAML, not a mapping, too large) is a one-line
        RunDirError naming it: whose run the directory holds is then unknown.
        """
        saved = self.path / "recipe.yaml"
        if not saved.is_file():
            return None
        data: dict[str, Any] = load_yaml(saved, error=RunDirError, context=_CORRUPT_RECIPE)[0]
        return data

    def finished(self) -> dict[str, Any] | None:
        """The result of a finished run, or None.

        ``result.json`` is written last, so one that cannot be read (torn, not UTF-8, not
        a JSON object, wrong field types) means "not finished": the run resumes from its
        newest checkpoint and writes it again.
        """
        if not self.result_file.is_file():
            return None
        try:
            data: dict[str, Any] = load_json(self.result_file, error=RunDirError)
            check_fields(data, RESULT_FIELDS, self.result_file, error=RunDirError)
        except RunDirError:
            return None
        return data

    def write_result(self, result: dict[str, Any]) -> None:
        """Mark the run finished (atomically: ``result.json.tmp``, then rename)."""
        if self.writer:
            with self.writing("result.json"):
                self._replace_text(self.result_file, json.dumps(result, indent=2, default=str) + "\n")

    # ---- logging ---------------------------------------------------------------
    def log_metrics(self, record: dict[str, Any]) -> None:
        """Append one JSON line to metrics.jsonl."""
        if self.writer:
            with self.writing("metrics.jsonl"):
                durable_write(f"append step {record.get('step')} to metrics.jsonl")
                with open(self.metrics_file, "a", encoding="utf-8") as f:
                    f.write(json.dumps(record, default=float) + "\n")

    def trim_metrics(self, step: int, eval_step: int | None) -> None:
        """Keep only the records a run resumed at ``step`` had written: one line per step across resumes.

        A training record of step s is written before any checkpoint of step s, an
        evaluation record before its checkpoint; so the records to keep are training
        ones up to ``step`` and evaluations up to ``eval_step`` (the checkpoint's last
        evaluation).  A torn last line goes too.
        """
        if not self.writer or not self.metrics_file.is_file():
            return
        lines = metrics_lines(self.metrics_file, RunDirError, "delete that line, or run with --restart")
        kept = []
        for line in lines:
            try:
                record = json.loads(line)
                at = int(record["step"])
            except (ValueError, KeyError, TypeError):
                continue
            limit = (-1 if eval_step is None else eval_step) if "eval" in record else step
            if at <= limit and line.endswith("\n"):
                kept.append(line)
        if kept != lines:
            with self.writing("metrics.jsonl"):
                self._replace_text(self.metrics_file, "".join(kept))

    def log(self, message: str) -> None:
        """Append a timestamped line to run.log."""
        if self.writer:
            with self.writing("run.log"), open(self.path / "run.log", "a", encoding="utf-8") as f:
                f.write(time.strftime("%Y-%m-%d %H:%M:%S ") + message + "\n")

    # ---- checkpoints -------------------------------------------------------------
    def step_checkpoints(self) -> list[tuple[int, Path]]:
        """Complete step checkpoints, oldest first."""
        if not self.checkpoints_dir.is_dir():
            return []
        out = []
        for p in self.checkpoints_dir.iterdir():
            if p.name.startswith(_CKPT_PREFIX) and (p / "trainer_state.json").is_file():
                try:
                    out.append((int(p.name[len(_CKPT_PREFIX) :]), p))
                except ValueError:
                    continue
        return sorted(out)

    def latest_checkpoint(self) -> Path | None:
        """The newest complete step checkpoint, or None."""
        ckpts = self.step_checkpoints()
        return ckpts[-1][1] if ckpts else None

    def prune(self, keep_last: int) -> None:
        """Delete all but the newest ``keep_last`` step checkpoints (each renamed away first)."""
        if not self.writer:
            return
        for _, p in self.step_checkpoints()[:-keep_last]:
            with self.writing("checkpoints"):
                self._trash(p)

    def copy_to_best(self, checkpoint: Path, portable_files: tuple[str, ...]) -> None:
        """Replace best/ atomically with the portable files of ``checkpoint``."""
        if not self.writer:
            return

        def fill(tmp: Path) -> None:
            for name in portable_files:
                if (checkpoint / name).exists():
                    shutil.copy2(checkpoint / name, tmp / name)

        with self.writing("best/"):
            atomic_directory(self.best_dir, fill, durable_write)

    def best_step_on_disk(self) -> int | None:
        """The step of the model in best/ (its zoo.json), or None if there is none or it is unreadable."""
        try:
            step = json.loads((self.best_dir / "zoo.json").read_text(encoding="utf-8"))["step"]
            return int(step)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def sync_best(self, best_step: int | None, portable_files: tuple[str, ...]) -> bool:
        """Make best/ the model of ``best_step`` (from the resumed checkpoint's state); True if it was stale.

        A kill between a step checkpoint and the best/ it improved leaves best/ one
        model behind; the step checkpoint is then the newest, so best/ is copied
        from it.  Checkpoints are pruned only after best/ is written, so the one
        needed is always there.
        """
        if not self.writer or best_step is None or self.best_step_on_disk() == best_step:
            return False
        source = self.checkpoint_dir(best_step)
        if not (source / "trainer_state.json").is_file():
            return False
        self.copy_to_best(source, portable_files)
        return True


def metrics_lines(path: Path, error: type[ZooError], hint: str) -> list[str]:
    """The lines of a ``metrics.jsonl`` (line ends kept), or one-line ``error`` naming the file.

    zoo writes ASCII only, so a line that is not UTF-8 was damaged after the fact:
    it is reported with its line number and ``hint``, never dropped or guessed at.
    Lines that are text but not JSON (a torn last line) are the caller's to skip.
    """
    data = read_bytes(path, error=error, max_bytes=MAX_METRICS_BYTES)
    lines = []
    for number, raw in enumerate(data.splitlines(keepends=True), start=1):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            byte = raw[exc.start]
            raise error(
                f"{path}:{number}: not UTF-8 text (byte 0x{byte:02x}), so not a line zoo wrote; {hint}"
            ) from None
    return lines


def _describe_holder(text: str) -> str:
    """``pid 123 on host, started 2024-...`` from a lock file's JSON, as far as it says."""
    try:
        info = json.loads(text)
        return f"pid {info['pid']} on {info['host']}, started {info['started']}"
    except (ValueError, KeyError, TypeError):
        return "pid unknown"
