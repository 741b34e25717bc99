"""The MindSpore :class:`~zoo_core.backend.Backend`: models, canonical weights, predict, trainers, export."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import mindspore as ms
import numpy as np
from mindspore import Tensor

from zoo_core.backend import Batch, Device, DistillSpec, ExportFormat, TrainSpec, WidthSpec
from zoo_core.distributed import requested as data_parallel_requested
from zoo_core.errors import CheckpointError, DeviceUnavailableError
from zoo_core.models.config import BertConfig
from zoo_core.models.weights import check_weights, complete_from, normalize_names
from zoo_core.options import defaults
from zoo_mindspore import export as ms_export
from zoo_mindspore import parallel
from zoo_mindspore.distill import MindSporeDistillTrainer
from zoo_mindspore.model import BertForSequenceClassification, batch_tensors
from zoo_mindspore.names import to_canonical
from zoo_mindspore.optimizer import write_parameter
from zoo_mindspore.plugin import OPTIONS
from zoo_mindspore.train import MindSporeTrainer
from zoo_mindspore.width import MindSporeWidthTrainer
from zoo_mindspore.width import importance as width_importance

#: zoo's device names -> MindSpore's device targets
DEVICE_TARGETS: dict[str, str] = {"cpu": "CPU", "gpu": "GPU", "ascend": "Ascend"}

#: the file :meth:`MindSporeBackend.save_framework_checkpoint` writes
CHECKPOINT_FILE = "model.ckpt"

#: the CPU thread count set in this process (MindSpore accepts it only once)
_threads_set: int | None = None
#: the device target set in this process (MindSpore accepts it only once)
_target_set: str | None = None


def device_target(device: Device) -> str:
    """MindSpore's device target for a zoo device; raises :class:`DeviceUnavailableError` if missing."""
    if device not in DEVICE_TARGETS:
        raise DeviceUnavailableError(
            f"backend 'mindspore' does not know device {device!r} (it supports: cpu, gpu, ascend)"
        )
    target = DEVICE_TARGETS[device]
    available = {
        "CPU": ms.device_context.cpu.is_available,
        "GPU": ms.device_context.gpu.is_available,
        "Ascend": ms.device_context.ascend.is_available,
    }[target]
    if not available():
        raise DeviceUnavailableError(
            f"device {device!r} requested but MindSpore {ms.__version__} sees no {target} device "
            f"(this needs the {target} build of MindSpore and a working {target} driver)"
        )
    return target


def set_device(target: str) -> None:
    """``mindspore.set_device(target)`` once per process.

    Under msrun, joining the cluster gives each rank its own device id; setting the
    target again (a second backend in the same worker) would then be refused as a change.
    """
    global _target_set
    if target != _target_set:
        ms.set_device(target)  # under msrun MindSpore picks each rank's device itself
        _target_set = target


def set_threads(threads: int | None) -> None:
    """Set MindSpore's CPU kernel thread count once per process (it refuses a second setting)."""
    global _threads_set
    if threads is None or threads == _threads_set:
        return
    if _threads_set is not None:
        warnings.warn(
            f"MindSpore's CPU thread count is already {_threads_set} in this process; "
            f"backend_options.mindspore.threads={threads} is ignored",
            stacklevel=3,
        )
        return
    ms.device_context.cpu.op_tuning.threads_num(threads)
    _threads_set = threads


class MindSporeBackend:
    """Builds, loads, dumps, runs, trains and exports :class:`BertForSequenceClassification` in MindSpore.

    The process runs in PyNative mode; trainers compile their step with ``mindspore.jit``
    (GRAPH mode) unless the ``mode`` option is ``"pynative"``.  :meth:`predict` runs
    eagerly (no compilation): evaluation sees many models and shapes, each of which
    would cost a graph compile.

    In a worker of ``zoo run --nproc`` the backend joins msrun's cluster (once per
    process) and its trainers average gradients over the ranks (:mod:`zoo_mindspore.parallel`);
    without a ``threads`` option MindSpore then uses ``OMP_NUM_THREADS`` threads (1 unless
    set: see :func:`zoo_mindspore.parallel.worker_threads`).
    """

    name = "mindspore"

    def __init__(self, device: Device = "cpu", options: Mapping[str, Any] | None = None) -> None:
        """``options``: ``backend_options.mindspore``, validated by ``create_backend``; defaults fill gaps."""
        self.options = {**defaults(OPTIONS), **(options or {})}
        self.device: Device = device
        self.target = device_target(device)
        ms.set_context(mode=ms.PYNATIVE_MODE)
        set_device(self.target)
        threads = self.options["threads"]
        if data_parallel_requested():
            set_threads(parallel.worker_threads() if threads is None else threads)
            parallel.join_process_group()
        else:
            set_threads(threads)
        self.rank: int = parallel.rank()
        self.world_size: int = parallel.world_size()

    def barrier(self) -> None:
        """Wait for every rank of the cluster (nothing alone)."""
        parallel.barrier()

    def build_model(self, config: BertConfig) -> BertForSequenceClassification:
        """A float32 model (weights undefined until :meth:`load_weights`)."""
        return BertForSequenceClassification(config)

    def load_weights(self, model: BertForSequenceClassification, weights: Mapping[str, np.ndarray]) -> None:
        """Set every parameter from canonical ``weights`` (names and shapes checked first)."""
        check_weights(weights, model.config, source="load_weights")
        for name, param in model.parameters_and_names():
            write_parameter(param, Tensor(np.array(weights[to_canonical(name)], dtype=np.float32)))

    def dump_weights(self, model: BertForSequenceClassification) -> dict[str, np.ndarray]:
        """Every parameter as a float32 numpy copy, in canonical names."""
        return {
            to_canonical(name): np.array(param.asnumpy(), dtype=np.float32, copy=True)
            for name, param in model.parameters_and_names()
        }

    def predict(self, model: BertForSequenceClassification, batch: Batch) -> np.ndarray:
        """Logits ``[B, num_labels]`` as float32 numpy, without dropout (run eagerly)."""
        model.set_train(False)
        logits = model(*batch_tensors(batch))[0]
        return np.asarray(logits.asnumpy(), dtype=np.float32)

    def _options(self, spec_options: Mapping[str, Any]) -> dict[str, Any]:
        """This backend's options, overridden by a recipe's (validated when the backend was created)."""
        return {**self.options, **spec_options}

    def make_trainer(self, model: BertForSequenceClassification, spec: TrainSpec) -> MindSporeTrainer:
        """An AdamW trainer for ``model`` (see :class:`zoo_mindspore.train.MindSporeTrainer`).

        ``spec.options`` (the recipe's ``backend_options.mindspore``) override the options
        this backend was created with.
        """
        return MindSporeTrainer(model, spec, self._options(spec.options))

    def make_distill_trainer(
        self,
        student: BertForSequenceClassification,
        teacher: BertForSequenceClassification,
        spec: DistillSpec,
    ) -> MindSporeDistillTrainer:
        """A TinyBERT trainer distilling ``teacher`` into ``student`` (see :mod:`zoo_mindspore.distill`)."""
        return MindSporeDistillTrainer(student, teacher, spec, self._options(spec.train.options))

    def importance(self, model: BertForSequenceClassification, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        """DynaBERT's head ``[L, H]`` and neuron ``[L, I]`` importance on ``batch`` (float64).

        See :func:`zoo_mindspore.width.importance`; runs eagerly and leaves the weights alone.
        """
        return width_importance(model, batch)

    def make_width_trainer(
        self,
        student: BertForSequenceClassification,
        teacher: BertForSequenceClassification,
        spec: WidthSpec,
    ) -> MindSporeWidthTrainer:
        """A DynaBERT trainer over ``spec.widths`` (see :mod:`zoo_mindspore.width`)."""
        return MindSporeWidthTrainer(student, teacher, spec, self._options(spec.train.options))

    def export(
        self, model: BertForSequenceClassification, directory: Path, fmt: ExportFormat, example: Batch
    ) -> Path:
        """Write ``model`` as ``directory/model.onnx`` (``fmt="onnx"``) or ``model.mindir`` (``"native"``).

        See :func:`zoo_mindspore.export.export_model`.
        """
        return ms_export.export_model(model, Path(directory), fmt, example)

    def save_framework_checkpoint(self, model: BertForSequenceClassification, directory: Path) -> Path:
        """``model.ckpt``: ``mindspore.save_checkpoint`` of the cells, in MindSpore's parameter names."""
        path = Path(directory) / CHECKPOINT_FILE
        ms.save_checkpoint(model, str(path))
        return path

    def load_framework_checkpoint(self, model: BertForSequenceClassification, path: Path) -> None:
        """Load a MindSpore ``.ckpt`` of this BERT's cells (as :meth:`save_framework_checkpoint` writes).

        Names are mapped to canonical ones (:mod:`zoo_mindspore.names`, then Hugging Face's
        legacy forms); anything else the file holds (optimizer moments, step counters) is
        ignored, and a missing pooler or classifier keeps the model's own.
        """
        try:
            params = ms.load_checkpoint(str(path))
        except Exception as exc:  # MindSpore raises ValueError, RuntimeError, ... for a bad file
            raise CheckpointError(
                f"{path}: not a readable MindSpore checkpoint ({exc.__class__.__name__})"
            ) from None
        current = self.dump_weights(model)
        arrays = normalize_names(
            {to_canonical(name): np.asarray(p.asnumpy(), np.float32) for name, p in params.items()}
        )
        loaded = {name: value for name, value in arrays.items() if name in current}
        self.load_weights(model, complete_from(loaded, current, model.config, str(path)))

    def load_native(self, path: Path) -> Callable[[Batch], np.ndarray]:
        """A predict function (float32 logits) over a ``model.mindir`` written by :meth:`export`."""
        return ms_export.load_native(Path(path))
