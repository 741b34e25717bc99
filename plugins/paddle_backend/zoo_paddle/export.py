"""Export a :class:`BertForSequenceClassification` for inference: a Paddle inference model or ONNX.

Both formats take the three int64 ``[batch, sequence]`` inputs named
:data:`~zoo_core.backend.EXPORT_INPUTS` (both axes dynamic, the attention mask always
given) and give float32 ``[batch, num_labels]`` :data:`~zoo_core.backend.EXPORT_OUTPUT`
logits.  ``"native"`` is ``paddle.jit.save``'s static inference model
(``model.json`` — the PIR program — and ``model.pdiparams``), read back by
:func:`load_native` with ``paddle.jit.load`` (Paddle Inference reads the same files).
``"onnx"`` converts that program with paddle2onnx (no post-optimisation tool: its
default, polygraphy, may pip-install packages at run time) and renames the output to
``logits``.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import paddle
from paddle import Tensor, nn
from paddle.static import InputSpec

from zoo_core.backend import EXPORT_INPUTS, EXPORT_OUTPUT, Batch, ExportFormat
from zoo_core.errors import ExportError
from zoo_paddle.model import BertForSequenceClassification, to_tensor
from zoo_paddle.onnx_graph import drop_unused_initializers, rename_output

#: the ONNX opset written (LayerNormalization is an operator from 17 on); onnxruntime 1.30 runs it
ONNX_OPSET = 17
#: the file each format returns (the native format writes model.pdiparams beside model.json)
FILE_NAMES: dict[str, str] = {"onnx": "model.onnx", "native": "model.json"}
#: the name ``paddle.jit.save`` gives the files: ``<prefix>.json`` and ``<prefix>.pdiparams``
PREFIX = "model"


class LogitsOnly(nn.Layer):
    """The model with a fixed signature for export: three int64 tensors in, the logits out."""

    def __init__(self, model: BertForSequenceClassification) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, token_type_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.model(input_ids, token_type_ids, attention_mask).logits


def input_spec() -> list[InputSpec]:
    """int64 ``[batch, sequence]`` inputs, both axes dynamic, named as :data:`EXPORT_INPUTS`."""
    return [InputSpec([None, None], "int64", name=name) for name in EXPORT_INPUTS]


@contextlib.contextmanager
def eval_mode(model: nn.Layer) -> Iterator[None]:
    """Put ``model`` in eval mode for the block, then restore its training flag."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        if was_training:
            model.train()


def save_inference_model(model: BertForSequenceClassification, prefix: Path) -> None:
    """``paddle.jit.save`` ``model`` (in eval mode) to ``<prefix>.json`` and ``<prefix>.pdiparams``."""
    with eval_mode(model):
        wrapper = LogitsOnly(model)
        wrapper.eval()
        paddle.jit.save(wrapper, str(prefix), input_spec=input_spec())


def export_model(
    model: BertForSequenceClassification, directory: Path, fmt: ExportFormat, example: Batch
) -> Path:
    """Write ``model`` as ``fmt`` into ``directory`` (created if missing); return the file.

    The file accepts any batch size and sequence length up to ``max_position_embeddings``;
    the export is checked against ``model`` on ``example`` before it is returned.
    ``model``'s training flag is restored afterwards.
    """
    if fmt not in FILE_NAMES:
        raise ExportError(f"unknown export format {fmt!r}; expected one of {', '.join(FILE_NAMES)}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if fmt == "native":
        save_inference_model(model, directory / PREFIX)
        path = directory / FILE_NAMES["native"]
        if not path.is_file():
            raise ExportError(f"paddle.jit.save wrote no {path.name} into {directory}")
        return path
    path = directory / FILE_NAMES["onnx"]
    with tempfile.TemporaryDirectory(prefix="zoo-paddle-onnx-") as tmp:
        save_inference_model(model, Path(tmp) / PREFIX)
        path.write_bytes(_to_onnx(Path(tmp) / f"{PREFIX}.json", Path(tmp) / f"{PREFIX}.pdiparams"))
    return path


def _to_onnx(program: Path, params: Path) -> bytes:
    """The ONNX bytes of a saved inference program, its output renamed to :data:`EXPORT_OUTPUT`."""
    import onnx
    import paddle2onnx

    try:
        raw = paddle2onnx.export(
            str(program),
            str(params),
            save_file=None,
            opset_version=ONNX_OPSET,
            auto_upgrade_opset=True,
            enable_onnx_checker=True,
            enable_optimize=True,
            optimize_tool=None,  # never polygraphy: it may pip-install at run time
        )
    except Exception as error:  # paddle2onnx logs the cause and then fails on its own variable
        raise ExportError(
            f"paddle2onnx could not convert the model ({type(error).__name__}: {error})"
        ) from None
    proto = onnx.load_model_from_string(raw)
    rename_output(proto, EXPORT_OUTPUT)
    drop_unused_initializers(proto)
    onnx.checker.check_model(proto)
    return bytes(proto.SerializeToString())


def load_native(path: Path) -> Callable[[Batch], np.ndarray]:
    """A predict function (Batch in, float32 logits out) over a ``model.json`` from :func:`export_model`."""
    path = Path(path)
    if path.suffix != ".json":
        raise ExportError(f"{path}: not a native paddle export (expected model.json)")
    if not path.is_file():
        raise ExportError(f"{path}: no such file")
    if not path.with_suffix(".pdiparams").is_file():
        raise ExportError(f"{path}: no {path.stem}.pdiparams beside it")
    try:
        layer = paddle.jit.load(str(path.with_suffix("")))
    except Exception as error:  # truncated, or not a paddle program
        detail = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ExportError(f"{path}: not a readable paddle inference model ({detail})") from error
    layer.eval()

    def predict(batch: Batch) -> np.ndarray:
        with paddle.no_grad():
            logits = layer(*(to_tensor(getattr(batch, name)) for name in EXPORT_INPUTS))
        return np.asarray(logits.numpy(), dtype=np.float32)

    return predict
