"""Conformance of capability ``distill``: TinyBERT's intermediate and prediction stages.

The losses against :func:`zoo_core.testing.distill_reference.reference_distill_losses`
(with and without dropout, through the core-initialised projection when hidden sizes
differ), padding, learning with the teacher left alone, resume, and the model checks
:func:`zoo_core.trainers.make_distill_trainer` runs before the backend builds anything.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest

from zoo_core.backend import DistillSpec, TrainSpec
from zoo_core.dropout import dropout_masks
from zoo_core.errors import ModelError
from zoo_core.models.student import projection_init
from zoo_core.testing.conformance.helpers import (
    DROPOUT,
    NO_DROPOUT,
    ConformanceBase,
    FullBackend,
    _distilling,
    _model,
    distill_spec,
    distill_student_config,
    distill_teacher_config,
    pad_batch,
    tiny_batch,
)
from zoo_core.testing.distill_reference import reference_distill_losses
from zoo_core.testing.reference import reference_forward
from zoo_core.trainers import make_distill_trainer


class DistillConformance(ConformanceBase):
    """TinyBERT distillation: each test skips unless the backend declares ``distill``."""

    # ---- TinyBERT distillation ---------------------------------------------------
    @pytest.mark.usefixtures("distill")
    @pytest.mark.parametrize(
        ("stage", "objective"),
        [("intermediate", "classification"), ("prediction", "classification"), ("prediction", "regression")],
        ids=["intermediate", "prediction-classification", "prediction-regression"],
    )
    @pytest.mark.parametrize("dropout", [False, True], ids=["no-dropout", "dropout"])
    def test_distill_losses_match_reference(
        self,
        backend: FullBackend,
        stage: Literal["intermediate", "prediction"],
        objective: Literal["classification", "regression"],
        dropout: bool,
    ) -> None:
        """Equal hidden sizes, so P is the identity and the losses depend on the weights alone.

        With dropout, the student (training mode) drops under the core's masks and the
        teacher (inference mode) does not drop at all.
        """
        head: dict[str, Any] = (
            dict(labels=("score",), problem_type="regression")
            if objective == "regression"
            else dict(labels=("a", "b", "c"))
        )
        rates = DROPOUT if dropout else NO_DROPOUT
        teacher_config = distill_teacher_config(initializer_range=0.2, **rates, **head)
        student_config = distill_student_config(initializer_range=0.2, **rates, **head)
        teacher, teacher_weights = _model(backend, teacher_config, seed=1)
        student, student_weights = _model(backend, student_config, seed=2)
        spec = distill_spec(stage, objective)
        batch = replace(tiny_batch(seed=3, batch_size=5, max_len=12, labels=None), step=4)
        expected = reference_distill_losses(
            reference_forward(
                student_weights, student_config, batch, dropout_masks(student_config, batch, spec.train.seed)
            ),
            reference_forward(teacher_weights, teacher_config, batch),
            batch.attention_mask,
            spec,
        )
        got = _distilling(backend, student, teacher, spec).step(pad_batch(batch, 15), lr=1e-3)
        assert set(got) == {"loss", "grad_norm", *spec.losses}
        assert np.isfinite(got["grad_norm"]) and got["grad_norm"] > 0
        for name in (*spec.losses, "loss"):
            assert expected[name] > 1e-3, f"{name}: too small for the comparison to mean much"
            assert got[name] == pytest.approx(expected[name], rel=1e-5), name

    @pytest.mark.usefixtures("distill")
    def test_distill_projection_starts_from_the_core_init(self, backend: FullBackend) -> None:
        """Hidden sizes differ: ``P`` starts from ``projection_init`` on every backend.

        The first step's losses (computed before the update) match the reference with
        that ``P`` and a zero bias, so a TinyBERT run with a narrower student starts alike
        on each backend.
        """
        teacher_config = distill_teacher_config(initializer_range=0.2, **NO_DROPOUT)
        student_config = distill_student_config(hidden_size=24, initializer_range=0.2, **NO_DROPOUT)
        teacher, teacher_weights = _model(backend, teacher_config, seed=1)
        student, student_weights = _model(backend, student_config, seed=2)
        spec = distill_spec("intermediate")
        weight = projection_init(student_config, teacher_config, spec.train.seed)
        assert weight is not None
        batch = tiny_batch(seed=3, batch_size=5, max_len=12, labels=None)
        expected = reference_distill_losses(
            reference_forward(student_weights, student_config, batch),
            reference_forward(teacher_weights, teacher_config, batch),
            batch.attention_mask,
            spec,
            projection=(weight, np.zeros(teacher_config.hidden_size, np.float32)),
        )
        got = _distilling(backend, student, teacher, spec).step(batch, lr=1e-3)
        for name in ("embedding", "hidden"):
            assert expected[name] > 1e-3, f"{name}: too small for the comparison to mean much"
            assert got[name] == pytest.approx(expected[name], rel=1e-5), name

    @pytest.mark.usefixtures("distill")
    @pytest.mark.parametrize("stage", ["intermediate", "prediction"])
    def test_distill_losses_ignore_padding(
        self, backend: FullBackend, stage: Literal["intermediate", "prediction"]
    ) -> None:
        teacher_config = distill_teacher_config(initializer_range=0.2, **NO_DROPOUT)
        student_config = distill_student_config(hidden_size=24, **NO_DROPOUT)  # with a projection
        spec = distill_spec(stage)
        batch = tiny_batch(seed=4, batch_size=6, max_len=12, labels=None)
        batch.attention_mask[:] = 1  # nothing padded...
        padded = pad_batch(batch, 29)  # ...against the same examples padded
        padded.input_ids[:, 12:] = 7  # what sits under the mask must not matter either
        results = []
        for b in (batch, padded):
            teacher, _ = _model(backend, teacher_config, seed=1)
            student, _ = _model(backend, student_config, seed=2)
            results.append(_distilling(backend, student, teacher, spec).step(b, lr=1e-3))
        for name in (*spec.losses, "loss"):
            assert results[1][name] == pytest.approx(results[0][name], rel=0, abs=1e-6), name
        assert results[1]["grad_norm"] == pytest.approx(results[0]["grad_norm"], rel=1e-4)

    @pytest.mark.usefixtures("distill")
    def test_distill_with_projection_learns_and_leaves_teacher_alone(self, backend: FullBackend) -> None:
        teacher, teacher_weights = _model(backend, distill_teacher_config(), seed=1)
        student, _ = _model(backend, distill_student_config(hidden_size=24), seed=2)
        trainer = _distilling(backend, student, teacher, distill_spec("intermediate"))
        batch = tiny_batch(seed=1, batch_size=8, labels=None)
        steps = [trainer.step(batch, lr=1e-2) for _ in range(20)]
        losses = [s["loss"] for s in steps]
        assert all(np.isfinite([s[k] for s in steps for k in s]))
        assert np.mean(losses[-3:]) < 0.5 * losses[0], losses
        for name, value in backend.dump_weights(teacher).items():
            np.testing.assert_array_equal(value, teacher_weights[name], err_msg=name)

    @pytest.mark.usefixtures("distill")
    def test_distill_resume_matches_uninterrupted_run(self, backend: FullBackend, tmp_path: Path) -> None:
        teacher, _ = _model(backend, distill_teacher_config(), seed=1)
        student_config = distill_student_config(hidden_size=24)  # the projection is part of the state
        spec = distill_spec("intermediate", train=TrainSpec("classification", seed=5))
        batches = [tiny_batch(seed=s, batch_size=8, labels=None) for s in range(4)]
        student, _ = _model(backend, student_config, seed=2)
        trainer = _distilling(backend, student, teacher, spec)
        for batch in batches[:2]:
            trainer.step(batch, lr=1e-2)
        trainer.save_state(tmp_path)
        saved = backend.dump_weights(student)
        expected = [trainer.step(batch, lr=1e-2) for batch in batches[2:]]

        resumed, _ = _model(backend, student_config, seed=99)
        backend.load_weights(resumed, saved)
        trainer = _distilling(backend, resumed, teacher, spec)
        trainer.load_state(tmp_path)
        got = [trainer.step(batch, lr=1e-2) for batch in batches[2:]]
        for want, have in zip(expected, got, strict=True):
            for name in (*spec.losses, "loss"):
                assert have[name] == pytest.approx(want[name], rel=1e-6), name
        for name, value in backend.dump_weights(student).items():
            np.testing.assert_allclose(backend.dump_weights(resumed)[name], value, atol=1e-6, err_msg=name)

    @pytest.mark.usefixtures("distill")
    @pytest.mark.parametrize(
        ("teacher_changes", "student_changes", "spec", "match"),
        [
            ({}, {"num_attention_heads": 2}, distill_spec("intermediate", layer_map=(2,)), "heads"),
            ({}, {}, distill_spec("intermediate", layer_map=(1, 2)), "layer_map"),
            ({}, {}, distill_spec("intermediate", layer_map=(0,)), "layer_map"),
            ({}, {}, distill_spec("intermediate", layer_map=(3,)), "layer_map"),
            ({}, {"num_hidden_layers": 2}, distill_spec("intermediate", layer_map=(2,)), "layer_map"),
            # none of the intermediate stage's losses weighted
            ({}, {}, distill_spec("intermediate", loss_weights={"logits": 1.0}), "non-zero weight"),
            ({"labels": ("a", "b", "c")}, {}, distill_spec("prediction"), "outputs"),
        ],
        ids=[
            "head-count",
            "map-too-long",
            "map-zero",
            "map-beyond-teacher",
            "map-too-short",
            "all-zero-weights",
            "prediction-outputs",
        ],
    )
    def test_distill_rejects_models_that_do_not_fit(
        self,
        backend: FullBackend,
        teacher_changes: dict[str, Any],
        student_changes: dict[str, Any],
        spec: DistillSpec,
        match: str,
    ) -> None:
        """The core's checks (:func:`zoo_core.models.student.check_distill`), before the backend builds."""
        teacher, _ = _model(backend, distill_teacher_config(**teacher_changes))
        student, _ = _model(backend, distill_student_config(**student_changes))
        with pytest.raises(ModelError, match=match) as info:
            make_distill_trainer(
                backend,
                student,
                teacher,
                spec,
                student_config=distill_student_config(**student_changes),
                teacher_config=distill_teacher_config(**teacher_changes),
            )
        assert "\n" not in str(info.value)

    @pytest.mark.usefixtures("distill")
    def test_distill_other_head_count_without_attention_loss(self, backend: FullBackend) -> None:
        teacher, _ = _model(backend, distill_teacher_config())
        student, _ = _model(backend, distill_student_config(num_attention_heads=2))
        spec = distill_spec("intermediate", loss_weights={"embedding": 1.0, "hidden": 1.0})
        out = _distilling(backend, student, teacher, spec).step(tiny_batch(labels=None), lr=1e-3)
        assert np.isfinite(out["loss"]) and out["loss"] == pytest.approx(out["embedding"] + out["hidden"])
