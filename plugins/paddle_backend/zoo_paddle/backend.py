"""The paddle :class:`~zoo_core.backend.Backend`: models, canonical weights, predict, trainers, export.

Importing this module imports paddle; :func:`zoo_paddle.env.prepare_paddle_env` runs
first, so on AMD CPUs MKL gets ``MKL_DEBUG_CPU_TYPE=5`` unless the user set it.
"""

from __future__ import annotations

from zoo_paddle.env import prepare_paddle_env

prepare_paddle_env()

# ruff: noqa: E402  (paddle must be imported after prepare_paddle_env)
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

with warnings.catch_warnings():  # paddle's C++-extension builder looks for ccache; zoo builds none
    warnings.filterwarnings("ignore", message="No ccache found")
    import paddle

from zoo_core.backend import Batch, Device, DistillSpec, ExportFormat, TrainSpec, WidthSpec
from zoo_core.distributed import requested as data_parallel_requested
from zoo_core.errors import CheckpointError, DeviceUnavailableError, RecipeError
from zoo_core.models.config import BertConfig
from zoo_core.models.weights import canonical_shapes, check_weights, complete_from
from zoo_core.options import defaults
from zoo_paddle import export as paddle_export
from zoo_paddle import parallel
from zoo_paddle.distill import PaddleDistillTrainer
from zoo_paddle.model import BertForSequenceClassification, batch_inputs
from zoo_paddle.names import is_transposed, paddle_name
from zoo_paddle.plugin import OPTIONS
from zoo_paddle.train import PaddleTrainer
from zoo_paddle.width import PaddleWidthTrainer
from zoo_paddle.width import importance as width_importance

#: paddle's custom-device type for Huawei Ascend NPUs (the paddle-custom-npu plugin)
ASCEND_DEVICE_TYPE = "npu"


def paddle_place(device: Device, index: int = 0) -> str:
    """The ``paddle.set_device`` name of a zoo device (accelerator ``index``); raises if the machine lacks it.

    Under data parallelism ``index`` is the accelerator the launcher gave the process.
    """
    if device == "cpu":
        return "cpu"
    if device == "gpu":
        if not paddle.device.is_compiled_with_cuda():
            raise DeviceUnavailableError(
                "device 'gpu' requested but this paddlepaddle build has no CUDA support "
                "(install a paddlepaddle-gpu wheel)"
            )
        if paddle.device.cuda.device_count() < 1:
            raise DeviceUnavailableError("device 'gpu' requested but paddle sees no CUDA device")
        return f"gpu:{index}"
    if device == "ascend":
        if ASCEND_DEVICE_TYPE not in (paddle.device.get_all_custom_device_type() or []):
            raise DeviceUnavailableError(
                "device 'ascend' requested but paddle has no 'npu' custom device "
                "(install the paddle-custom-npu plugin and Ascend CANN)"
            )
        return f"{ASCEND_DEVICE_TYPE}:{index}"
    raise DeviceUnavailableError(
        f"backend 'paddle' does not support device {device!r} (it supports: cpu, gpu, ascend)"
    )


def set_threads(threads: int) -> None:
    """Use ``threads`` CPU threads for paddle's math libraries (MKL, OpenMP).

    Paddle 3.3 has no public API for this (its docs point at environment variables
    read at start-up); ``paddle.base.core.set_num_threads`` is the internal call that
    sets it at run time, so a paddle upgrade may move it.
    """
    paddle.base.core.set_num_threads(threads)


class PaddleBackend:
    """Builds, loads, dumps, runs, trains and exports :class:`BertForSequenceClassification` in paddle."""

    name = "paddle"

    def __init__(self, device: Device = "cpu", options: Mapping[str, Any] | None = None) -> None:
        """``options``: ``backend_options.paddle``, validated by ``create_backend``; defaults fill gaps."""
        self.device: Device = device
        paddle_place(device)  # a clear error for a device the machine lacks, before joining a group
        if data_parallel_requested():
            parallel.join_process_group(device)
        # under data parallelism the launcher gave each process its own accelerator
        self.place = paddle_place(device, parallel.device_index(device))
        paddle.set_device(self.place)
        self.options = {**defaults(OPTIONS), **(options or {})}
        if self.options["threads"] is not None:
            set_threads(self.options["threads"])
        self.rank: int = parallel.rank()
        self.world_size: int = parallel.world_size()

    def barrier(self) -> None:
        """Wait for every rank of the process group (nothing alone)."""
        parallel.barrier()

    def build_model(self, config: BertConfig) -> BertForSequenceClassification:
        """A float32 model on this backend's device (weights undefined until loaded)."""
        paddle.set_device(self.place)
        return BertForSequenceClassification(config)

    def load_weights(self, model: BertForSequenceClassification, weights: Mapping[str, np.ndarray]) -> None:
        """Copy every canonical parameter into ``model`` (checked; Linear weights transposed)."""
        check_weights(weights, model.config, source="load_weights")
        params = dict(model.named_parameters())
        for name in canonical_shapes(model.config):
            value = np.asarray(weights[name], dtype=np.float32)
            params[paddle_name(name)].set_value(
                np.ascontiguousarray(value.T if is_transposed(name) else value)
            )

    def dump_weights(self, model: BertForSequenceClassification) -> dict[str, np.ndarray]:
        """Every parameter as a float32 numpy copy, in canonical names and layouts."""
        params = dict(model.named_parameters())
        out: dict[str, np.ndarray] = {}
        for name in canonical_shapes(model.config):
            value = params[paddle_name(name)].numpy().astype(np.float32)
            out[name] = np.array(value.T if is_transposed(name) else value, dtype=np.float32, copy=True)
        return out

    def predict(self, model: BertForSequenceClassification, batch: Batch) -> np.ndarray:
        """Logits ``[B, num_labels]`` as float32 numpy, in eval mode (no dropout)."""
        model.eval()
        with paddle.no_grad():
            logits = model(**batch_inputs(batch)).logits
        return logits.astype("float32").numpy()

    def _options(self, spec: TrainSpec) -> dict[str, Any]:
        """This backend's options, overridden by ``spec.options`` (``backend_options.paddle``)."""
        options = {**self.options, **spec.options}
        if options["threads"] is not None:
            set_threads(options["threads"])
        return options

    def make_trainer(self, model: BertForSequenceClassification, spec: TrainSpec) -> PaddleTrainer:
        """An AdamW trainer for ``model`` (``spec.options`` override the backend's options)."""
        return PaddleTrainer(model, spec, to_static=self._static_forward(spec))

    def make_distill_trainer(
        self,
        student: BertForSequenceClassification,
        teacher: BertForSequenceClassification,
        spec: DistillSpec,
    ) -> PaddleDistillTrainer:
        """A TinyBERT trainer distilling ``teacher`` into ``student`` (see :mod:`zoo_paddle.distill`)."""
        return PaddleDistillTrainer(student, teacher, spec, to_static=self._static_forward(spec.train))

    def _static_forward(self, spec: TrainSpec) -> bool:
        """The ``to_static`` option, refused with gradient accumulation.

        Measured with paddle 3.3.1: under ``to_static`` (SOT) the gradients of several
        micro-batches do not add up to eager mode's (the first compile of a shape
        overwrites instead of accumulating), so the combination would train wrongly.
        """
        to_static = bool(self._options(spec)["to_static"])
        if to_static and spec.accumulation_steps > 1:
            raise RecipeError(
                "backend_options.paddle.to_static: cannot be combined with "
                f"train.gradient_accumulation_steps = {spec.accumulation_steps} (paddle's static "
                "forward does not accumulate gradients across micro-batches); drop one of them"
            )
        return to_static

    def importance(self, model: BertForSequenceClassification, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        """DynaBERT head ``[L, H]`` and neuron ``[L, I]`` importance of one labelled batch.

        paddleslim's ``compute_neuron_head_importance`` (see :mod:`zoo_paddle.width`).
        """
        return width_importance(model, batch)

    def make_width_trainer(
        self, student: BertForSequenceClassification, teacher: BertForSequenceClassification, spec: WidthSpec
    ) -> PaddleWidthTrainer:
        """A DynaBERT width trainer: the student runs at each width through paddleslim's OFA.

        Always eager (the ``to_static`` option does not apply).
        """
        self._options(spec.train)
        return PaddleWidthTrainer(student, teacher, spec)

    def export(
        self, model: BertForSequenceClassification, directory: Path, fmt: ExportFormat, example: Batch
    ) -> Path:
        """Write ``model`` as ONNX (``model.onnx``) or a Paddle inference model (``"native"``).

        See :func:`zoo_paddle.export.export_model`: batch and sequence axes are dynamic.
        """
        return paddle_export.export_model(model, directory, fmt, example)

    def load_native(self, path: Path) -> Callable[[Batch], np.ndarray]:
        """A predict function (float32 logits) over a native export written by :meth:`export`."""
        return paddle_export.load_native(path)

    def save_framework_checkpoint(self, model: BertForSequenceClassification, directory: Path) -> Path:
        """``model_state.pdparams``: the state dict in PaddleNLP's names and layouts (paddlenlp loads it)."""
        path = Path(directory) / "model_state.pdparams"
        paddle.save(model.state_dict(), str(path))
        return path

    def load_framework_checkpoint(self, model: BertForSequenceClassification, path: Path) -> None:
        """Load a PaddleNLP ``model_state.pdparams`` (BERT names; Linear weights ``[in, out]``)."""
        try:
            state = paddle.load(str(path), return_numpy=True)
        except Exception as exc:
            raise CheckpointError(
                f"{path}: not a readable paddle state dict ({exc.__class__.__name__})"
            ) from None
        if not isinstance(state, Mapping):
            raise CheckpointError(f"{path}: holds a {type(state).__name__}, not a state dict")
        arrays = {str(k): np.asarray(v, dtype=np.float32) for k, v in state.items()}
        loaded = {}
        for name in canonical_shapes(model.config):
            value = arrays.get(paddle_name(name))
            if value is not None:
                loaded[name] = np.ascontiguousarray(value.T if is_transposed(name) else value)
        weights = complete_from(loaded, self.dump_weights(model), model.config, str(path))
        self.load_weights(model, weights)
