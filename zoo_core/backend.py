"""The contract between zoo_core and a backend plugin.

A plugin registers a :class:`BackendSpec` through the ``zoo_register_backends`` hook.
Its ``factory`` builds a :class:`Backend`: an object that does the tensor work (build
a model, load and dump canonical weights, predict), plus one protocol per capability
it declares (:data:`CAPABILITIES`: train one step, distil, train widths, export,
native INT8, convert).  Recipe
logic (schedules, evaluation cadence, checkpoints, logging) stays in zoo_core so a
recipe means the same thing on every backend.

Everything crossing this boundary is numpy or plain Python: :class:`Batch` in,
``numpy.ndarray`` logits and ``dict[str, float]`` losses out, weights as
``dict[str, numpy.ndarray]`` in canonical names (see ``zoo_core.models.weights``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, overload, runtime_checkable

import numpy as np

from zoo_core.errors import BackendError
from zoo_core.models.config import BertConfig
from zoo_core.precision import LossScaleSpec, Precision

if TYPE_CHECKING:
    from zoo_core.distributed import Launcher
    from zoo_core.options import Option

Device = Literal["cpu", "gpu", "ascend"]
DEVICES: tuple[Device, ...] = ("cpu", "gpu", "ascend")
#: deployable formats a backend exports (the portable checkpoint is written by zoo_core)
ExportFormat = Literal["onnx", "native"]
#: the names of an exported model's inputs, in order, and of its output
EXPORT_INPUTS = ("input_ids", "token_type_ids", "attention_mask")
EXPORT_OUTPUT = "logits"


@dataclass
class Batch:
    """One batch of tokenised examples, padded to its own longest sequence.

    ``input_ids``, ``token_type_ids`` and ``attention_mask`` are int64 ``[B, T]``;
    ``labels`` is int64 ``[B]`` (classification), float32 ``[B]`` (regression), or
    None when unlabelled.  ``indices`` are the examples' positions in their dataset;
    ``step`` is the training step the batch belongs to (set by the training loop; with
    ``indices`` it keys the batch's dropout masks, :mod:`zoo_core.dropout`).
    """

    input_ids: np.ndarray
    token_type_ids: np.ndarray
    attention_mask: np.ndarray
    labels: np.ndarray | None = None
    indices: np.ndarray | None = None
    step: int = 0

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def num_tokens(self) -> int:
        """Real (non-padding) tokens in the batch."""
        return int(self.attention_mask.sum())


@dataclass(frozen=True)
class TrainSpec:
    """What a trainer needs to know to build its optimizer and loss.

    The learning rate is not here: the core computes it for every step (warm-up and
    decay live in zoo_core) and passes it to :meth:`Trainer.apply`.
    """

    objective: Literal["classification", "regression"]
    weight_decay: float = 0.01
    max_grad_norm: float | None = 1.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    seed: int = 42
    #: validated options from the recipe's ``backend_options.<name>``
    options: Mapping[str, Any] = field(default_factory=dict)
    #: micro-batches per step: the core (:func:`zoo_core.trainers.train_step`) splits each batch
    #: with :func:`zoo_core.data.batching.micro_batches`; one update from their summed gradients
    accumulation_steps: int = 1
    #: ``fp32``, or ``bf16`` / ``fp16``: forward and backward under the framework's autocast
    #: (see :mod:`zoo_core.precision`; weights, optimizer state and checkpoints stay float32)
    precision: Precision = "fp32"
    #: fp16's loss scaling, which the core applies (:class:`zoo_core.precision.LossScaler`);
    #: backends do not read it
    loss_scale: LossScaleSpec | None = None


#: the TinyBERT losses: the intermediate stage's three, the prediction stage's one
INTERMEDIATE_LOSSES = ("embedding", "hidden", "attention")
PREDICTION_LOSSES = ("logits",)


@dataclass(frozen=True)
class DistillSpec:
    """What a TinyBERT distillation trainer optimises: ``sum(loss_weights[k] * loss_k)``.

    Every loss is padding-invariant: averages run over real tokens only (mask 1), so
    the same examples give the same loss however a batch is padded.  With ``S`` the
    student, ``T`` the teacher (inference mode, no gradient), ``m`` the attention mask,
    ``n`` the number of real tokens in the batch and ``P`` a learned linear projection
    (weight and bias, trained with the student) from the student's hidden size to the
    teacher's, or the identity when they are equal:

    * ``embedding``: ``sum(m * (P(S.h[0]) - T.h[0])**2) / (n * hidden_T)``, ``h[0]`` being
      the embedding output (after LayerNorm);
    * ``hidden``: the same for every student layer ``i = 1..L_S`` against teacher layer
      ``layer_map[i - 1]`` (1-based), summed over layers;
    * ``attention``: pre-softmax scores (scaled by ``1/sqrt(head_size)``, no mask added),
      ``sum(m_q * m_k * (S.a[i] - T.a[j])**2) / (heads * sum_b n_b**2)`` per mapped
      layer pair, summed (the student must have as many heads as the teacher);
    * ``logits``: soft cross-entropy ``mean_b(-sum_c softmax(T.z / t)_c *
      log_softmax(S.z / t)_c)`` with ``t = temperature``; for a regression objective
      ``mean_b((S.z - T.z)**2)`` instead.

    ``stage`` picks the losses: ``"intermediate"`` the first three, ``"prediction"``
    ``logits``.  Missing weights count as 0.
    """

    train: TrainSpec
    stage: Literal["intermediate", "prediction"]
    #: teacher layer (1-based) that student layer i + 1 learns from
    layer_map: tuple[int, ...]
    loss_weights: Mapping[str, float] = field(default_factory=dict)
    temperature: float = 1.0

    @property
    def losses(self) -> tuple[str, ...]:
        """The losses this stage computes."""
        return INTERMEDIATE_LOSSES if self.stage == "intermediate" else PREDICTION_LOSSES


#: the DynaBERT width losses, computed at every width of a step
WIDTH_LOSSES = ("logits", "hidden")


@dataclass(frozen=True)
class WidthSpec:
    """What a DynaBERT width trainer optimises each step: every width of ``widths`` in turn.

    The student is one set of full-size weights.  At width ``w`` it keeps the first
    ``round(w * heads)`` attention heads (their Q/K/V output units and the matching
    input columns of the attention output projection) and the first ``round(w *
    intermediate)`` FFN neurons (rows of the FFN input layer, columns of its output
    layer) of every layer, exactly what :func:`zoo_core.models.width.slice_to_width`
    keeps; embeddings, LayerNorms, pooler and classifier stay whole.  The teacher (full
    width, inference mode, no gradient) runs once per step.  For each width, with the
    notation of :class:`DistillSpec`:

    * ``logits``: the soft cross-entropy of :class:`DistillSpec` at ``temperature``
      (the squared error for a regression objective);
    * ``hidden``: ``sum_i sum(m * (S.h[i] - T.h[i])**2) / (n * hidden)`` over all
      ``L + 1`` hidden states (embedding output included; same layer count and hidden
      size as the teacher, no projection).

    The width's loss ``loss_weights["logits"] * logits + loss_weights["hidden"] *
    hidden`` is backpropagated and its gradients accumulate over the widths; then one
    clipped AdamW update.  The step (``apply``) returns ``loss`` (the sum over widths),
    ``grad_norm`` (of the accumulated gradient, before clipping) and, for every width
    ``w``, ``f"logits@{w:g}"`` and ``f"hidden@{w:g}"`` unweighted.
    """

    train: TrainSpec
    widths: tuple[float, ...]
    loss_weights: Mapping[str, float] = field(default_factory=lambda: {"logits": 1.0, "hidden": 0.1})
    temperature: float = 1.0


def width_loss_name(loss: str, width: float) -> str:
    """The key of one width's loss in a width trainer's step result, e.g. ``logits@0.5``."""
    return f"{loss}@{width:g}"


@runtime_checkable
class Trainer(Protocol):
    """Owns a model's optimizer state and does the two halves of a training step.

    The core drives every step (:func:`zoo_core.trainers.train_step`): it cuts the batch
    into ``accumulation_steps`` micro-batches (:func:`zoo_core.data.batching.micro_batches`),
    calls :meth:`backward` once per micro-batch with its weight (its share of the
    examples; the weights sum to 1) and ``sync`` true on the last one, then
    :meth:`apply` once.  So micro-batching, the rank synchronisation point and the
    order norm -> clip -> update are the same on every backend; a trainer only says how
    its framework computes a loss's gradients and updates the weights.
    """

    def backward(self, batch: Batch, weight: float, sync: bool) -> None:
        """Add ``weight`` x the gradients of ``batch``'s loss to the gradients of this step.

        Also keep ``weight`` x every loss value for :meth:`apply` to report (a
        :class:`zoo_core.trainers.LossSums` does it without a host sync).  ``sync`` is true
        on the step's last call: under data parallelism, the framework's data-parallel
        API averages the gradients across ranks then (and only then).  A backend whose
        update reduces across ranks itself (MindSpore's compiled step) may ignore it, and
        may defer the work to :meth:`apply` when a step has one micro-batch (to fuse it).
        """
        ...

    def apply(self, lr: float, loss_scale: float | None = None) -> dict[str, float]:
        """Finish the step: norm, clip, update at ``lr``, clear the gradients.

        In this order: the global L2 norm of the accumulated (rank-averaged) gradients;
        clipping to ``max_grad_norm`` (torch's rule: scale by ``max / (norm + 1e-6)``
        when that is below 1); the AdamW update; gradients and loss sums cleared.
        Returns at least ``"loss"`` (the batch's mean loss before the update: the
        weighted sum of the micro-batches' losses) and ``"grad_norm"`` (before clipping),
        plus any other loss the trainer kept, each averaged across ranks (one host sync),
        so every rank reports the global step's numbers.

        With ``loss_scale`` (fp16 loss scaling, :mod:`zoo_core.precision`; the core then
        passed ``weight * loss_scale`` to :meth:`backward`): the gradients are divided by
        it first, so the norm and clipping see the true gradients; if that norm is not
        finite the step changes no weight and no optimizer state (the gradients are
        cleared) and the result has ``"skipped": 1.0`` (else ``0.0``).  The losses are
        returned as computed (scaled: the core divides them).
        """
        ...

    def save_state(self, directory: Path) -> None:
        """Write the optimizer state into ``directory`` (backend's own format)."""
        ...

    def load_state(self, directory: Path) -> None:
        """Restore the optimizer state written by :meth:`save_state`."""
        ...


@runtime_checkable
class Backend(Protocol):
    """The core every backend implements: build, load and dump weights, predict, barrier.

    Models are opaque handles owned by the backend; the core only passes them back.
    Each capability adds one protocol (:data:`CAPABILITIES`); a backend implements
    exactly those its spec declares (the conformance suite checks it).
    """

    name: str
    device: Device
    #: this process's rank and the number of data-parallel processes (0 and 1 alone)
    rank: int
    world_size: int

    def barrier(self) -> None:
        """Wait until every rank has arrived here (returns at once when ``world_size`` is 1).

        The core calls it after rank 0 has written what the other ranks read next
        (the best checkpoint of a stage).  A backend created in a worker of ``zoo run
        --nproc`` (:func:`zoo_core.distributed.requested` is true) has joined its
        framework's process group in its factory.
        """
        ...

    def build_model(self, config: BertConfig) -> Any:
        """A new model for ``config`` (weights undefined until :meth:`load_weights`)."""
        ...

    def load_weights(self, model: Any, weights: Mapping[str, np.ndarray]) -> None:
        """Set every parameter from canonical weights (all names present, shapes checked)."""
        ...

    def dump_weights(self, model: Any) -> dict[str, np.ndarray]:
        """Every parameter as float32 numpy in canonical names and layouts."""
        ...

    def predict(self, model: Any, batch: Batch) -> np.ndarray:
        """Logits ``[B, num_labels]`` float32 in inference mode (no dropout)."""
        ...


@runtime_checkable
class FineTuner(Protocol):
    """Capability ``finetune``: ``kind: finetune`` recipes."""

    def make_trainer(self, model: Any, spec: TrainSpec) -> Trainer:
        """A trainer for ``model`` with AdamW, clipping and the objective's loss.

        The core has checked that ``model`` fits ``spec`` (one output for a regression
        objective: :func:`zoo_core.trainers.make_trainer`) before asking.
        """
        ...


@runtime_checkable
class Distiller(Protocol):
    """Capability ``distill``: ``kind: distill`` recipes (TinyBERT)."""

    def make_distill_trainer(self, student: Any, teacher: Any, spec: DistillSpec) -> Trainer:
        """A trainer that distils ``teacher`` into ``student`` as ``spec`` says (TinyBERT).

        Its ``apply(lr)`` returns ``loss`` (the weighted sum), ``grad_norm`` and one
        entry per loss of the stage, unweighted (e.g. ``"hidden"``); labels are not used.
        The projection, when there is one, is part of the trainer's saved state.  The
        core has checked the models against ``spec`` (:func:`zoo_core.models.student.check_distill`).
        """
        ...


@runtime_checkable
class WidthTrainer(Protocol):
    """Capability ``width``: ``kind: width`` recipes (DynaBERT)."""

    def importance(self, model: Any, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        """DynaBERT's gradient-based importance of every head and FFN neuron on one labelled batch.

        With ``loss`` the mean task loss of ``batch`` (cross-entropy; squared error for a
        regression head) in inference mode (no dropout), returns float64 arrays:

        * heads ``[layers, heads]``: ``|d loss / d g_h|`` at ``g = 1``, where gate ``g_h``
          scales head ``h``'s attention output (its context vectors);
        * neurons ``[layers, intermediate]``: ``|sum_j W1[i, j] dW1[i, j] + b1[i] db1[i]|
          + |sum_k W2[k, i] dW2[k, i]|``, ``W1``/``b1`` the FFN input layer (canonical
          ``[out, in]`` layout), ``W2`` the FFN output layer, ``d`` the loss gradient.

        The core sums these over batches; the model's weights are left unchanged.
        """
        ...

    def make_width_trainer(self, student: Any, teacher: Any, spec: WidthSpec) -> Trainer:
        """A trainer that trains ``student`` at every width of ``spec`` each step (DynaBERT).

        ``WidthSpec`` defines the losses and the step's result; labels are not used.  The
        core has checked the teacher's shape (:func:`zoo_core.models.width.check_width_teacher`).
        """
        ...


@runtime_checkable
class Exporter(Protocol):
    """Capability ``export``: ``zoo export`` and ``zoo bench``."""

    def export(self, model: Any, directory: Path, fmt: ExportFormat, example: Batch) -> Path:
        """Write ``model`` for inference into ``directory``; return the file written.

        ``fmt`` is ``"onnx"`` or ``"native"`` (the framework's own deployable format).
        Both take ``input_ids``, ``token_type_ids`` and ``attention_mask`` (int64
        ``[batch, sequence]``, both axes dynamic) and give ``logits`` (float32
        ``[batch, num_labels]``); an ONNX file names its inputs and output so, and runs
        in onnxruntime.  ``example`` is a real batch to trace or check with.
        """
        ...

    def load_native(self, path: Path) -> Callable[[Batch], np.ndarray]:
        """A predict function over a file :meth:`export` wrote with ``fmt="native"``."""
        ...


@runtime_checkable
class Int8Exporter(Protocol):
    """Capability ``int8``: ``zoo export --format native --quantize int8`` (``native-int8/``)."""

    def quantize_native_int8(self, model: Any, directory: Path, example: Batch) -> Path:
        """Write an INT8 copy of ``model`` in the framework's own format into ``directory``; return the file.

        The framework's dynamic quantization: the linear layers' weights int8, their
        activations quantized per batch at run time; embeddings, LayerNorm, softmax and
        the rest stay float32.  ``model`` itself is left unchanged.  Same inputs and output
        as :meth:`Exporter.export`'s ``"native"`` file (both axes dynamic); ``example`` is a
        real batch to trace or check with.  The core judges the result by the dev metric
        (:mod:`zoo_core.runners.int8`), not by closeness to the fp32 logits.
        """
        ...

    def load_native_int8(self, path: Path) -> Callable[[Batch], np.ndarray]:
        """A predict function (float32 logits) over a file :meth:`quantize_native_int8` wrote."""
        ...


@runtime_checkable
class Converter(Protocol):
    """Capability ``convert``: ``zoo convert --to NAME``."""

    def save_framework_checkpoint(self, model: Any, directory: Path) -> Path:
        """Write ``model``'s parameters as the framework's own ecosystem saves them; return the file.

        The names and layouts are the ecosystem's (torch: a
        Hugging Face ``pytorch_model.bin`` state dict; paddle: PaddleNLP's
        ``model_state.pdparams``; mindspore: a ``.ckpt`` of its cells), so the file
        loads in that ecosystem's own BERT; ``zoo convert`` adds config.json and vocab.txt.
        """
        ...

    def load_framework_checkpoint(self, model: Any, path: Path) -> None:
        """Load a file in the framework's own checkpoint format into ``model``.

        Reads what :meth:`save_framework_checkpoint` writes and what the ecosystem's own
        tools write for the same BERT (pickle-based formats are unpickled: the caller
        decides whether to trust the file).  A missing or misshapen parameter is a
        ``CheckpointError`` naming it; a missing pooler or classifier is left as is.
        """
        ...


#: every capability flag and the protocol a backend implements for it
CAPABILITIES: dict[str, type] = {
    "finetune": FineTuner,
    "distill": Distiller,
    "width": WidthTrainer,
    "export": Exporter,
    "int8": Int8Exporter,
    "convert": Converter,
}


def implemented_capabilities(backend: object) -> set[str]:
    """The capability flags whose protocol ``backend`` implements (compare ``BackendSpec.capabilities``)."""
    return {name for name, protocol in CAPABILITIES.items() if isinstance(backend, protocol)}


@overload
def capable(backend: Backend, capability: Literal["finetune"]) -> FineTuner: ...
@overload
def capable(backend: Backend, capability: Literal["distill"]) -> Distiller: ...
@overload
def capable(backend: Backend, capability: Literal["width"]) -> WidthTrainer: ...
@overload
def capable(backend: Backend, capability: Literal["export"]) -> Exporter: ...
@overload
def capable(backend: Backend, capability: Literal["int8"]) -> Int8Exporter: ...
@overload
def capable(backend: Backend, capability: Literal["convert"]) -> Converter: ...
def capable(backend: Backend, capability: str) -> Any:
    """``backend`` as the protocol of ``capability`` (e.g. ``"export"``); else a one-line BackendError."""
    if not isinstance(backend, CAPABILITIES[capability]):
        has = ", ".join(sorted(implemented_capabilities(backend))) or "none"
        raise BackendError(f"backend {backend.name!r} lacks the {capability!r} capability (it has: {has})")
    return backend


BackendFactory = Callable[[Device, Mapping[str, Any]], Backend]


@dataclass(frozen=True)
class BackendSpec:
    """What a plugin registers: a name, what it can do, and how to build it.

    ``factory(device, options)`` imports the framework and returns a :class:`Backend`;
    it raises ``DeviceUnavailableError`` for a device the machine lacks.  Nothing
    here may import the framework: ``zoo backends`` reads specs without doing so.
    """

    name: str
    factory: BackendFactory
    #: the distribution of the framework itself (for its version), e.g. "torch"
    framework: str
    devices: tuple[Device, ...] = ("cpu",)
    #: capability flags, e.g. {"finetune"} (keys of :data:`CAPABILITIES`): exactly the
    #: protocols the backend implements; the runners and the conformance suite go by them
    capabilities: frozenset[str] = frozenset()
    #: why the backend lacks a capability, by flag, in one line (e.g. ``{"int8": "..."}``):
    #: what a command asking for it says (:func:`zoo_core.plugins.require_capability`,
    #: :func:`~zoo_core.plugins.require_native_int8`)
    lacks: Mapping[str, str] = field(default_factory=dict)
    #: how to install the plugin, shown when it is broken (default: :data:`zoo_core.plugins.KNOWN_BACKENDS`'s)
    install_hint: str = ""
    #: the keys of ``backend_options.<name>``: checked and defaulted by the core
    #: (:func:`zoo_core.options.validate_options`) before the factory gets them
    options: Mapping[str, Option] = field(default_factory=dict)
    #: the ``train.precision`` values each device can train in (a device not listed: fp32
    #: only); a recipe asking for another is refused before anything runs
    precisions: Mapping[Device, tuple[Precision, ...]] = field(default_factory=dict)
    #: how ``zoo run --nproc`` starts data-parallel workers; None: one process only
    launcher: Launcher | None = None

    def precisions_on(self, device: Device) -> tuple[Precision, ...]:
        """The precisions this backend trains in on ``device`` (fp32 always)."""
        return self.precisions.get(device, ("fp32",))
