"""Conformance of capability ``width``: DynaBERT width training.

Head and neuron importance against finite differences, the per-width losses against
the sliced numpy reference (:mod:`zoo_core.testing.width_reference`), training only
what the widths use, resume, and the teacher check
:func:`zoo_core.trainers.make_width_trainer` runs.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zoo_core.backend import TrainSpec
from zoo_core.errors import ModelError
from zoo_core.models.weights import init_weights
from zoo_core.testing.conformance.helpers import (
    DROPOUT,
    NO_DROPOUT,
    ConformanceBase,
    FullBackend,
    _model,
    _width_training,
    pad_batch,
    regression_config,
    tiny_batch,
    tiny_config,
    width_spec,
)
from zoo_core.testing.width_reference import reference_importance, reference_width_losses
from zoo_core.trainers import make_width_trainer


class WidthConformance(ConformanceBase):
    """DynaBERT width: each test skips unless the backend declares ``width``."""

    # ---- DynaBERT width ----------------------------------------------------------
    @pytest.mark.usefixtures("width")
    @pytest.mark.parametrize("regression", [False, True], ids=["classification", "regression"])
    def test_importance_matches_finite_differences(self, backend: FullBackend, regression: bool) -> None:
        config = (regression_config if regression else tiny_config)(initializer_range=0.2)
        model = backend.build_model(config)
        rng = np.random.default_rng(4)
        weights = {  # non-zero biases, so the bias terms of neuron importance count
            name: (
                value + rng.normal(0.0, 0.2, value.shape).astype(np.float32)
                if name.endswith("bias")
                else value
            )
            for name, value in init_weights(config, 4).items()
        }
        backend.load_weights(model, weights)
        batch = tiny_batch(seed=5, batch_size=5, labels="regression" if regression else "classification")
        heads, neurons = backend.importance(model, batch)
        want_heads, want_neurons = reference_importance(weights, config, batch)
        assert heads.shape == want_heads.shape and neurons.shape == want_neurons.shape
        for got, want in ((heads, want_heads), (neurons, want_neurons)):
            assert want.max() > 1e-4, "too small for the comparison to mean much"
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4 * want.max())
        for name, value in backend.dump_weights(model).items():
            np.testing.assert_array_equal(value, weights[name], err_msg=name)

    @pytest.mark.usefixtures("width")
    @pytest.mark.parametrize("regression", [False, True], ids=["classification", "regression"])
    @pytest.mark.parametrize("dropout", [False, True], ids=["no-dropout", "dropout"])
    def test_width_losses_match_sliced_reference(
        self, backend: FullBackend, regression: bool, dropout: bool
    ) -> None:
        """With dropout, the ``k``-th width of the step drops under the core's stream ``k`` masks."""
        rates = DROPOUT if dropout else NO_DROPOUT
        config = (regression_config if regression else tiny_config)(initializer_range=0.2, **rates)
        teacher, teacher_weights = _model(backend, config, seed=1)
        student, student_weights = _model(backend, config, seed=2)
        spec = width_spec(config)
        batch = replace(tiny_batch(seed=3, batch_size=5, max_len=12, labels=None), step=2)
        expected = reference_width_losses(student_weights, teacher_weights, config, batch, spec)
        got = _width_training(backend, student, teacher, spec).step(pad_batch(batch, 14), lr=1e-3)
        assert set(got) == {"grad_norm", *expected}
        assert np.isfinite(got["grad_norm"]) and got["grad_norm"] > 0
        for name, value in expected.items():
            assert value > 1e-4, f"{name}: too small for the comparison to mean much"
            assert got[name] == pytest.approx(value, rel=1e-5), name

    @pytest.mark.usefixtures("width")
    def test_width_step_trains_only_what_the_widths_use(self, backend: FullBackend) -> None:
        config = tiny_config(**NO_DROPOUT)
        teacher, teacher_weights = _model(backend, config, seed=1)
        student, before = _model(backend, config, seed=2)
        spec = width_spec(config, widths=(0.5,), train=TrainSpec("classification", weight_decay=0.0))
        trainer = _width_training(backend, student, teacher, spec)
        losses = [
            trainer.step(tiny_batch(seed=1, batch_size=8, labels=None), lr=1e-2)["loss"] for _ in range(15)
        ]
        assert np.mean(losses[-3:]) < 0.7 * losses[0], losses
        after = backend.dump_weights(student)
        half = config.num_attention_heads // 2 * config.head_size
        neurons = config.intermediate_size // 2
        p = "bert.encoder.layer.0."
        unused: dict[str, Any] = {
            p + "attention.self.query.weight": np.s_[half:],
            p + "attention.self.value.bias": np.s_[half:],
            p + "attention.output.dense.weight": np.s_[:, half:],
            p + "intermediate.dense.weight": np.s_[neurons:],
            p + "output.dense.weight": np.s_[:, neurons:],
        }
        for name, index in unused.items():
            np.testing.assert_array_equal(after[name][index], before[name][index], err_msg=name)
            assert not np.array_equal(after[name], before[name]), f"{name}: the kept half did not train"
        for name, value in backend.dump_weights(teacher).items():
            np.testing.assert_array_equal(value, teacher_weights[name], err_msg=name)

    @pytest.mark.usefixtures("width")
    def test_width_resume_matches_uninterrupted_run(self, backend: FullBackend, tmp_path: Path) -> None:
        config = tiny_config()
        teacher, _ = _model(backend, config, seed=1)
        spec = width_spec(config, train=TrainSpec("classification", seed=5))
        batches = [tiny_batch(seed=s, batch_size=8, labels=None) for s in range(4)]
        student, _ = _model(backend, config, seed=2)
        trainer = _width_training(backend, student, teacher, spec)
        for batch in batches[:2]:
            trainer.step(batch, lr=1e-2)
        trainer.save_state(tmp_path)
        saved = backend.dump_weights(student)
        expected = [trainer.step(batch, lr=1e-2) for batch in batches[2:]]

        resumed, _ = _model(backend, config, seed=99)
        backend.load_weights(resumed, saved)
        trainer = _width_training(backend, resumed, teacher, spec)
        trainer.load_state(tmp_path)
        got = [trainer.step(batch, lr=1e-2) for batch in batches[2:]]
        for want, have in zip(expected, got, strict=True):
            assert have["loss"] == pytest.approx(want["loss"], rel=1e-5)

    @pytest.mark.usefixtures("width")
    def test_width_rejects_a_teacher_of_another_shape(self, backend: FullBackend) -> None:
        teacher_config, student_config = tiny_config(num_hidden_layers=1), tiny_config()
        teacher, _ = _model(backend, teacher_config)
        student, _ = _model(backend, student_config)
        with pytest.raises(ModelError, match="num_hidden_layers") as info:
            make_width_trainer(
                backend,
                student,
                teacher,
                width_spec(student_config),
                student_config=student_config,
                teacher_config=teacher_config,
            )
        assert "\n" not in str(info.value)
