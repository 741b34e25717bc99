"""The torch :class:`~zoo_core.backend.Backend`: models, canonical weights, predict, trainers, export."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo_core.backend import Batch, Device, DistillSpec, ExportFormat, TrainSpec, WidthSpec
from zoo_core.distributed import requested as data_parallel_requested
from zoo_core.errors import CheckpointError, DeviceUnavailableError
from zoo_core.models.config import BertConfig
from zoo_core.models.weights import check_weights, complete_from, normalize_names
from zoo_core.options import defaults
from zoo_torch import export as torch_export
from zoo_torch import parallel
from zoo_torch.distill import TorchDistillTrainer
from zoo_torch.env import keep_freed_memory
from zoo_torch.model import BertForSequenceClassification, batch_inputs
from zoo_torch.names import to_canonical
from zoo_torch.plugin import OPTIONS
from zoo_torch.train import TorchTrainer
from zoo_torch.width import TorchWidthTrainer, importance


def torch_device(device: Device) -> torch.device:
    """The torch device for a zoo device name; raises if the machine lacks it."""
    if device == "cpu":
        return torch.device("cpu")
    if device == "gpu":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError("device 'gpu' requested but torch sees no CUDA device")
        return torch.device("cuda", torch.cuda.current_device())
    raise DeviceUnavailableError(
        f"backend 'torch' does not support device {device!r} (it supports: cpu, gpu)"
    )


class TorchBackend:
    """Builds, loads, dumps, runs, trains and exports :class:`BertForSequenceClassification` in torch."""

    name = "torch"

    def __init__(self, device: Device = "cpu", options: Mapping[str, Any] | None = None) -> None:
        """``options``: ``backend_options.torch``, validated by ``create_backend``; defaults fill gaps."""
        self.device: Device = device
        torch_device(device)  # a clear error for a device the machine lacks, before joining a group
        if data_parallel_requested():
            parallel.join_process_group(device)  # on GPUs this also picks the rank's device
        self.torch_device = torch_device(device)
        self.options = {**defaults(OPTIONS), **(options or {})}
        keep_freed_memory()  # training steps reuse the last step's pages (zoo_torch.env)
        if self.options["threads"] is not None:
            torch.set_num_threads(self.options["threads"])
        self.rank: int = parallel.rank()
        self.world_size: int = parallel.world_size()

    def barrier(self) -> None:
        """Wait for every rank of the process group (nothing alone)."""
        parallel.barrier()

    def build_model(self, config: BertConfig) -> BertForSequenceClassification:
        """A float32 model on this backend's device (weights undefined until loaded)."""
        return BertForSequenceClassification(config).to(self.torch_device, torch.float32)

    def load_weights(self, model: BertForSequenceClassification, weights: Mapping[str, np.ndarray]) -> None:
        """Copy every canonical parameter into ``model`` (names and shapes checked)."""
        check_weights(weights, model.config, source="load_weights")
        with torch.no_grad():
            for name, param in model.named_parameters():
                param.copy_(torch.from_numpy(np.asarray(weights[to_canonical(name)], dtype=np.float32)))

    def dump_weights(self, model: BertForSequenceClassification) -> dict[str, np.ndarray]:
        """Every parameter as a float32 numpy copy, in canonical names."""
        return {
            to_canonical(name): param.detach().to("cpu", torch.float32, copy=True).numpy()
            for name, param in model.named_parameters()
        }

    def predict(self, model: BertForSequenceClassification, batch: Batch) -> np.ndarray:
        """Logits ``[B, num_labels]`` as float32 numpy, in eval mode (no dropout)."""
        model.eval()
        with torch.inference_mode():
            logits = model(**batch_inputs(batch, self.torch_device)).logits
        return logits.to("cpu", torch.float32).numpy()

    def make_trainer(self, model: BertForSequenceClassification, spec: TrainSpec) -> TorchTrainer:
        """An AdamW trainer for ``model``.

        ``spec.options`` (the recipe's ``backend_options.torch``, validated when the
        backend was created) override the options this backend was created with.
        """
        options = {**self.options, **spec.options}
        return TorchTrainer(model, spec, self.torch_device, compile=options["compile"])

    def make_distill_trainer(
        self,
        student: BertForSequenceClassification,
        teacher: BertForSequenceClassification,
        spec: DistillSpec,
    ) -> TorchDistillTrainer:
        """A TinyBERT trainer distilling ``teacher`` into ``student`` (see :mod:`zoo_torch.distill`).

        ``spec.train.options`` act as in :meth:`make_trainer`.
        """
        options = {**self.options, **spec.train.options}
        return TorchDistillTrainer(student, teacher, spec, self.torch_device, compile=options["compile"])

    def importance(self, model: BertForSequenceClassification, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        """DynaBERT head and neuron importance of one labelled batch (:func:`zoo_torch.width.importance`)."""
        return importance(model, batch, self.torch_device)

    def make_width_trainer(
        self,
        student: BertForSequenceClassification,
        teacher: BertForSequenceClassification,
        spec: WidthSpec,
    ) -> TorchWidthTrainer:
        """A DynaBERT trainer: every width of ``spec`` each step (see :mod:`zoo_torch.width`)."""
        return TorchWidthTrainer(student, teacher, spec, self.torch_device)

    def export(
        self, model: BertForSequenceClassification, directory: Path, fmt: ExportFormat, example: Batch
    ) -> Path:
        """Write ``model`` as ``directory/model.onnx`` (``fmt="onnx"``) or ``model.pt2`` (``"native"``).

        See :func:`zoo_torch.export.export_model`: batch and sequence axes are dynamic,
        ``example`` is traced on this backend's device.
        """
        return torch_export.export_model(model, directory, fmt, example, self.torch_device)

    def load_native(self, path: Path) -> Callable[[Batch], np.ndarray]:
        """A predict function (float32 logits) over a ``model.pt2`` written by :meth:`export`."""
        return torch_export.load_native(path)

    def quantize_native_int8(
        self, model: BertForSequenceClassification, directory: Path, example: Batch
    ) -> Path:
        """Write ``directory/model-int8.pt``: ``torch.ao`` dynamic INT8 of the linear layers, as TorchScript.

        See :func:`zoo_torch.export.quantize_native_int8`: a CPU model (the quantized
        kernels' device) whatever this backend's device; ``model`` is unchanged.
        """
        return torch_export.quantize_native_int8(model, directory, example)

    def load_native_int8(self, path: Path) -> Callable[[Batch], np.ndarray]:
        """A predict function (float32 logits, on the CPU) over :meth:`quantize_native_int8`'s file."""
        return torch_export.load_native_int8(path)

    def save_framework_checkpoint(self, model: BertForSequenceClassification, directory: Path) -> Path:
        """``pytorch_model.bin``: the state dict, in Hugging Face's names (transformers loads it)."""
        path = Path(directory) / "pytorch_model.bin"
        torch.save(
            {name: value.detach().cpu().contiguous() for name, value in model.state_dict().items()}, path
        )
        return path

    def load_framework_checkpoint(self, model: BertForSequenceClassification, path: Path) -> None:
        """Load a torch state dict file (``pytorch_model.bin``, ``.pt``) in Hugging Face's names."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(
                f"{path}: not a readable torch state dict ({exc.__class__.__name__})"
            ) from None
        if not isinstance(state, Mapping):
            raise CheckpointError(f"{path}: holds a {type(state).__name__}, not a state dict")
        arrays = {name: value.float().numpy() for name, value in state.items() if torch.is_tensor(value)}
        weights = complete_from(normalize_names(arrays), self.dump_weights(model), model.config, str(path))
        self.load_weights(model, weights)
