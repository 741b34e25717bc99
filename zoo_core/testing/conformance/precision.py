"""Conformance of mixed precision (:mod:`zoo_core.precision`): low-precision steps, fp16 loss scaling.

Loss scaling is checked on CPU in float32 for every backend that declares fp16 on some
device (its ``apply(lr, loss_scale)`` must undo the scale exactly and skip an overflowed
step without touching weights or optimizer state); bf16 and fp16 steps are compared with
fp32 for each precision the backend declares on CPU.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from zoo_core.backend import TrainSpec
from zoo_core.plugins import get_backend_spec
from zoo_core.precision import LossScaleSpec
from zoo_core.testing.conformance.helpers import (
    NO_DROPOUT,
    ConformanceBase,
    FullBackend,
    _fine_tuning,
    _model,
    _spec,
    regression_config,
    tiny_batch,
    tiny_config,
)

#: how far one training step's loss and gradient norm may be from fp32's
TOLERANCE = {"bf16": 2e-2, "fp16": 5e-3}


def _declares_fp16(backend: FullBackend) -> bool:
    return any("fp16" in precisions for precisions in get_backend_spec(backend.name).precisions.values())


class PrecisionConformance(ConformanceBase):
    """``train.precision``: what every backend that declares bf16 or fp16 must do."""

    @pytest.fixture
    def loss_scaling(self, backend: FullBackend, capabilities: frozenset[str]) -> None:
        """Skips the test unless the backend fine-tunes and declares fp16 on some device."""
        if "finetune" not in capabilities or not _declares_fp16(backend):
            pytest.skip("backend declares no fp16 (no loss scaling to check)")

    @pytest.mark.usefixtures("loss_scaling")
    def test_a_loss_scale_is_undone_exactly(self, backend: FullBackend) -> None:
        """fp32 with a fixed scale of 1024 trains as fp32 without one: the scale is a power of two."""
        config = tiny_config(**NO_DROPOUT)
        batches = [tiny_batch(seed=s, batch_size=8) for s in range(3)]
        runs = []
        for scale in (None, LossScaleSpec(dynamic=False, init_scale=1024.0)):
            model, _ = _model(backend, config, seed=3)
            trainer = _fine_tuning(backend, model, _spec(config, loss_scale=scale))
            results = [trainer.step(b, lr=1e-3) for b in batches]
            runs.append(([r["loss"] for r in results], [r["grad_norm"] for r in results], model))
        (losses, norms, plain), (scaled_losses, scaled_norms, scaled) = runs
        assert scaled_losses == pytest.approx(losses, rel=1e-6)
        assert scaled_norms == pytest.approx(norms, rel=1e-5)
        for name, value in backend.dump_weights(plain).items():
            np.testing.assert_allclose(backend.dump_weights(scaled)[name], value, atol=1e-6, err_msg=name)

    @pytest.mark.usefixtures("loss_scaling")
    def test_an_overflowed_step_changes_nothing_and_backs_the_scale_off(self, backend: FullBackend) -> None:
        """A NaN in step 2's labels: step 2 is skipped, the scale halves, step 3 trains as if 2 never was.

        Weights and optimizer state (moments, step count) are untouched by the skipped step:
        the run that saw it ends with the same weights as one that did not.
        """
        config = regression_config(**NO_DROPOUT)
        good = [tiny_batch(seed=s, batch_size=8, labels="regression") for s in (1, 2)]
        bad = replace(good[0], labels=np.full(8, np.nan, np.float32))
        scaling = LossScaleSpec(dynamic=True, init_scale=2.0**10, growth_interval=1000)
        results: dict[str, Any] = {}
        for name, batches in {"with-overflow": [good[0], bad, good[1]], "without": good}.items():
            model, _ = _model(backend, config, seed=4)
            trainer = _fine_tuning(backend, model, _spec(config, loss_scale=scaling))
            before = backend.dump_weights(model)
            outs = []
            for batch in batches:
                outs.append(trainer.step(batch, lr=1e-2))
                if batch is bad:
                    after = backend.dump_weights(model)
                    for key, value in before.items():
                        np.testing.assert_array_equal(
                            after[key], value, err_msg=f"skipped step changed {key}"
                        )
                before = backend.dump_weights(model)
            assert trainer.scaler is not None
            results[name] = (outs, backend.dump_weights(model), trainer.scaler.scale)
        outs, weights, scale = results["with-overflow"]
        assert [o["skipped"] for o in outs] == [0.0, 1.0, 0.0]
        assert [o["loss_scale"] for o in outs] == [1024.0, 1024.0, 512.0]
        assert scale == 512.0
        clean_outs, clean_weights, clean_scale = results["without"]
        assert clean_scale == 1024.0
        assert outs[2]["loss"] == pytest.approx(clean_outs[1]["loss"], rel=1e-6)
        for key, value in clean_weights.items():
            np.testing.assert_allclose(weights[key], value, atol=1e-6, err_msg=key)

    @pytest.mark.parametrize("precision", ["bf16", "fp16"])
    def test_a_low_precision_step_is_close_to_fp32(
        self, backend: FullBackend, capabilities: frozenset[str], precision: str
    ) -> None:
        """Three steps in ``precision`` (autocast; fp16 with the dynamic scale) against fp32.

        A wide init (0.2) gives logits far apart, so the gradients are not differences of
        near-equal numbers (which low precision cannot resolve).
        """
        declared = get_backend_spec(backend.name).precisions_on("cpu")
        if "finetune" not in capabilities or precision not in declared:
            pytest.skip(f"backend does not train in {precision} on cpu")
        config = tiny_config(initializer_range=0.2, **NO_DROPOUT)
        batches = [tiny_batch(seed=s, batch_size=8) for s in range(3)]
        runs = {}
        for run in ("fp32", precision):
            spec: TrainSpec = _spec(config, precision=run)
            if run == "fp16":
                spec = replace(spec, loss_scale=LossScaleSpec())
            model, _ = _model(backend, config, seed=5)
            trainer = _fine_tuning(backend, model, spec)
            outs = [trainer.step(b, lr=1e-3) for b in batches]
            assert not any(o.get("skipped") for o in outs), outs
            runs[run] = (outs, backend.dump_weights(model))
        (reference, weights), (low, low_weights) = runs["fp32"], runs[precision]
        tolerance = TOLERANCE[precision]
        for want, got in zip(reference, low, strict=True):
            assert got["loss"] == pytest.approx(want["loss"], rel=tolerance)
            assert got["grad_norm"] == pytest.approx(want["grad_norm"], rel=5 * tolerance)
        for name, value in weights.items():
            assert low_weights[name].dtype == np.float32, f"{name} is not kept in float32"
            np.testing.assert_allclose(low_weights[name], value, atol=5e-3, err_msg=name)
