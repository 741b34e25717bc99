"""Export a :class:`BertForSequenceClassification` for inference: MindIR (native) or ONNX.

Both formats take the three int64 ``[batch, sequence]`` inputs named
:data:`~zoo_core.backend.EXPORT_INPUTS` and give float32 ``[batch, num_labels]``
:data:`~zoo_core.backend.EXPORT_OUTPUT` logits, with the batch and sequence axes dynamic.
``"native"`` is ``mindspore.export(file_format="MINDIR")`` over placeholder inputs of
shape ``[None, None]`` and is read back with ``mindspore.load`` + ``nn.GraphCell``;
``"onnx"`` is ``mindspore.onnx.export`` and runs in onnxruntime, but with the example's
**static** shapes: MindSpore 2.10's ONNX exporter cannot export the ``Shape``,
``TensorShape``, ``Range``, ``CumSum`` or ``Triu`` primitives, so nothing in the graph can
derive the position ids (or reshape heads) from a dynamic sequence length, and declaring
``dynamic_axes`` only yields a file whose Reshape nodes fail at any other shape.  The
file therefore declares its fixed ``[batch, sequence]`` input shapes, and onnxruntime
refuses other shapes with a clear message.  Its ``Erf``-less GELU (see
:func:`zoo_mindspore.model.erf_polynomial`) is within about 1.5e-6 of the exact one in float32.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn

from zoo_core.backend import EXPORT_INPUTS, EXPORT_OUTPUT, Batch, ExportFormat
from zoo_core.errors import ExportError
from zoo_mindspore.model import BertForSequenceClassification

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
    return tuple(Tensor(shape=[None, None], dtype=ms.int64) for _ in EXPORT_INPUTS)  # type: ignore[return-value]


def export_model(
    model: BertForSequenceClassification, directory: Path, fmt: ExportFormat, example: Batch
) -> Path:
    """Write ``model`` as ``fmt`` into ``directory`` (created if missing); return the file.

    The MindIR file accepts any batch size and sequence length (up to
    ``max_position_embeddings``); the ONNX file only ``example``'s shape (see the module
    docstring).  ``model``'s training flag is restored afterwards.
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
    try:
        if fmt == "onnx":  # MindSpore's ONNX exporter has no Erf: exact GELU from exp instead
            for layer in layers:
                layer.intermediate.act = (
                    "gelu_onnx" if layer.intermediate.act == "gelu" else layer.intermediate.act
                )
        if fmt == "onnx":
            ms.onnx.export(
                wrapper,
                *example_inputs(example),
                file_name=str(path),
                input_names=list(EXPORT_INPUTS),
                output_names=[EXPORT_OUTPUT],
            )
        else:
            ms.export(wrapper, *dynamic_inputs(), file_name=str(path.with_suffix("")), file_format="MINDIR")
    except (RuntimeError, ValueError, TypeError) as exc:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(f"MindSpore could not export the model as {fmt}: {detail}") from exc
    finally:
        model.set_train(was_training)
        for layer, act in zip(layers, activations, strict=True):
            layer.intermediate.act = act
    if not path.is_file():
        raise ExportError(f"MindSpore's {fmt} export wrote no {path.name} into {directory}")
    return path


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
