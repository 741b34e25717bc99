"""Model FLOPs of a training step, from the model config and the batch's real shape.

A training step's work is counted as the matrix multiplications the model does on the
batch as the core hands it to the backend: ``B`` sequences padded to ``T`` tokens per
micro-batch (:func:`zoo_core.data.batching.micro_batch_shapes`), padding included, since
the hardware computes it.  A multiply-add is 2 FLOPs.  With ``h`` the hidden size, ``a =
heads × head_size`` the attention width, ``I`` the FFN width, ``L`` layers and ``c``
labels, one forward pass is::

    per layer   2·B·T·(3·h·a)      Q, K and V projections
              + 2·B·T·T·a          scores Q·Kᵀ (every head)
              + 2·B·T·T·a          context softmax(..)·V
              + 2·B·T·a·h          attention output projection
              + 2·B·T·h·I · 2      FFN in and out
    head        2·B·h·h + 2·B·h·c  pooler ([CLS] only) and classifier

    forward(B, T) = L · [2·B·T·(4·h·a + 2·h·I) + 4·B·T²·a] + 2·B·h·(h + c)

Not counted: the embeddings (table look-ups, no matmul), LayerNorm, softmax, GELU, bias
adds, dropout and the losses (elementwise work, a few % of the total), and the optimizer
update.  The backward pass is taken as twice the forward (a gradient for each matmul
operand); so a trained forward pass counts ``3 × forward``.  A step of each recipe kind:

* **fine-tune**: ``3 × forward(student)`` per micro-batch;
* **TinyBERT** (:class:`~zoo_core.backend.DistillSpec`): ``3 × forward(student) +
  forward(teacher)`` (the teacher runs without gradient), plus, in the intermediate stage
  when the hidden sizes differ, the trained projection ``P`` on the student's ``L + 1``
  hidden states: ``3 × (L + 1) · 2·B·T·h_S·h_T``;
* **DynaBERT** (:class:`~zoo_core.backend.WidthSpec`): ``forward(teacher)`` once plus
  ``3 × forward(student at w)`` for every width ``w`` trained in the step, where the width
  keeps ``round(w × heads)`` heads and ``round(w × I)`` FFN neurons and the hidden size,
  embeddings, pooler and classifier whole (:func:`zoo_core.models.width.width_config`,
  exactly what the backends compute).

Under data parallelism the loop adds every rank's shard (each rank's batch is known to
every rank: :func:`~zoo_core.data.batching.train_batches` is deterministic).  A backend
that pads further (the mindspore backend rounds lengths up to a multiple of 16) does more
work than is counted here: these are model FLOPs of the batch, not the backend's own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from zoo_core.backend import DistillSpec, WidthSpec
from zoo_core.models.config import BertConfig
from zoo_core.models.width import width_config

#: a trained pass costs the forward and a backward of twice the forward
TRAINED = 3


def layer_flops(config: BertConfig, batch: int, length: int) -> int:
    """Matmul FLOPs of one encoder layer's forward pass over ``batch`` sequences of ``length`` tokens."""
    h, a, ffn = config.hidden_size, config.num_attention_heads * config.head_size, config.intermediate_size
    tokens = batch * length
    projections = 2 * tokens * (3 * h * a + a * h + 2 * h * ffn)
    attention = 2 * 2 * batch * length * length * a  # Q·Kᵀ and probs·V
    return projections + attention


def head_flops(config: BertConfig, batch: int) -> int:
    """Matmul FLOPs of the pooler (on [CLS] only) and the classifier, forward."""
    h = config.hidden_size
    return 2 * batch * h * (h + config.num_labels)


def forward_flops(config: BertConfig, batch: int, length: int) -> int:
    """Matmul FLOPs of one forward pass of ``config``'s model over ``batch`` x ``length`` tokens.

    ``L · [2·B·T·(4·h·a + 2·h·I) + 4·B·T²·a] + 2·B·h·(h + c)``; embeddings excluded (see
    the module docstring).
    """
    if batch <= 0 or length <= 0:
        return 0
    return config.num_hidden_layers * layer_flops(config, batch, length) + head_flops(config, batch)


def training_flops(config: BertConfig, batch: int, length: int) -> int:
    """Forward and backward (``3 × forward``) of ``config``'s model over ``batch`` x ``length`` tokens."""
    return TRAINED * forward_flops(config, batch, length)


@dataclass(frozen=True)
class StepFlops:
    """The model FLOPs of one training step of a recipe kind, for any batch shape.

    ``students`` are the configs trained (fine-tune, TinyBERT: one; DynaBERT: the student
    at each width of the step), each forward and backward; ``teacher`` runs forward only
    (None: no teacher); ``projection`` is ``(hidden_S, hidden_T, states)`` for TinyBERT's
    trained projection ``P`` applied to ``states`` hidden states (None: no projection).
    Build one with :func:`finetune_step`, :func:`distill_step` or :func:`width_step`.
    """

    students: tuple[BertConfig, ...]
    teacher: BertConfig | None = None
    projection: tuple[int, int, int] | None = None

    def micro_batch(self, batch: int, length: int) -> int:
        """FLOPs of one micro-batch of ``batch`` sequences padded to ``length``."""
        if batch <= 0 or length <= 0:
            return 0
        total = sum(training_flops(student, batch, length) for student in self.students)
        if self.teacher is not None:
            total += forward_flops(self.teacher, batch, length)
        if self.projection is not None:
            hidden_s, hidden_t, states = self.projection
            total += TRAINED * states * 2 * batch * length * hidden_s * hidden_t
        return total

    def __call__(self, shapes: Iterable[tuple[int, int]]) -> int:
        """FLOPs of a step over micro-batches of ``(batch, padded length)`` ``shapes``."""
        return sum(self.micro_batch(batch, length) for batch, length in shapes)


def finetune_step(config: BertConfig) -> StepFlops:
    """A fine-tuning step: the model forward and backward."""
    return StepFlops((config,))


def distill_step(student: BertConfig, teacher: BertConfig, spec: DistillSpec) -> StepFlops:
    """A TinyBERT step: the student forward and backward, the teacher forward, ``P`` if any."""
    projection = None
    if spec.stage == "intermediate" and student.hidden_size != teacher.hidden_size:
        projection = (student.hidden_size, teacher.hidden_size, student.num_hidden_layers + 1)
    return StepFlops((student,), teacher, projection)


def width_step(student: BertConfig, teacher: BertConfig, spec: WidthSpec) -> StepFlops:
    """A DynaBERT step: the teacher forward once, the student forward and backward at every width."""
    return StepFlops(tuple(width_config(student, width) for width in spec.widths), teacher)
