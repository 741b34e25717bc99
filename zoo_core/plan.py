"""``zoo plan``: parameter count and training memory of a recipe, before anything is trained.

The estimate is arithmetic on the recipe's model configs (fp32, AdamW), per training step:

* **weights, gradients, optimizer states** of the trained model: 4 + 4 + 8 bytes a
  parameter (AdamW keeps two moments);
* **teacher weights** (distillation and width recipes): 4 bytes a parameter, no gradients;
* **activations** autograd keeps for the backward pass, per example and layer
  (``T`` tokens, hidden ``H``, ``A`` heads of ``D`` = attention width ``W = A*D``, FFN ``I``):
  ``T*(6H + 4W + 2I) + 3*A*T*T`` floats — the inputs of the Q/K/V, output and FFN
  projections, the scaled query and key, the value, the GELU input and output, two
  dropout masks, the LayerNorm inputs, and the softmax output, its dropout mask and the
  dropped probabilities; plus ``3*T*H`` for the embeddings;
* **teacher outputs** a distillation step keeps: its ``L+1`` hidden states, and its
  attention scores when the stage matches attentions.

With ``train.precision`` bf16 or fp16 (autocast), the master weights, gradients and
optimizer states stay fp32, autocast caches a 2-byte copy of the weights for the forward,
and the activations and teacher outputs are counted at 2 bytes (autocast keeps the
matmul inputs in low precision; the LayerNorm and softmax inputs it keeps in fp32 make
the real figure somewhat higher).

The largest stage of a recipe counts (batch size and sequence length are the recipe's:
``max_seq_length`` is the worst case, length-bucketed batches are usually shorter).
Framework code, data and allocator slack come on top; ``result.json``'s
``peak_memory_mb`` records what a real run used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo_core.data.splits import resolve_task
from zoo_core.models.config import BertConfig
from zoo_core.models.resolve import resolve_model
from zoo_core.models.weights import parameter_count
from zoo_core.tasks import Task

FLOAT = 4
#: bytes of a bf16 / fp16 value
HALF = 2
MIB = 2**20


def activation_floats(config: BertConfig, seq_len: int) -> int:
    """Floats autograd keeps for one example's backward pass (see the module docstring)."""
    t, h, i = seq_len, config.hidden_size, config.intermediate_size
    w = config.num_attention_heads * config.head_size
    per_layer = t * (6 * h + 4 * w + 2 * i) + 3 * config.num_attention_heads * t * t
    return 3 * t * h + config.num_hidden_layers * per_layer


def teacher_output_floats(config: BertConfig, seq_len: int, attentions: bool) -> int:
    """Floats of the teacher outputs one distillation example keeps: hidden states (and scores)."""
    floats = (config.num_hidden_layers + 1) * seq_len * config.hidden_size
    if attentions:
        floats += config.num_hidden_layers * config.num_attention_heads * seq_len * seq_len
    return floats


@dataclass(frozen=True)
class MemoryPlan:
    """A recipe's estimated training memory, in bytes, by part."""

    parameters: int
    teacher_parameters: int
    batch_size: int
    seq_len: int
    weights: int
    gradients: int
    optimizer: int
    teacher: int
    activations: int

    @property
    def total(self) -> int:
        """All parts together."""
        return self.weights + self.gradients + self.optimizer + self.teacher + self.activations

    def rows(self) -> list[tuple[str, float]]:
        """``(part, MiB)`` for a table."""
        return [
            ("weights", self.weights / MIB),
            ("gradients", self.gradients / MIB),
            ("optimizer states (AdamW)", self.optimizer / MIB),
            ("teacher (weights and outputs)", self.teacher / MIB),
            (f"activations ({self.batch_size} x {self.seq_len} tokens)", self.activations / MIB),
            ("total", self.total / MIB),
        ]


def plan_memory(
    student: BertConfig,
    batch_size: int,
    seq_len: int,
    teacher: BertConfig | None = None,
    teacher_attentions: bool = False,
    precision: str = "fp32",
) -> MemoryPlan:
    """The training memory of ``student`` at ``batch_size`` x ``seq_len`` (with ``teacher`` if any).

    ``precision`` bf16 / fp16: see the module docstring.
    """
    low = precision != "fp32"
    value = HALF if low else FLOAT
    params = parameter_count(student)
    teacher_params = parameter_count(teacher) if teacher is not None else 0
    teacher_bytes = teacher_params * (FLOAT + HALF if low else FLOAT)
    if teacher is not None:
        teacher_bytes += batch_size * teacher_output_floats(teacher, seq_len, teacher_attentions) * value
    return MemoryPlan(
        parameters=params,
        teacher_parameters=teacher_params,
        batch_size=batch_size,
        seq_len=seq_len,
        weights=params * (FLOAT + HALF if low else FLOAT),
        gradients=params * FLOAT,
        optimizer=2 * params * FLOAT,
        teacher=teacher_bytes,
        activations=batch_size * activation_floats(student, seq_len) * value,
    )


def _model_config(ref: str, task: Task) -> BertConfig:
    """A catalog name's or model directory's config, with the task's classifier head."""
    config = resolve_model(ref, load_weights=False).config
    return config.replace(
        labels=task.labels, problem_type="regression" if task.is_regression else "single_label_classification"
    )


def _teacher_config(ref: str, task: Task) -> BertConfig:
    """The config of a teacher given as a checkpoint/run directory or a fine-tune recipe."""
    from zoo_core.recipes.bundled import find_recipe
    from zoo_core.recipes.loader import load_recipe

    path = Path(ref)
    if path.is_dir():
        return _model_config(str(path / "best" if (path / "best" / "config.json").is_file() else path), task)
    return _model_config(load_recipe(find_recipe(ref)).model, task)


def plan_finetune(recipe: Any, task: Task) -> MemoryPlan:
    """A fine-tune recipe's plan: its model with the task's head, no teacher."""
    config = _model_config(recipe.model, task)
    return plan_memory(
        config, recipe.train.batch_size, recipe.data.max_seq_length, precision=recipe.train.precision
    )


def plan_width(recipe: Any, task: Task) -> MemoryPlan:
    """A width recipe's plan: the teacher is trained, against its full-width self."""
    teacher = _teacher_config(recipe.teacher, task)
    return plan_memory(
        teacher,
        recipe.train.batch_size,
        recipe.data.max_seq_length,
        teacher,
        precision=recipe.train.precision,
    )


def plan_distill(recipe: Any, task: Task) -> MemoryPlan:
    """A distillation recipe's plan: its largest stage (the student trained, the teacher's outputs kept)."""
    teacher = _teacher_config(recipe.teacher, task)
    student = _model_config(recipe.student.model, task)
    layers = recipe.student.num_hidden_layers or (
        len(recipe.student.teacher_layers) if recipe.student.teacher_layers else None
    )
    if layers is not None:
        student = student.replace(num_hidden_layers=layers)
    plans = [
        plan_memory(
            student,
            stage.train.batch_size,
            recipe.data.max_seq_length,
            teacher,
            teacher_attentions=bool(stage.weights().get("attention")),
            precision=stage.train.precision,
        )
        for stage in recipe.stages
    ]
    return max(plans, key=lambda p: p.total)


def plan_recipe(recipe: Any) -> MemoryPlan:
    """The :class:`MemoryPlan` of a loaded recipe, by its kind's plan function (see ``KINDS``)."""
    from zoo_core.recipes.kinds import KINDS

    task = resolve_task(recipe.task, recipe.data)
    return KINDS[recipe.kind].load_planner()(recipe, task)
