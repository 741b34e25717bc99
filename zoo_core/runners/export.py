"""``zoo export``: a run's checkpoint as deployable files, each verified before it is kept.

A DynaBERT width run exports the sub-model at ``width_mult``: the first heads and FFN
neurons of every layer, physically sliced (``zoo_core.models.width.slice_to_width``),
with a config whose head count says so; "the trained model" is then that sub-model,
exactly what ``zoo run`` evaluated at that width.

The ONNX file is the core's graph (:mod:`zoo_core.onnx_export`), written from the
model's canonical weights: the same graph, and so the same speed, whichever backend
trained or exports the model, in the op pattern onnxruntime's BERT optimizer fuses.  The
native format is the backend's own.

For every requested format the exported model is loaded back (the portable checkpoint
on the backend, ONNX in onnxruntime, the native file in the backend's runtime), its
logits on a real dev batch are compared with the trained model's (at most 1e-4 apart,
fp32), and its dev metric over the whole split is computed.  An export that fails the
comparison is not kept.  Each format is written atomically to ``<output>/<format>/``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from zoo_core.backend import EXPORT_INPUTS, EXPORT_OUTPUT, Backend, Batch, capable
from zoo_core.checkpoint import ModelDir, atomic_directory, open_model_dir, write_checkpoint
from zoo_core.data.batching import collate, eval_batches
from zoo_core.data.dataset import TokenizedDataset
from zoo_core.errors import BackendError, BackendUnavailableError, ExportError, ModelError
from zoo_core.models.config import BertConfig
from zoo_core.plugins import require_native_int8
from zoo_core.runners.evaluate import Predictor, predict_with
from zoo_core.runners.inference import LoadedModel, checkpoint_task, load_checkpoint, load_split
from zoo_core.runners.int8 import INT8_FORMAT, NATIVE_INT8_FORMAT, Int8Spec, export_int8, judge_int8
from zoo_core.runners.widths import sliced_model, width_metric
from zoo_core.runs import RunDir
from zoo_core.sweep.summary import best_run_dir, is_sweep_dir
from zoo_core.tasks import Task, compute_metrics

Format = Literal["portable", "onnx", "native"]
FORMATS: tuple[Format, ...] = ("portable", "onnx", "native")
#: largest |exported - trained| logit difference accepted (fp32)
TOLERANCE = 1e-4


@dataclass
class ExportResult:
    """One exported format: where it is, how far it is from the trained model, its dev metrics."""

    format: str
    path: Path
    max_abs_diff: float
    metrics: dict[str, float]
    #: INT8: the fraction of dev examples predicted as the fp32 model (ONNX, native) predicts them
    agreement: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (export.json)."""
        return {**asdict(self), "path": str(self.path)}


def latest_run(runs_root: Path = Path("runs"), kind: str | None = None) -> Path:
    """The run directory under ``runs_root`` whose result.json is newest (of recipe ``kind`` if given).

    A sweep directory (``zoo sweep``) counts by its sweep.json and stands for its best trial's run.
    """
    finished = (
        sorted(
            [*runs_root.glob("*/result.json"), *runs_root.glob("*/sweep.json")],
            key=lambda p: p.stat().st_mtime,
        )
        if runs_root.is_dir()
        else []
    )
    runs = [r for r in (_run_of(p) for p in finished) if r is not None]
    if kind is not None:
        runs = [r for r in runs if _run_kind(r) == kind]
    if not runs:
        what = f"finished {kind} run" if kind else "finished run"
        raise ModelError(f"no {what} under {runs_root}/; pass the run directory or checkpoint to export")
    return runs[-1]


def _run_of(path: Path) -> Path | None:
    """The run a result.json or a sweep.json (its best trial's run; None without one) stands for."""
    if path.name != "sweep.json":
        return path.parent
    try:
        return best_run_dir(path.parent)
    except ModelError:
        return None


def _run_kind(run_dir: Path) -> str | None:
    """The recipe kind recorded in a run's best/zoo.json, or None if unreadable."""
    try:
        meta = json.loads((run_dir / "best" / "zoo.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    kind = meta.get("kind") if isinstance(meta, dict) else None
    return kind if isinstance(kind, str) else None


def resolve_source(ref: Path | None, width_mult: float = 1.0) -> tuple[Path, Path]:
    """The checkpoint to export and the default output folder's parent, for a run or checkpoint path.

    ``None`` means the most recent run (the most recent width run for a width other
    than 1); a run directory means its ``best/`` checkpoint; a sweep directory its best
    trial's run; any other directory must be a checkpoint itself.
    """
    path = latest_run(kind="width" if width_mult != 1.0 else None) if ref is None else Path(ref)
    if is_sweep_dir(path):  # zoo sweep's directory: its best trial
        path = best_run_dir(path)
    if (path / "recipe.yaml").is_file() and (path / "best").is_dir():
        return path / "best", path
    if not (path / "config.json").is_file():
        raise ModelError(f"{path}: neither a run directory (with best/) nor a checkpoint (with config.json)")
    return path, path.parent if path.name == "best" else path


def warn_if_unfinished(checkpoint_dir: Path, run_dir: Path, say: Callable[[str], None]) -> None:
    """Say so when ``checkpoint_dir`` is the best/ of a run still training (its lock held) or unfinished.

    Its best/ is then the best model so far, not the run's final choice; it is exported
    all the same.
    """
    rundir = RunDir(run_dir, writer=False)
    if checkpoint_dir.name != "best" or not (run_dir / "recipe.yaml").is_file():
        return
    if rundir.finished() is not None and not rundir.lock_held():
        return
    step = rundir.best_step_on_disk()
    at = f"step {step}" if step is not None else "an unknown step"
    say(f"warning: {run_dir} is still training (or was interrupted): exporting best/ from {at}")


#: a requested width this close to one the run trained means that one (0.667 -> 0.6667)
WIDTH_SNAP = 0.01


def trained_width(checkpoint: ModelDir, width_mult: float, say: Callable[[str], None]) -> float:
    """The width of the run's ``width_mult_list`` within :data:`WIDTH_SNAP` of ``width_mult``, else itself.

    ``0.667 x 1536`` rounds to 1025 FFN neurons, ``0.6667 x 1536`` to the 1024 the run
    trained: users mean the trained sub-model, so they get it (and are told).  A width
    far from every trained one is exported as asked, with a warning.
    """
    trained = [float(w) for w in checkpoint.meta.get("width_mult_list", [])]
    if not trained or width_mult in trained:
        return width_mult
    nearest = min(trained, key=lambda w: abs(w - width_mult))
    if abs(nearest - width_mult) <= WIDTH_SNAP:
        say(f"width {width_mult:g} is the run's trained width {nearest:g}")
        return nearest
    say(
        f"warning: width {width_mult:g} was not trained (the run trained "
        f"{', '.join(f'{w:g}' for w in trained)}); its accuracy is whatever the export measures"
    )
    return width_mult


def reported_width_metric(checkpoint: ModelDir, width_mult: float) -> tuple[str, float] | None:
    """The dev metric a width run recorded for the sub-model at ``width_mult`` (same heads and FFN)."""
    from zoo_core.models.width import width_dims

    metrics = checkpoint.meta.get("metrics") or {}
    task = checkpoint_task(checkpoint, None)
    wanted = width_dims(checkpoint.config, width_mult)
    for width in checkpoint.meta.get("width_mult_list", []):
        key = width_metric(task.main_metric, width)
        if width_dims(checkpoint.config, width) == wanted and key in metrics:
            return key, float(metrics[key])
    return None


def onnx_predictor(path: Path) -> Predictor:
    """Logits from an ONNX file run in onnxruntime on the CPU."""
    try:
        import onnxruntime
    except ImportError:
        raise BackendUnavailableError(
            "checking an ONNX export needs onnxruntime: pip install onnxruntime"
        ) from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def predict(batch: Batch) -> np.ndarray:
        arrays = (batch.input_ids, batch.token_type_ids, batch.attention_mask)
        feed = {name: np.asarray(a, dtype=np.int64) for name, a in zip(EXPORT_INPUTS, arrays, strict=True)}
        (logits,) = session.run([EXPORT_OUTPUT], feed)
        return np.asarray(logits, dtype=np.float32)

    return predict


def _exporter(
    fmt: Format,
    backend: Backend,
    model: Any,
    config: BertConfig,
    checkpoint: ModelDir,
    example: Batch,
    meta: dict[str, Any],
) -> tuple[Callable[[Path], None], Callable[[Path], Predictor]]:
    """How to write format ``fmt`` into a folder, and how to load a predictor from the written folder."""
    if fmt == "portable":

        def write_portable(tmp: Path) -> None:
            weights = backend.dump_weights(model)
            write_checkpoint(
                tmp / "checkpoint",
                config,
                weights,
                checkpoint.vocab_path,
                meta,
                lowercase=checkpoint.lowercase,
            )
            for item in (tmp / "checkpoint").iterdir():
                os.replace(item, tmp / item.name)
            (tmp / "checkpoint").rmdir()

        def load_portable(folder: Path) -> Predictor:
            reloaded = open_model_dir(folder)
            fresh = backend.build_model(reloaded.config)
            backend.load_weights(fresh, reloaded.load_weights())
            return lambda batch: backend.predict(fresh, batch)

        return write_portable, load_portable

    exporter = capable(backend, "export")

    def write_deployable(tmp: Path) -> None:
        if fmt == "onnx":  # one graph for every backend, from the canonical weights
            from zoo_core.onnx_export import write_onnx

            write_onnx(config, backend.dump_weights(model), tmp / "model.onnx")
        else:
            exporter.export(model, tmp, fmt, example)
        (tmp / "export.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")

    def load_deployable(folder: Path) -> Predictor:
        files = [p for p in folder.iterdir() if p.name != "export.json"]
        if fmt == "onnx":
            return onnx_predictor(next(p for p in files if p.suffix == ".onnx"))
        return exporter.load_native(files[0])

    return write_deployable, load_deployable


def _export_one(
    target: Path,
    write: Callable[[Path], None],
    load: Callable[[Path], Predictor],
    example: Batch,
    trained: np.ndarray,
    dataset: TokenizedDataset,
    batch_size: int,
    task: Task,
) -> ExportResult:
    """Write one format atomically into ``target``, keeping it only if it reproduces ``trained``."""
    labels = dataset.labels
    assert labels is not None
    found: list[ExportResult] = []

    def verified(tmp: Path) -> None:
        write(tmp)
        predictor = load(tmp)
        diff = float(np.abs(predictor(example) - trained).max())
        if not diff <= TOLERANCE:
            raise ExportError(
                f"{target.name} export differs from the trained model by {diff:.2e} (> {TOLERANCE:g}) "
                "on a dev batch; not kept"
            )
        metrics = compute_metrics(task, predict_with(predictor, dataset, batch_size), labels)
        found.append(ExportResult(target.name, target, diff, metrics))

    atomic_directory(target, verified)
    return found[0]


def _export_int8(
    out_root: Path,
    spec: Int8Spec,
    loaded: LoadedModel,
    data_dir: Path | None,
    dataset: TokenizedDataset,
    example: Batch,
    trained: np.ndarray,
    batch_size: int,
    meta: dict[str, Any],
    split: str,
    say: Callable[[str], None],
) -> ExportResult:
    """``onnx-int8/`` from the verified ``onnx/`` beside it, accepted by the dev metric."""
    train = load_split(loaded, data_dir, "train") if spec.calibrate else None
    what = f"static, calibrated on {spec.calibrate} training examples" if spec.calibrate else "dynamic"
    say(f"  quantizing the ONNX export to INT8 ({what}); accepted within {spec.max_drop:g} points of fp32")
    target = out_root / INT8_FORMAT
    metrics, agree, _ = export_int8(
        target,
        out_root / "onnx" / "model.onnx",
        spec,
        onnx_predictor,
        dataset,
        train,
        batch_size,
        loaded.task,
        meta,
    )
    predict = onnx_predictor(target / "model.onnx")
    return _int8_result(INT8_FORMAT, target, predict, example, trained, metrics, agree, split, say)


def _int8_result(
    fmt: str,
    target: Path,
    predict: Predictor,
    example: Batch,
    trained: np.ndarray,
    metrics: dict[str, float],
    agree: float | None,
    split: str,
    say: Callable[[str], None],
) -> ExportResult:
    """An accepted INT8 export's result: its distance from the trained logits on ``example``, printed."""
    diff = float(np.abs(predict(example) - trained).max())
    shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
    agreed = "" if agree is None else f"  agrees with fp32 on {100 * agree:.2f}%"
    say(f"  {fmt:<9} {target}  max |diff| {diff:.1e}  {split} {shown}{agreed}")
    return ExportResult(fmt, target, diff, metrics, agree)


def _export_native_int8(
    out_root: Path,
    spec: Int8Spec,
    backend: Backend,
    model: Any,
    task: Task,
    dataset: TokenizedDataset,
    example: Batch,
    trained: np.ndarray,
    batch_size: int,
    meta: dict[str, Any],
    split: str,
    say: Callable[[str], None],
) -> ExportResult:
    """``native-int8/``: the backend's own INT8 model, judged against the verified ``native/`` beside it."""
    exporter, quantizer = capable(backend, "export"), capable(backend, "int8")
    say(
        f"  quantizing the {backend.name} model to INT8 ({backend.name}'s own dynamic quantization); "
        f"accepted within {spec.max_drop:g} points of the fp32 native export"
    )
    fp32_dir = out_root / "native"
    fp32_file = next(p for p in fp32_dir.iterdir() if p.name != "export.json")
    reference = predict_with(exporter.load_native(fp32_file), dataset, batch_size)

    def quantize(tmp: Path) -> tuple[Path, dict[str, Any]]:
        path = quantizer.quantize_native_int8(model, tmp, example)
        record = {
            "mode": "dynamic",
            "method": f"{backend.name}'s native dynamic quantization (see the plugin's README)",
            "weights": "int8",
            "activations": "per batch",
            "quantized_ops": "the linear layers",
            "file": path.name,
        }
        return path, record

    target = out_root / NATIVE_INT8_FORMAT
    metrics, agree, record = judge_int8(
        target,
        quantize,
        quantizer.load_native_int8,
        reference,
        "fp32 native export",
        dataset,
        batch_size,
        task,
        spec.max_drop,
        meta,
    )
    predict = quantizer.load_native_int8(target / record["file"])
    return _int8_result(NATIVE_INT8_FORMAT, target, predict, example, trained, metrics, agree, split, say)


def export_checkpoint(
    source: Path | None,
    formats: Sequence[Format],
    *,
    width_mult: float = 1.0,
    output: Path | None = None,
    backend_name: str | None = None,
    device: str = "cpu",
    data_dir: Path | None = None,
    split: str = "dev",
    batch_size: int = 128,
    int8: Int8Spec | None = None,
    native_int8: bool | None = None,
    say: Callable[[str], None] = print,
) -> list[ExportResult]:
    """Export a run's best checkpoint (or any checkpoint) in ``formats``, verifying each.

    ``backend_name`` None means the backend that trained the checkpoint (its zoo.json), else torch.
    ``int8``: also quantize the ONNX export into ``onnx-int8/`` (:mod:`zoo_core.runners.int8`;
    adds ``onnx`` to ``formats``, the fp32 model it is judged against).  With ``native`` in
    ``formats`` too, ``native-int8/`` as well, judged against ``native/``: ``native_int8``
    True requires the backend's ``int8`` capability (refused, with the plugin's reason,
    before any work), None writes it when the backend has the capability (else says why
    not), False never.
    """
    if int8 is not None and "onnx" not in formats:
        formats = [*formats, "onnx"]
    wants_native_int8 = int8 is not None and "native" in formats and native_int8 is not False
    checkpoint_dir, run_dir = resolve_source(source, width_mult)
    if source is not None and is_sweep_dir(Path(source)):
        say(f"exporting the sweep's best trial: {checkpoint_dir}")
    warn_if_unfinished(checkpoint_dir, run_dir, say)
    checkpoint = open_model_dir(checkpoint_dir)
    if backend_name is None:
        recorded = checkpoint.meta.get("backend")
        backend_name = recorded if isinstance(recorded, str) else "torch"
    if wants_native_int8:
        try:
            require_native_int8(backend_name)
        except BackendError as error:
            if native_int8:
                raise
            say(f"no {NATIVE_INT8_FORMAT}/: {error}")
            wants_native_int8 = False
    if width_mult != 1.0 and checkpoint.meta.get("kind") != "width":
        raise ExportError(
            f"{checkpoint_dir}: --width-mult {width_mult} needs a DynaBERT width run; "
            f"this is a {checkpoint.meta.get('kind', 'plain')} checkpoint, which exports at width 1.0 only"
        )
    loaded = load_checkpoint(checkpoint, None, backend_name, device)
    task, backend, model, config = loaded.task, loaded.backend, loaded.model, checkpoint.config
    reported: tuple[str, float] | None = None
    if checkpoint.meta.get("kind") == "width":
        width_mult = trained_width(checkpoint, width_mult, say)
        model, config = sliced_model(backend, backend.dump_weights(model), checkpoint.config, width_mult)
        reported = reported_width_metric(checkpoint, width_mult)
    dataset = load_split(loaded, data_dir, split)
    example = collate(dataset, eval_batches(dataset.lengths, 32)[0])
    trained = backend.predict(model, example)
    out_root = output or run_dir / "export" / f"width-{width_mult:g}"
    meta = {
        "exported_from": str(checkpoint_dir),
        "width_mult": width_mult,
        "task": task.name,
        "backend": backend.name,
        "labels": list(config.labels),
        "num_attention_heads": config.num_attention_heads,
        "intermediate_size": config.intermediate_size,
        "vocab_size": config.vocab_size,
        "max_position_embeddings": config.max_position_embeddings,
        "recipe": checkpoint.meta.get("recipe"),
    }
    say(
        f"exporting {checkpoint_dir} at width {width_mult:g} ({config.num_attention_heads} heads, "
        f"FFN {config.intermediate_size}) with the {backend.name} backend to {out_root}"
    )
    results = []
    for fmt in formats:
        write, load = _exporter(
            fmt, backend, model, config, checkpoint, example, {**meta, "export_format": fmt}
        )
        result = _export_one(out_root / fmt, write, load, example, trained, dataset, batch_size, task)
        results.append(result)
        shown = "  ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
        say(f"  {fmt:<9} {result.path}  max |diff| {result.max_abs_diff:.1e}  {split} {shown}")
    if int8 is not None:
        results.append(
            _export_int8(
                out_root, int8, loaded, data_dir, dataset, example, trained, batch_size, meta, split, say
            )
        )
    if wants_native_int8:
        assert int8 is not None
        results.append(
            _export_native_int8(
                out_root, int8, backend, model, task, dataset, example, trained, batch_size, meta, split, say
            )
        )
    if reported is not None:
        say(f"  zoo run reported {reported[0]} {reported[1]:.4f} for this width (last evaluation)")
    summary = out_root / "export.json"
    summary.write_text(json.dumps([r.as_dict() for r in results], indent=2) + "\n")
    return results
