"""Export a :class:`BertForSequenceClassification` for inference: MindIR (native) or ONNX.

Both formats take the three int64 ``[batch, sequence]`` inputs named
:data:`~zoo_core.backend.EXPORT_INPUTS` and give float32 ``[batch, num_labels]``
:data:`~zoo_core.backend.EXPORT_OUTPUT` logits, with the batch and sequence axes dynamic.

``"native"`` is ``mindspore.export(file_format="MINDIR")`` over placeholder inputs of
shape ``[None, None]`` and is read back with ``mindspore.load`` + ``nn.GraphCell``.

``"onnx"`` is ``mindspore.onnx.export`` followed by a rewrite of the graph it writes
(:func:`zoo_mindspore.onnx_graph.make_dynamic`). MindSpore 2.10's ONNX exporter has no
converter for ``Shape``, ``TensorShape``, ``Range``, ``CumSum`` or ``Erf``, so it can only
write a graph traced at one static shape: the batch size and sequence length end up as
numbers inside Reshape targets (``[B, T, heads, head_size]``, ``[B, 1, 1, T]`` ...) and
the position ids as a constant ``arange(T)``.  We therefore trace at a *marker* shape ``(B, T)`` whose two
numbers occur nowhere else in the graph's shapes (:func:`.onnx_graph.marker_shape`), then, with the
``onnx`` package, replace every ``B`` and ``T`` in a Reshape target by the runtime batch
size and length (``Shape(input_ids)`` sliced and concatenated), replace the constant
``arange(T)`` by ``Range(0, T)``, and declare the inputs ``[batch, sequence]`` and the
output ``[batch, num_labels]``.  The file is then checked in onnxruntime against the
MindSpore network at several batch sizes and lengths (:func:`verify_onnx`); a mismatch
above :data:`ONNX_TOLERANCE` is an :class:`~zoo_core.errors.ExportError`, never a silently
wrong file.  ``Erf`` is replaced by a polynomial (see
:func:`zoo_mindspore.model.erf_polynomial`), within about 1.5e-6 of the exact GELU in float32.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import mindspore as ms
import numpy as np
import onnx
from mindspore import Tensor, nn

from zoo_core.backend import EXPORT_INPUTS, EXPORT_OUTPUT, Batch, ExportFormat
from zoo_core.errors import ExportError
from zoo_mindspore.model import BertForSequenceClassification, batch_tensors
from zoo_mindspore.onnx_graph import make_dynamic, marker_batch, marker_shape

#: the file each format writes into the export directory
FILE_NAMES: dict[str, str] = {"onnx": "model.onnx", "native": "model.mindir"}


class LogitsOnly(nn.Cell):
    """The model with a fixed signature for export: three int64 tensors in, the logits out."""

    def __init__(self, model: BertForSequenceClassification) -> None:
        super().__init__()
        self.model = model

    def construct(self, input_ids: Tensor, token_type_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.model(
            input_ids.astype(ms.int32), token_type_ids.astype(ms.int32), attention_mask.astype(ms.int32)
        )[0]


def example_inputs(batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
    """``batch``'s three inputs as int64 tensors, in :data:`EXPORT_INPUTS` order."""
    return (
        Tensor(np.asarray(batch.input_ids, np.int64)),
        Tensor(np.asarray(batch.token_type_ids, np.int64)),
        Tensor(np.asarray(batch.attention_mask, np.int64)),
    )


def dynamic_inputs() -> tuple[Tensor, Tensor, Tensor]:
    """Placeholder int64 inputs with dynamic batch and sequence axes (``[None, None]``)."""
    return tuple(Tensor(shape=[None, None], dtype=ms.int64) for _ in EXPORT_INPUTS)


def export_model(
    model: BertForSequenceClassification, directory: Path, fmt: ExportFormat, example: Batch
) -> Path:
    """Write ``model`` as ``fmt`` into ``directory`` (created if missing); return the file.

    Both files accept any batch size and sequence length (up to
    ``max_position_embeddings``).  The ONNX file is checked against ``model`` on
    ``example`` and on other shapes before this returns (see the module docstring).
    ``model``'s training flag is restored afterwards.
    """
    if fmt not in FILE_NAMES:
        raise ExportError(f"unknown export format {fmt!r}; expected one of {', '.join(FILE_NAMES)}")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / FILE_NAMES[fmt]
    was_training = model.training
    wrapper = LogitsOnly(model)
    wrapper.set_train(False)
    layers = list(model.bert.encoder.layer)
    activations = [layer.intermediate.act for layer in layers]
    traced = directory / "model.static.onnx"
    try:
        if fmt == "onnx":  # MindSpore's ONNX exporter has no Erf: exact GELU from exp instead
            for layer in layers:
                layer.intermediate.act = (
                    "gelu_onnx" if layer.intermediate.act == "gelu" else layer.intermediate.act
                )
            batch, length = marker_shape(model.config)
            ms.onnx.export(
                wrapper,
                *example_inputs(marker_batch(model.config, batch, length)),
                file_name=str(traced),
                input_names=list(EXPORT_INPUTS),
                output_names=[EXPORT_OUTPUT],
            )
        else:
            ms.export(wrapper, *dynamic_inputs(), file_name=str(path.with_suffix("")), file_format="MINDIR")
    except (RuntimeError, ValueError, TypeError) as exc:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(f"MindSpore could not export the model as {fmt}: {detail}") from exc
    finally:
        for layer, act in zip(layers, activations, strict=True):
            layer.intermediate.act = act
    try:
        if fmt == "onnx":
            if not traced.is_file():
                raise ExportError(f"MindSpore's onnx export wrote no {traced.name} into {directory}")
            proto = make_dynamic(onnx.load(str(traced)), batch, length)
            onnx.save(proto, str(path))
            try:
                verify_onnx(path, model, example)
            except ExportError:
                path.unlink(missing_ok=True)  # no file that does not reproduce the model
                raise
    finally:
        traced.unlink(missing_ok=True)
        model.set_train(was_training)
    if not path.is_file():
        raise ExportError(f"MindSpore's {fmt} export wrote no {path.name} into {directory}")
    return path


# ---- ONNX at any shape ------------------------------------------------------------------------

#: the largest |difference| allowed between the ONNX file's logits and the MindSpore model's
ONNX_TOLERANCE = 1e-4


def check_batches(example: Batch, max_length: int) -> list[Batch]:
    """``example`` and other shapes cut or grown from it: one example, half the length, longer and wider."""
    t = example.input_ids.shape[1]

    def cut(rows: int, length: int) -> Batch:
        ids, types = (np.asarray(a)[:rows, :length] for a in (example.input_ids, example.token_type_ids))
        return Batch(ids, types, np.asarray(example.attention_mask)[:rows, :length].copy())

    short = cut(1, max(1, t // 2))
    short.attention_mask[:, 0] = 1  # at least one real token
    grown_length = min(t + 5, max_length)
    ids, types, mask = (
        np.pad(np.tile(np.asarray(a), (2, 1)), ((0, 1), (0, grown_length - t)))
        for a in (example.input_ids, example.token_type_ids, example.attention_mask)
    )
    grown = Batch(ids, types, mask)
    grown.attention_mask[-1, :3] = 1  # an example of three (padding) tokens
    return [example, short, grown]


def verify_onnx(path: Path, model: BertForSequenceClassification, example: Batch) -> None:
    """Raise :class:`ExportError` unless ``path`` reproduces ``model`` within :data:`ONNX_TOLERANCE`.

    Compares onnxruntime's logits with the MindSpore model's (run eagerly, exact GELU)
    on every batch of :func:`check_batches`.
    """
    from zoo_core.runners.export import onnx_predictor

    predict = onnx_predictor(path)
    model.set_train(False)
    for batch in check_batches(example, model.config.max_position_embeddings):
        want = model(*batch_tensors(batch))[0].asnumpy()
        try:
            got = predict(batch)
        except Exception as exc:  # onnxruntime's own errors have no common base class
            detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ExportError(
                f"{path}: onnxruntime cannot run shape {batch.input_ids.shape}: {detail}"
            ) from exc
        error = float(np.abs(got - want).max())
        if not error <= ONNX_TOLERANCE:
            raise ExportError(
                f"{path}: the ONNX file differs from the MindSpore model by {error:.2e} at shape "
                f"{batch.input_ids.shape} (tolerance {ONNX_TOLERANCE:g})"
            )


def load_native(path: Path) -> Callable[[Batch], np.ndarray]:
    """A predict function (Batch in, float32 logits out) over a ``model.mindir`` from :func:`export_model`."""
    if path.suffix != ".mindir":
        raise ExportError(f"{path}: not a native MindSpore export (expected a .mindir file)")
    if not path.is_file():
        raise ExportError(f"{path}: no such file")
    try:
        graph = ms.load(str(path))
    except Exception as error:  # truncated, or not a MindIR file
        detail = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ExportError(f"{path}: not a readable MindIR file ({detail})") from error
    cell = nn.GraphCell(graph)

    def predict(batch: Batch) -> np.ndarray:
        return np.asarray(cell(*example_inputs(batch)).asnumpy(), dtype=np.float32)

    return predict
