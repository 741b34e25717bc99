"""Layer maps and students made of teacher layers."""

from __future__ import annotations

import numpy as np
import pytest

from zoo_core.errors import ModelError
from zoo_core.models.student import check_layer_map, copy_teacher_layers, uniform_layer_map
from zoo_core.models.weights import init_weights
from zoo_core.testing import reference_logits, tiny_batch, tiny_config


@pytest.mark.parametrize(
    ("student", "teacher", "expected"),
    [
        (3, 6, (2, 4, 6)),
        (4, 12, (3, 6, 9, 12)),
        (4, 6, (2, 3, 5, 6)),
        (6, 6, (1, 2, 3, 4, 5, 6)),
        (1, 2, (2,)),
    ],
)
def test_uniform_layer_map(student: int, teacher: int, expected: tuple[int, ...]) -> None:
    assert uniform_layer_map(student, teacher) == expected


def test_layer_map_errors() -> None:
    with pytest.raises(ModelError, match="cannot learn from a teacher with 2"):
        uniform_layer_map(3, 2)
    with pytest.raises(ModelError, match="has 2 entries but the student has 3 layers"):
        check_layer_map([1, 2], 3, 6)
    with pytest.raises(ModelError, match="entry 7 is not a teacher layer"):
        check_layer_map([1, 2, 7], 3, 6)


def test_copy_teacher_layers_renumbers_and_copies() -> None:
    config = tiny_config(num_hidden_layers=4)
    teacher = init_weights(config, 0)
    student_config, student = copy_teacher_layers(teacher, config, [2, 4])
    assert student_config.num_hidden_layers == 2
    np.testing.assert_array_equal(
        student["bert.encoder.layer.0.attention.self.query.weight"],
        teacher["bert.encoder.layer.1.attention.self.query.weight"],
    )
    np.testing.assert_array_equal(
        student["bert.encoder.layer.1.output.dense.bias"], teacher["bert.encoder.layer.3.output.dense.bias"]
    )
    for name in ("bert.embeddings.word_embeddings.weight", "classifier.weight", "bert.pooler.dense.weight"):
        np.testing.assert_array_equal(student[name], teacher[name])
    student["classifier.bias"][:] = 5  # a copy, not a view
    assert not np.any(teacher["classifier.bias"] == 5)


def test_copying_every_layer_is_the_teacher() -> None:
    config = tiny_config(initializer_range=0.2)
    teacher = init_weights(config, 1)
    student_config, student = copy_teacher_layers(teacher, config, [1, 2])
    batch = tiny_batch()
    np.testing.assert_array_equal(
        reference_logits(student, student_config, batch), reference_logits(teacher, config, batch)
    )
