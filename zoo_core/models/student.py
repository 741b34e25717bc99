"""Students for distillation: layer maps and initialisation from a subset of the teacher's layers."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import numpy as np

from zoo_core.backend import DistillSpec
from zoo_core.errors import ModelError
from zoo_core.models.config import BertConfig
from zoo_core.models.weights import Weights, check_weights

_LAYER = re.compile(r"^bert\.encoder\.layer\.(\d+)\.(.*)$")


#: standard deviation of the projection's initial weight (BERT's initializer_range)
PROJECTION_INIT_STD = 0.02


def projection_init(student: BertConfig, teacher: BertConfig, seed: int) -> np.ndarray | None:
    """The initial weight of TinyBERT's projection ``P`` (student hidden -> teacher hidden).

    ``[hidden_T, hidden_S]`` float32 (``P(x) = x @ weight.T + bias``, bias zero), drawn
    from normal(0, 0.02) by ``np.random.default_rng(seed)``; None when the hidden sizes
    are equal (no projection).  Every backend starts ``P`` from this array (transposed
    where its layout is ``[in, out]``), so a distillation starts alike on each of them.
    """
    if student.hidden_size == teacher.hidden_size:
        return None
    shape = (teacher.hidden_size, student.hidden_size)
    return np.random.default_rng(seed).normal(0.0, PROJECTION_INIT_STD, shape).astype(np.float32)


def uniform_layer_map(student_layers: int, teacher_layers: int) -> tuple[int, ...]:
    """TinyBERT's uniform map: student layer ``i`` (1-based) learns from teacher layer ``i * Lt / Ls``.

    Fractions round half up, so 3 of 6 layers map to (2, 4, 6) and 4 of 6 to (2, 3, 5, 6).
    """
    if not 1 <= student_layers <= teacher_layers:
        raise ModelError(
            f"a student with {student_layers} layers cannot learn from a teacher with {teacher_layers}"
        )
    return tuple(math.floor((i + 1) * teacher_layers / student_layers + 0.5) for i in range(student_layers))


def check_layer_map(layer_map: Sequence[int], student_layers: int, teacher_layers: int) -> tuple[int, ...]:
    """``layer_map`` if it names one teacher layer (1..Lt) per student layer; else a ModelError."""
    if len(layer_map) != student_layers:
        raise ModelError(
            f"layer_map has {len(layer_map)} entries but the student has {student_layers} layers"
        )
    bad = [layer for layer in layer_map if not 1 <= layer <= teacher_layers]
    if bad:
        raise ModelError(f"layer_map entry {bad[0]} is not a teacher layer (1..{teacher_layers})")
    return tuple(layer_map)


def copy_teacher_layers(
    teacher: Mapping[str, np.ndarray], config: BertConfig, layers: Sequence[int]
) -> tuple[BertConfig, Weights]:
    """A student made of teacher layers ``layers`` (1-based), with the teacher's embeddings and head."""
    check_layer_map(layers, len(layers), config.num_hidden_layers)
    check_weights(teacher, config, source="teacher")
    student_config = config.replace(num_hidden_layers=len(layers))
    out: Weights = {}
    for name, value in teacher.items():
        match = _LAYER.match(name)
        if match is None:
            out[name] = value.copy()
            continue
        teacher_layer = int(match.group(1)) + 1
        for student_index, chosen in enumerate(layers):
            if chosen == teacher_layer:
                out[f"bert.encoder.layer.{student_index}.{match.group(2)}"] = value.copy()
    check_weights(out, student_config, source="student")
    return student_config, out


def distill_loss_weights(spec: DistillSpec) -> dict[str, float]:
    """The weight of every loss of ``spec``'s stage (missing weights are 0)."""
    return {name: float(spec.loss_weights.get(name, 0.0)) for name in spec.losses}


def check_distill(student: BertConfig, teacher: BertConfig, spec: DistillSpec) -> None:
    """Raise :class:`ModelError` (one line) if ``student`` cannot learn from ``teacher`` as ``spec`` says.

    Every backend's ``make_distill_trainer`` calls it before building anything.
    """
    weights = distill_loss_weights(spec)
    if not any(weights.values()):
        raise ModelError(
            f"no {spec.stage} distillation loss has a non-zero weight ({', '.join(spec.losses)})"
        )
    if spec.stage == "prediction":
        if student.num_labels != teacher.num_labels:
            raise ModelError(
                f"the student has {student.num_labels} outputs but the teacher {teacher.num_labels}"
            )
        return
    if len(spec.layer_map) != student.num_hidden_layers:
        raise ModelError(
            f"layer_map has {len(spec.layer_map)} entries but the student has "
            f"{student.num_hidden_layers} layers"
        )
    bad = [j for j in spec.layer_map if not 1 <= j <= teacher.num_hidden_layers]
    if bad:
        raise ModelError(f"layer_map entry {bad[0]} is not a teacher layer (1..{teacher.num_hidden_layers})")
    if weights["attention"] and student.num_attention_heads != teacher.num_attention_heads:
        raise ModelError(
            f"the attention loss needs as many heads in the student ({student.num_attention_heads}) "
            f"as in the teacher ({teacher.num_attention_heads})"
        )
