"""Export a :class:`BertForSequenceClassification` for inference: ONNX or a torch.export archive.

Both formats take the three int64 ``[batch, sequence]`` inputs named
:data:`~zoo_core.backend.EXPORT_INPUTS` (the attention mask always given) and give
float32 ``[batch, num_labels]`` :data:`~zoo_core.backend.EXPORT_OUTPUT` logits; the
batch and sequence axes are dynamic.  ``"onnx"`` goes through the dynamo-based
``torch.onnx.export`` (which needs ``onnxscript``) and runs in onnxruntime;
``"native"`` is a ``torch.export`` program saved with ``torch.export.save`` and read
back by :func:`load_native`.  :func:`quantize_native_int8` writes the native INT8 model
(``torch.ao`` dynamic quantization, TorchScript), read back by :func:`load_native_int8`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.export import Dim

from zoo_core.backend import EXPORT_INPUTS, EXPORT_OUTPUT, Batch, ExportFormat
from zoo_core.errors import ExportError
from zoo_torch.model import BertForSequenceClassification
from zoo_torch.onnx_graph import drop_value_info

#: the ONNX opset written: torch's default for the exporter, which onnxruntime 1.30 runs
ONNX_OPSET = 20
#: the file each format writes into the export directory
FILE_NAMES: dict[str, str] = {"onnx": "model.onnx", "native": "model.pt2"}
#: the file :func:`quantize_native_int8` writes (TorchScript)
INT8_FILE_NAME = "model-int8.pt"


class LogitsOnly(nn.Module):
    """The model with a fixed signature for export: three int64 tensors in, the logits out."""

    def __init__(self, model: BertForSequenceClassification) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, token_type_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.model(input_ids, token_type_ids, attention_mask).logits


def example_inputs(batch: Batch, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """``batch``'s three inputs as int64 tensors on ``device``, in :data:`EXPORT_INPUTS` order."""

    def tensor(name: str) -> Tensor:
        return torch.from_numpy(np.asarray(getattr(batch, name), np.int64)).to(device)

    input_ids, token_type_ids, attention_mask = EXPORT_INPUTS
    return tensor(input_ids), tensor(token_type_ids), tensor(attention_mask)


def traceable(batch: Batch) -> Batch:
    """``batch`` grown to at least 2 rows and 2 positions, so no dynamic axis is traced at size 1.

    ``torch.export`` specialises an axis whose example size is 0 or 1 and then rejects
    the dynamic range; the values traced do not matter, only the shapes.  Extra rows
    repeat the first; extra positions are padding.
    """
    rows = max(0, 2 - len(batch))
    columns = max(0, 2 - batch.input_ids.shape[1])

    def grow(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, np.int64)
        a = np.concatenate([a, np.repeat(a[:1], rows, axis=0)]) if rows else a
        return np.pad(a, ((0, 0), (0, columns)))

    return Batch(grow(batch.input_ids), grow(batch.token_type_ids), grow(batch.attention_mask))


def dynamic_shapes(model: BertForSequenceClassification) -> dict[str, dict[int, Dim]]:
    """Dynamic batch (from 1) and sequence (2 up to the position table's size) axes for every input."""
    batch = Dim("batch", min=1)
    sequence = Dim("sequence", min=2, max=model.config.max_position_embeddings)
    return {name: {0: batch, 1: sequence} for name in EXPORT_INPUTS}


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode for the block, then restore its training flag."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def export_model(
    model: BertForSequenceClassification,
    directory: Path,
    fmt: ExportFormat,
    example: Batch,
    device: torch.device,
) -> Path:
    """Write ``model`` as ``fmt`` into ``directory`` (created if missing); return the file.

    ``example`` is traced through on ``device``; the file written (the only one)
    accepts any batch size and any sequence length from 2 to ``max_position_embeddings``.
    ``model``'s training flag is restored afterwards.
    """
    if fmt not in FILE_NAMES:
        raise ExportError(f"unknown export format {fmt!r}; expected one of {', '.join(FILE_NAMES)}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / FILE_NAMES[fmt]
    args = example_inputs(traceable(example), device)
    with eval_mode(model), torch.no_grad():
        wrapper = LogitsOnly(model).eval()
        if fmt == "onnx":
            _export_onnx(wrapper, args, dynamic_shapes(model), path)
        else:
            _export_native(wrapper, args, dynamic_shapes(model), path)
    return path


def _export_onnx(wrapper: nn.Module, args: tuple[Tensor, ...], shapes: dict[str, Any], path: Path) -> None:
    """One self-contained ONNX file (weights inside) through the dynamo-based exporter.

    The exporter captures the graph with ``torch.export`` and translates it with
    onnxscript's torchlib (offline: nothing is fetched or installed).  At opset 20
    ``scaled_dot_product_attention`` with its additive mask becomes MatMul/Add/Softmax.
    The trace's intermediate shapes are dropped (:func:`.onnx_graph.drop_value_info`).
    """
    if importlib.util.find_spec("onnxscript") is None or importlib.util.find_spec("onnx") is None:
        raise ExportError("ONNX export needs the onnx and onnxscript packages (see zoo-torch's dependencies)")
    with _quiet_onnx_exporter():
        torch.onnx.export(
            wrapper,
            args,
            path,
            input_names=list(EXPORT_INPUTS),
            output_names=[EXPORT_OUTPUT],
            opset_version=ONNX_OPSET,
            dynamo=True,
            dynamic_shapes=shapes,
            external_data=False,
            optimize=True,
            verbose=False,
        )
    drop_value_info(path)


@contextlib.contextmanager
def _quiet_onnx_exporter() -> Iterator[None]:
    """Silence the exporter's harmless chatter (torchvision ops, shared axis names, torch internals)."""
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # every input shares the batch and sequence Dims, so each name is "not used" twice
            warnings.filterwarnings("ignore", message=r".*The axis name: .* will not be used")
            # raised inside torch's own decompositions (torch.utils._pytree), not by our code
            warnings.filterwarnings("ignore", message=r".*LeafSpec.* is deprecated", category=FutureWarning)
            yield
    finally:
        registration.setLevel(level)


def _export_native(wrapper: nn.Module, args: tuple[Tensor, ...], shapes: dict[str, Any], path: Path) -> None:
    """A ``torch.export`` program saved with ``torch.export.save``.

    ``torch.export`` handles the model as it is (``arange`` over the symbolic
    sequence length, ``scaled_dot_product_attention`` with a mask), so there is no
    TorchScript fallback.
    """
    program = torch.export.export(wrapper, args, dynamic_shapes=shapes, strict=False)
    torch.export.save(program, path)


def load_native(path: Path) -> Callable[[Batch], np.ndarray]:
    """A predict function (Batch in, float32 logits out) over a ``model.pt2`` from :func:`export_model`.

    Inputs go to the device the program was exported on.
    """
    path = _existing(path, ".pt2", "a native torch export")
    try:
        module = torch.export.load(path).module()
    except Exception as error:  # truncated, or not a torch.export archive
        raise ExportError(f"{path}: not a readable torch.export archive ({_first_line(error)})") from error
    device = next((p.device for p in module.parameters()), torch.device("cpu"))

    def predict(batch: Batch) -> np.ndarray:
        with torch.no_grad():
            logits = module(*example_inputs(batch, device))
        return logits.to("cpu", torch.float32).numpy()

    return predict


def quantize_dynamic_int8(model: BertForSequenceClassification) -> BertForSequenceClassification:
    """A CPU copy of ``model`` whose ``nn.Linear`` layers are dynamically quantized (``model`` unchanged).

    ``torch.ao.quantization.quantize_dynamic`` with ``per_channel_dynamic_qconfig``:
    weights int8 per output channel (symmetric), activations quantized per batch at run
    time by the fbgemm (x86) or qnnpack (ARM) kernels; embeddings, LayerNorm, GELU,
    softmax and the attention products stay float32 (the same split as ``onnx-int8``).
    torch 2.13 warns that ``torch.ao.quantization`` is deprecated (in favour of torchao,
    which is not a dependency); that warning, and the one about creating quantized
    tensors, are silenced here and only here.
    """
    copy = BertForSequenceClassification(model.config)
    copy.load_state_dict({k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()})
    copy.eval()
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r".*torch\.ao\.quantization is deprecated", category=DeprecationWarning
        )
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions .* are deprecated")
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        return quantize_dynamic(copy, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)


def quantize_native_int8(model: BertForSequenceClassification, directory: Path, example: Batch) -> Path:
    """Write ``model``'s INT8 copy (:func:`quantize_dynamic_int8`) as TorchScript ``model-int8.pt``.

    Same inputs and output as the ``native`` export, batch and sequence axes dynamic; runs
    on the CPU (the quantized kernels' device) and loads with ``torch.jit.load`` alone, no
    zoo code.  Why TorchScript (``torch.jit.trace``): on torch 2.13, ``torch.export``
    cannot capture the quantized linear layers (their packed weights are TorchScript
    objects without ``__obj_flatten__``, so tracing fails), and ``torch.jit.script``
    rejects the model's keyword-only arguments; ``torch.jit.trace`` records the graph with
    symbolic sizes (``arange`` over the sequence, reshapes), which hold for every shape
    because the model has no shape-dependent branch on the export path (the one width
    check, ``linear_inputs``, is constant for an exported model).  torch 2.13 marks
    TorchScript deprecated as well (``torch.jit.trace``, ``save`` and ``load`` warn, silenced
    here); it still works, and it is the only self-contained form of an eager-mode
    quantized model: the alternative, the quantized state dict, needs zoo's model class to
    load.  When torch drops either API, this moves to torchao's ``torch.export`` flow.
    ``model`` is unchanged.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / INT8_FILE_NAME
    wrapper = LogitsOnly(quantize_dynamic_int8(model)).eval()
    args = example_inputs(traceable(example), torch.device("cpu"))
    with torch.no_grad(), _quiet_torchscript():
        # the width check in zoo_torch.model.linear_inputs is traced as a constant: right for a full model
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        traced = torch.jit.trace(wrapper, args, check_trace=False)
        torch.jit.save(traced, str(path))
    return path


@contextlib.contextmanager
def _quiet_torchscript() -> Iterator[None]:
    """Silence torch 2.13's notices that ``torch.jit.trace``, ``save`` and ``load`` are deprecated."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"`torch\.jit\.\w+` is deprecated", category=DeprecationWarning
        )
        yield


def load_native_int8(path: Path) -> Callable[[Batch], np.ndarray]:
    """A predict function (Batch in, float32 logits out) over :func:`quantize_native_int8`'s file."""
    path = _existing(path, ".pt", "a native torch INT8 export")
    try:
        with _quiet_torchscript():
            module = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as error:  # truncated, or not TorchScript
        raise ExportError(f"{path}: not a readable TorchScript file ({_first_line(error)})") from error
    cpu = torch.device("cpu")

    def predict(batch: Batch) -> np.ndarray:
        with torch.inference_mode():
            logits = module(*example_inputs(batch, cpu))
        return logits.to(torch.float32).numpy()

    return predict


def _existing(path: Path, suffix: str, what: str) -> Path:
    """``path`` as a Path if it names an existing ``suffix`` file, else a one-line ExportError."""
    path = Path(path)
    if path.suffix != suffix:
        raise ExportError(f"{path}: not {what} (expected a {suffix} file)")
    if not path.is_file():
        raise ExportError(f"{path}: no such file")
    return path


def _first_line(error: Exception) -> str:
    """The first line of ``error``'s message, or its type's name when it has none."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
