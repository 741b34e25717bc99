"""Pins the numpy TinyBERT losses (zoo_core.testing.distill_reference) to hand-computed values.

The conformance suite holds every backend's distillation trainer to these functions,
so they are checked here on arrays small enough to work out on paper.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import pytest

from zoo_core.backend import DistillSpec, TrainSpec
from zoo_core.models.weights import init_weights
from zoo_core.testing import pad_batch, tiny_batch, tiny_config
from zoo_core.testing.distill_reference import (
    attention_mse,
    masked_mse,
    reference_distill_losses,
    soft_cross_entropy,
)
from zoo_core.testing.reference import ReferenceOutput, reference_forward


def spec(
    stage: Literal["intermediate", "prediction"],
    layer_map: tuple[int, ...] = (1,),
    objective: Literal["classification", "regression"] = "classification",
    **changes: Any,
) -> DistillSpec:
    """A DistillSpec with every weight 1 unless ``changes`` say otherwise."""
    weights = {"embedding": 1.0, "hidden": 1.0, "attention": 1.0, "logits": 1.0}
    return DistillSpec(TrainSpec(objective), stage, layer_map, **{"loss_weights": weights, **changes})


def output(
    hidden: list[list], scores: list[list] | None = None, logits: list | None = None
) -> ReferenceOutput:
    """A ReferenceOutput from nested lists (scores default to zeros of one head)."""
    hidden_states = [np.array(h, dtype=np.float64) for h in hidden]
    b, t, _ = hidden_states[0].shape
    score_arrays = (
        [np.array(a, dtype=np.float64) for a in scores]
        if scores is not None
        else [np.zeros((b, 1, t, t)) for _ in hidden_states[1:]]
    )
    return ReferenceOutput(np.array(logits or [[0.0]] * b, dtype=np.float64), hidden_states, score_arrays)


# ---- the building blocks ---------------------------------------------------------------


def test_masked_mse_by_hand() -> None:
    # one example, two tokens (the second padded), hidden 2: only (1 - 0)**2 + (2 - 0)**2 counts
    student = np.array([[[1.0, 2.0], [5.0, 5.0]]])
    teacher = np.array([[[0.0, 0.0], [9.0, -9.0]]])
    assert masked_mse(student, teacher, np.array([[1, 0]])) == pytest.approx(5 / (1 * 2))
    # both real: (1 + 4 + 16 + 196) / (2 tokens * hidden 2)
    assert masked_mse(student, teacher, np.array([[1, 1]])) == pytest.approx(217 / 4)


def test_masked_mse_divides_by_the_teacher_width_and_all_real_tokens() -> None:
    # two examples of 1 and 2 real tokens: n = 3, not a mean of per-example means
    student = np.zeros((2, 2, 3))
    teacher = np.zeros((2, 2, 3))
    teacher[0, 0] = [3.0, 0.0, 0.0]  # 9, real
    teacher[0, 1] = [100.0, 0.0, 0.0]  # padded
    teacher[1, :, 0] = 1.0  # 1 + 1, real
    mask = np.array([[1, 0], [1, 1]])
    assert masked_mse(student, teacher, mask) == pytest.approx(11 / (3 * 3))


def test_attention_mse_by_hand() -> None:
    # one example, 1 head, 2 positions, the second padded: only the (query 0, key 0) score counts
    student = np.array([[[[2.0, 50.0], [60.0, 70.0]]]])
    teacher = np.array([[[[-1.0, 0.0], [0.0, 0.0]]]])
    assert attention_mse(student, teacher, np.array([[1, 0]])) == pytest.approx(9.0)


def test_attention_mse_divides_by_heads_and_squared_lengths() -> None:
    # 2 examples with 1 and 2 real tokens, 2 heads; every real pair differs by 1
    mask = np.array([[1, 0], [1, 1]])
    student = np.ones((2, 2, 2, 2))
    teacher = np.zeros((2, 2, 2, 2))
    pairs = 2 * (1**2 + 2**2)  # heads * sum_b n_b**2 = 10 real (head, query, key) entries
    assert attention_mse(student, teacher, mask) == pytest.approx(pairs / pairs)
    teacher[1] = -1.0  # the second example's 8 entries now differ by 2
    assert attention_mse(student, teacher, mask) == pytest.approx((2 * 1 + 8 * 4) / 10)


def test_soft_cross_entropy_by_hand() -> None:
    # teacher uniform over 2 classes; student probabilities 1/4 and 3/4
    teacher = np.array([[0.0, 0.0]])
    student = np.array([[0.0, math.log(3.0)]])
    expected = -(0.5 * math.log(0.25) + 0.5 * math.log(0.75))
    assert soft_cross_entropy(student, teacher, temperature=1.0) == pytest.approx(expected)
    # temperature 2 halves the logits: twice the gap gives the same probabilities
    assert soft_cross_entropy(2 * student, 2 * teacher + 7.0, temperature=2.0) == pytest.approx(expected)


def test_soft_cross_entropy_is_a_mean_over_examples() -> None:
    # a one-hot-ish teacher: the loss is -log of the student's probability of its class
    teacher = np.array([[0.0, -1e9], [-1e9, 0.0]])
    student = np.array([[0.0, 0.0], [0.0, math.log(3.0)]])
    expected = (math.log(2.0) + -math.log(0.75)) / 2
    assert soft_cross_entropy(student, teacher, temperature=1.0) == pytest.approx(expected)


# ---- reference_distill_losses ----------------------------------------------------------


def test_intermediate_losses_follow_the_layer_map() -> None:
    # student: embedding + 1 layer; teacher: embedding + 2 layers; layer_map (2,)
    mask = np.array([[1, 1]])
    student = output(
        [[[[1.0, 0.0], [0.0, 0.0]]], [[[2.0, 2.0], [2.0, 2.0]]]],
        scores=[[[[[1.0, 1.0], [1.0, 1.0]]]]],
    )
    teacher = output(
        [[[[0.0, 0.0], [0.0, 0.0]]], [[[9.0, 9.0], [9.0, 9.0]]], [[[2.0, 2.0], [2.0, 0.0]]]],
        scores=[np.full((1, 1, 2, 2), 9.0).tolist(), [[[[1.0, 1.0], [1.0, 3.0]]]]],
    )
    losses = reference_distill_losses(student, teacher, mask, spec("intermediate", (2,)))
    assert losses["embedding"] == pytest.approx(1 / 4)
    assert losses["hidden"] == pytest.approx(4 / 4)  # against teacher layer 2, not 1
    assert losses["attention"] == pytest.approx(4 / 4)  # scores of teacher layer 2
    assert losses["loss"] == pytest.approx(0.25 + 1 + 1)
    assert set(losses) == {"embedding", "hidden", "attention", "loss"}


def test_hidden_sums_over_student_layers_and_weights_scale_the_total() -> None:
    mask = np.array([[1]])
    student = output([[[[0.0]]], [[[1.0]]], [[[2.0]]]], scores=[[[[[0.0]]]], [[[[0.0]]]]])
    teacher = output([[[[0.0]]], [[[0.0]]]], scores=[[[[[0.0]]]]])
    weights = {"hidden": 3.0, "logits": 100.0}  # embedding and attention missing: 0
    losses = reference_distill_losses(
        student, teacher, mask, spec("intermediate", (1, 1), loss_weights=weights)
    )
    assert losses["hidden"] == pytest.approx(1 + 4)
    assert losses["loss"] == pytest.approx(15.0)


def test_projection_maps_student_width_to_teacher_width() -> None:
    # student hidden 1, teacher hidden 2; P(x) = [2x, x + 1]
    mask = np.array([[1, 0]])
    student = output([[[[1.0], [7.0]]], [[[0.0], [7.0]]]], scores=[np.zeros((1, 1, 2, 2)).tolist()])
    teacher = output(
        [[[[2.0, 2.0], [0.0, 0.0]]], [[[0.0, 0.0], [0.0, 0.0]]]], scores=[np.zeros((1, 1, 2, 2)).tolist()]
    )
    projection = (np.array([[2.0], [1.0]]), np.array([0.0, 1.0]))
    losses = reference_distill_losses(student, teacher, mask, spec("intermediate"), projection)
    assert losses["embedding"] == pytest.approx(0.0)  # P(1) = [2, 2]
    assert losses["hidden"] == pytest.approx((0 + 1) / 2)  # P(0) = [0, 1]


def test_prediction_losses() -> None:
    mask = np.array([[1], [1]])
    student = output([[[[0.0]], [[0.0]]]], logits=[[0.0, math.log(3.0)], [0.0, 0.0]])
    teacher = output([[[[0.0]], [[0.0]]]], logits=[[0.0, 0.0], [0.0, 0.0]])
    losses = reference_distill_losses(student, teacher, mask, spec("prediction", temperature=1.0))
    expected = (-(0.5 * math.log(0.25) + 0.5 * math.log(0.75)) + math.log(2.0)) / 2
    assert losses == pytest.approx({"logits": expected, "loss": expected})

    student = output([[[[0.0]], [[0.0]]]], logits=[[1.0], [4.0]])
    teacher = output([[[[0.0]], [[0.0]]]], logits=[[0.0], [2.0]])
    regression = spec("prediction", objective="regression", loss_weights={"logits": 2.0})
    losses = reference_distill_losses(student, teacher, mask, regression)
    assert losses == pytest.approx({"logits": (1 + 4) / 2, "loss": 5.0})


def test_reference_losses_ignore_padding() -> None:
    teacher_config = tiny_config(initializer_range=0.2)
    student_config = tiny_config(num_hidden_layers=1, attention_head_size=6, initializer_range=0.2)
    teacher_weights, student_weights = init_weights(teacher_config, 1), init_weights(student_config, 2)
    batch = tiny_batch(seed=3, max_len=10)
    padded = pad_batch(batch, 17)
    padded.input_ids[:, 10:] = 9

    def losses(b: Any) -> dict[str, float]:
        return reference_distill_losses(
            reference_forward(student_weights, student_config, b),
            reference_forward(teacher_weights, teacher_config, b),
            b.attention_mask,
            spec("intermediate", (2,)),
        )

    short, long = losses(batch), losses(padded)
    assert short["attention"] > 1e-2 and short["hidden"] > 1e-2
    assert long == pytest.approx(short, rel=1e-12)


def test_reference_forward_shapes_and_logits() -> None:
    config = tiny_config(attention_head_size=6)
    weights = init_weights(config, 0)
    batch = tiny_batch(batch_size=3, max_len=9)
    out = reference_forward(weights, config, batch)
    assert out.logits.shape == (3, 2)
    assert [h.shape for h in out.hidden_states] == [(3, 9, 32)] * 3
    assert [a.shape for a in out.scores] == [(3, 4, 9, 9)] * 2
    assert all(np.isfinite(a).all() for a in out.scores)  # no mask added
