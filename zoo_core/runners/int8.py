"""INT8 exports (``zoo export --quantize int8``), each accepted by the dev metric.

``onnx-int8/``: onnxruntime's quantizer on the fp32 ONNX export (below).  ``native-int8/``
(with ``--format native``, for a backend with the ``int8`` capability): the framework's own
dynamic quantization (:meth:`zoo_core.backend.Int8Exporter.quantize_native_int8`), judged
against the fp32 native export.  Both go through :func:`judge_int8`: the same acceptance
rule, record and atomic write.

The verified fp32 ONNX export is quantized with ``onnxruntime.quantization``:

* **dynamic** (the default): weights int8 per output channel, activations quantized per
  batch at run time (``quantize_dynamic``); nothing to calibrate;
* **static** (``--calibrate N``): activation ranges fixed in advance from N *training*
  examples (never dev, which judges the result), MinMax, QDQ format
  (``quantize_static``).

Only the linear layers are quantized: ``MatMul`` nodes whose second input is a weight
(``MatMulConstBOnly``).  LayerNorm, GELU, Softmax, the residual Adds, the attention
products (activation x activation) and the embedding lookups stay float32: they are
what users of onnxruntime, optimum and PaddleSlim report as breaking INT8 BERT accuracy,
and on SST-2 quantizing the embeddings too cost three times the accuracy for no speed.

A quantized model is kept only if its dev metric is at most ``max_drop`` points (of
100) below the fp32 ONNX's on the same split; it is then saved with its metric, the drop and
the fraction of examples on which the two predict the same class (classification) in
``export.json``, and printed.  Otherwise nothing is written and the one-line error says by
how much it missed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo_core.backend import EXPORT_INPUTS
from zoo_core.checkpoint import atomic_directory
from zoo_core.data.batching import collate, eval_batches
from zoo_core.data.dataset import TokenizedDataset
from zoo_core.errors import BackendUnavailableError, ExportError
from zoo_core.runners.evaluate import predict_with
from zoo_core.tasks import Task, compute_metrics

#: the quantizable ops: the linear layers (MatMul with a weight as second input)
QUANTIZED_OPS = ("MatMul",)
#: examples per calibration batch
CALIBRATION_BATCH = 32
#: the folder ``zoo export --quantize int8`` writes beside ``onnx/``
INT8_FORMAT = "onnx-int8"
#: the folder it writes beside ``native/`` (backends with the ``int8`` capability)
NATIVE_INT8_FORMAT = "native-int8"


@dataclass(frozen=True)
class Int8Spec:
    """How to quantize: ``calibrate`` 0 is dynamic, N > 0 static on N training examples."""

    calibrate: int = 0
    #: the largest accepted drop of the task's main metric, in points (of 100)
    max_drop: float = 1.0
    seed: int = 0

    @property
    def mode(self) -> str:
        """``dynamic`` or ``static``."""
        return "static" if self.calibrate else "dynamic"


def _quantization() -> Any:
    try:
        from onnxruntime import quantization
    except ImportError:
        raise BackendUnavailableError("INT8 export needs onnxruntime: pip install onnxruntime") from None
    return quantization


def calibration_feeds(train: TokenizedDataset, count: int, seed: int) -> Iterator[dict[str, np.ndarray]]:
    """``count`` training examples (a seeded sample) as onnxruntime feeds of 32, shortest first."""
    chosen = np.random.default_rng(seed).permutation(len(train))[: min(count, len(train))]
    subset = np.sort(chosen)
    for indices in eval_batches(train.lengths[subset], CALIBRATION_BATCH):
        batch = collate(train, subset[indices])
        arrays = (batch.input_ids, batch.token_type_ids, batch.attention_mask)
        yield {name: np.asarray(a, np.int64) for name, a in zip(EXPORT_INPUTS, arrays, strict=True)}


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence onnxruntime's quantizer advice (root-logger warnings about pre-processing)."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def quantize_onnx(
    source: Path, target: Path, spec: Int8Spec, train: TokenizedDataset | None
) -> dict[str, Any]:
    """Write the INT8 model of the fp32 ONNX ``source`` to ``target``; returns the record for export.json."""
    from zoo_core.cpu_features import saturates_int8

    q = _quantization()
    seven_bit = saturates_int8()
    common: dict[str, Any] = {
        "per_channel": True,
        "reduce_range": seven_bit,  # onnxruntime's advice for CPUs without VNNI
        "weight_type": q.QuantType.QInt8,
        "op_types_to_quantize": list(QUANTIZED_OPS),
        # DefaultTensorType: float32 where shape inference knows no type (onnxruntime's fused
        # contrib ops, see zoo_core.onnx_export.optimize_onnx)
        "extra_options": {"MatMulConstBOnly": True, "DefaultTensorType": 1},
    }
    with _quiet():
        if spec.calibrate:
            assert train is not None, "static quantization needs the training split"
            feeds = calibration_feeds(train, spec.calibrate, spec.seed)

            class Reader(q.CalibrationDataReader):  # type: ignore[name-defined]
                def get_next(self) -> dict[str, np.ndarray] | None:
                    return next(feeds, None)

            q.quantize_static(
                str(source),
                str(target),
                Reader(),
                quant_format=q.QuantFormat.QDQ,
                activation_type=q.QuantType.QInt8,
                calibrate_method=q.CalibrationMethod.MinMax,
                **common,
            )
        else:
            q.quantize_dynamic(str(source), str(target), **common)
    return {
        "mode": spec.mode,
        "weights": "int8, per output channel" + (" (7-bit range: this CPU lacks VNNI)" if seven_bit else ""),
        "activations": "int8, ranges from training examples (MinMax)" if spec.calibrate else "per batch",
        "quantized_ops": "MatMul with a weight operand",
        "calibration_examples": min(spec.calibrate, len(train)) if spec.calibrate and train else 0,
    }


def agreement(reference: np.ndarray, logits: np.ndarray) -> float | None:
    """Fraction of examples whose predicted class is the same (None for a regression head)."""
    if reference.shape[1] < 2:
        return None
    return float(np.mean(reference.argmax(1) == logits.argmax(1)))


def judge_int8(
    target: Path,
    quantize: Callable[[Path], tuple[Path, dict[str, Any]]],
    load: Callable[[Path], Callable[..., np.ndarray]],
    reference: np.ndarray,
    baseline: str,
    dataset: TokenizedDataset,
    batch_size: int,
    task: Task,
    max_drop: float,
    meta: dict[str, Any],
) -> tuple[dict[str, float], float | None, dict[str, Any]]:
    """Write an INT8 model into ``target`` atomically, keeping it only if its dev metric is close enough.

    ``quantize(folder)`` writes the model into a fresh folder and returns its file and
    quantization record; ``load(file)`` is its predict function.  ``reference`` holds the
    fp32 model's logits over ``dataset``, the ``baseline`` (e.g. ``"fp32 ONNX"``) it is
    judged against: the INT8 model's main metric may be at most ``max_drop`` points (of
    100) below the baseline's.  Returns the INT8 model's metrics, its agreement with the
    baseline and the record saved in ``target/export.json``; raises :class:`ExportError`
    (nothing written) when it drops further.  Every INT8 format (``onnx-int8``,
    ``native-int8``) goes through here, so all are judged by the same rule.
    """
    labels = dataset.labels
    assert labels is not None
    fp32 = compute_metrics(task, reference, labels)[task.main_metric]
    found: list[tuple[dict[str, float], float | None, dict[str, Any]]] = []

    def accepted(tmp: Path) -> None:
        path, record = quantize(tmp)
        logits = predict_with(load(path), dataset, batch_size)
        metrics = compute_metrics(task, logits, labels)
        drop = 100 * (fp32 - metrics[task.main_metric])
        if not drop <= max_drop:
            raise ExportError(
                f"{target.name}: {task.main_metric} {metrics[task.main_metric]:.4f} is {drop:.2f} points "
                f"below the {baseline}'s {fp32:.4f} (--max-drop {max_drop:g}); not kept"
            )
        agree = agreement(reference, logits)
        record = {
            **record,
            "max_drop_points": max_drop,
            "main_metric": task.main_metric,
            "metric": metrics[task.main_metric],
            "fp32_metric": fp32,
            "metric_drop_points": drop,
            "agreement_with_fp32": agree,
        }
        (tmp / "export.json").write_text(
            json.dumps({**meta, "export_format": target.name, "quantization": record}, indent=2, default=str)
            + "\n"
        )
        found.append((metrics, agree, record))

    atomic_directory(target, accepted)
    return found[0]


def export_int8(
    target: Path,
    fp32_onnx: Path,
    spec: Int8Spec,
    predictor: Callable[[Path], Callable[..., np.ndarray]],
    dataset: TokenizedDataset,
    train: TokenizedDataset | None,
    batch_size: int,
    task: Task,
    meta: dict[str, Any],
) -> tuple[dict[str, float], float | None, dict[str, Any]]:
    """Quantize ``fp32_onnx`` into ``target/model.onnx`` atomically, keeping it only if accurate enough.

    Returns the INT8 model's dev metrics, its agreement with the fp32 ONNX, and the
    quantization record; raises :class:`ExportError` (nothing written) when the main metric
    drops by more than ``spec.max_drop`` points (:func:`judge_int8`).
    """

    def quantize(tmp: Path) -> tuple[Path, dict[str, Any]]:
        record = quantize_onnx(fp32_onnx, tmp / "model.onnx", spec, train)
        for leftover in tmp.glob("*-inferred.onnx"):  # onnxruntime's shape-inferred copy, if any
            leftover.unlink()
        return tmp / "model.onnx", record

    reference = predict_with(predictor(fp32_onnx), dataset, batch_size)
    return judge_int8(
        target, quantize, predictor, reference, "fp32 ONNX", dataset, batch_size, task, spec.max_drop, meta
    )
