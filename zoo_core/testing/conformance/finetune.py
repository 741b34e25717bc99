"""Conformance of capability ``finetune``: training a classifier or regressor (a finetune recipe).

The loss before the update against the numpy reference (dropout under the core's
masks), seeded determinism, the core loop's non-finite guard, resume, clipping, weight
decay, gradient accumulation (also of the ``distill`` and ``width`` trainers), the
checks :func:`zoo_core.trainers.make_trainer` runs, and the trainer's saved state.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest

from zoo_core.backend import Batch, TrainSpec
from zoo_core.dropout import dropout_masks
from zoo_core.errors import CheckpointError, DataError, ModelError
from zoo_core.models.config import BertConfig
from zoo_core.models.weights import is_no_decay
from zoo_core.testing.conformance.helpers import (
    DROPOUT,
    NO_DROPOUT,
    ConformanceBase,
    FullBackend,
    _distilling,
    _fine_tuning,
    _max_change,
    _model,
    _spec,
    _width_training,
    distill_spec,
    loop_plan,
    pad_batch,
    regression_config,
    tiny_batch,
    tiny_config,
    width_spec,
)
from zoo_core.testing.reference import reference_forward
from zoo_core.testing.width_reference import task_loss
from zoo_core.trainers import make_trainer


class FineTuneConformance(ConformanceBase):
    """Fine-tuning: each test skips unless the backend declares ``finetune``."""

    # ---- training ----------------------------------------------------------------
    @pytest.mark.usefixtures("finetune")
    @pytest.mark.parametrize(
        "config", [tiny_config(), regression_config()], ids=["classification", "regression"]
    )
    def test_training_reduces_loss(self, backend: FullBackend, config: BertConfig) -> None:
        model, _ = _model(backend, config)
        kind: Literal["classification", "regression"] = (
            "regression" if config.is_regression else "classification"
        )
        batch = tiny_batch(seed=1, batch_size=8, labels=kind)
        trainer = _fine_tuning(backend, model, _spec(config))
        losses = [trainer.step(batch, lr=1e-2)["loss"] for _ in range(20)]
        assert all(np.isfinite(losses))
        assert np.mean(losses[-3:]) < 0.5 * losses[0], losses

    @pytest.mark.usefixtures("finetune")
    @pytest.mark.parametrize("regression", [False, True], ids=["classification", "regression"])
    @pytest.mark.parametrize("dropout", [False, True], ids=["no-dropout", "dropout"])
    def test_loss_matches_reference(self, backend: FullBackend, regression: bool, dropout: bool) -> None:
        """The loss before the update; with dropout, under the core's masks (:mod:`zoo_core.dropout`)."""
        rates = DROPOUT if dropout else NO_DROPOUT
        config = (
            regression_config(initializer_range=0.2, **rates)
            if regression
            else tiny_config(labels=("a", "b", "c"), initializer_range=0.2, **rates)
        )
        model, weights = _model(backend, config, seed=2)
        batch = tiny_batch(
            seed=3, batch_size=6, labels="regression" if regression else "classification", num_labels=3
        )
        batch = replace(batch, step=7, indices=np.arange(100, 100 + len(batch)))
        assert batch.labels is not None
        spec = _spec(config, seed=13)
        masks = dropout_masks(config, batch, spec.seed)
        assert (masks is not None) == dropout
        logits = reference_forward(weights, config, batch, masks).logits
        if regression:  # mean squared error on the single output
            expected = float(np.mean((logits[:, 0] - batch.labels) ** 2))
        else:  # mean cross-entropy
            shifted = logits - logits.max(axis=1, keepdims=True)
            log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
            expected = float(-np.mean(log_probs[np.arange(len(batch)), batch.labels]))
        if dropout:  # the masks must matter, or the comparison proves nothing
            assert expected != pytest.approx(float(task_loss(weights, config, batch)), rel=1e-3)
        loss = _fine_tuning(backend, model, spec).step(pad_batch(batch, 17), lr=1e-3)["loss"]
        assert loss == pytest.approx(expected, rel=1e-5, abs=1e-6)

    @pytest.mark.usefixtures("finetune")
    def test_seeded_training_is_deterministic(self, backend: FullBackend) -> None:
        config = tiny_config()
        batch = tiny_batch(seed=1, batch_size=8)
        runs = []
        for _ in range(2):
            model, _ = _model(backend, config)
            trainer = _fine_tuning(backend, model, _spec(config, seed=11))
            losses = [trainer.step(batch, lr=1e-3)["loss"] for _ in range(3)]
            runs.append((losses, backend.dump_weights(model)))
        assert runs[0][0] == runs[1][0]
        for name, value in runs[0][1].items():
            np.testing.assert_array_equal(runs[1][1][name], value, err_msg=name)

    @pytest.mark.usefixtures("finetune")
    def test_nonfinite_loss_stops_the_loop_keeping_best(self, backend: FullBackend, tmp_path: Path) -> None:
        """NaN labels in step 5's batch: the core loop's guard names step 5; best/ keeps step 4's model."""
        from rich.console import Console

        from zoo_core.checkpoint import open_model_dir, write_checkpoint
        from zoo_core.errors import TrainingError
        from zoo_core.models.catalog import BUNDLED_VOCAB
        from zoo_core.runners.loop import LoopState, run_loop
        from zoo_core.runners.progress import TrainingProgress
        from zoo_core.runs import RunDir

        config = regression_config()
        model, _ = _model(backend, config)
        trainer = _fine_tuning(backend, model, _spec(config))
        made = {"batches": 0}

        def make_batch(indices: np.ndarray) -> Batch:
            made["batches"] += 1
            batch = tiny_batch(seed=made["batches"], batch_size=len(indices), labels="regression")
            if made["batches"] == 5:
                batch = replace(batch, labels=np.full(len(indices), np.nan, np.float32))
            return batch

        def save_checkpoint(target: Path, state: LoopState, metrics: dict[str, float]) -> None:
            def extra(tmp: Path) -> None:
                trainer.save_state(tmp)
                state.save(tmp)

            weights = backend.dump_weights(model)
            write_checkpoint(target, config, weights, BUNDLED_VOCAB, {"step": state.step}, extra=extra)

        # main_metric None: every evaluation's checkpoint becomes best/
        plan = loop_plan(8, batch_size=4, logging_steps=1, eval_every_steps=2, keep_last=2)
        rundir = RunDir(tmp_path / "run")
        rundir.path.mkdir()
        with (
            TrainingProgress(Console(quiet=True), plan.total_steps, "nan", enabled=False) as progress,
            pytest.raises(
                TrainingError, match=r"^step 5: (loss|grad_norm) is nan; stopping\. best/ keeps step 4's"
            ),
        ):
            run_loop(
                plan=plan,
                lengths=np.full(32, 12),
                make_batch=make_batch,
                trainer=trainer,
                evaluate=dict,
                save_checkpoint=save_checkpoint,
                portable_files=("config.json", "model.safetensors", "vocab.txt", "zoo.json"),
                rundir=rundir,
                progress=progress,
                state=LoopState(),
            )
        best = open_model_dir(rundir.best_dir)
        assert best.meta["step"] == 4
        assert all(np.isfinite(value).all() for value in best.load_weights().values())
        assert [step for step, _ in rundir.step_checkpoints()] == [2, 4]

    @pytest.mark.usefixtures("finetune")
    def test_resume_matches_uninterrupted_run(self, backend: FullBackend, tmp_path: Path) -> None:
        config = tiny_config()
        batches = [tiny_batch(seed=s, batch_size=8) for s in range(4)]
        model, _ = _model(backend, config)
        trainer = _fine_tuning(backend, model, _spec(config, seed=5))
        for batch in batches[:2]:
            trainer.step(batch, lr=1e-3)
        trainer.save_state(tmp_path)
        saved = backend.dump_weights(model)
        expected = [trainer.step(batch, lr=1e-3)["loss"] for batch in batches[2:]]

        resumed, _ = _model(backend, config, seed=99)
        backend.load_weights(resumed, saved)
        trainer = _fine_tuning(backend, resumed, _spec(config, seed=5))
        trainer.load_state(tmp_path)
        got = [trainer.step(batch, lr=1e-3)["loss"] for batch in batches[2:]]
        # the second loss depends on the restored Adam moments and step count
        np.testing.assert_allclose(got, expected, rtol=1e-6)
        for name, value in backend.dump_weights(model).items():
            np.testing.assert_allclose(backend.dump_weights(resumed)[name], value, atol=1e-6, err_msg=name)

    @pytest.mark.usefixtures("finetune")
    def test_grad_norm_and_clipping(self, backend: FullBackend) -> None:
        config = tiny_config()
        batch = tiny_batch(seed=1, batch_size=8)
        lr = 1e-3
        results = {}
        for max_norm in (None, 1e-10):
            model, weights = _model(backend, config)
            trainer = _fine_tuning(backend, model, _spec(config, max_grad_norm=max_norm, weight_decay=0.0))
            out = trainer.step(batch, lr=lr)
            results[max_norm] = out["grad_norm"], _max_change(weights, backend.dump_weights(model))
        (norm, free_change), (clipped_norm, clipped_change) = results[None], results[1e-10]
        assert np.isfinite(norm) and norm > 1e-3
        assert clipped_norm == pytest.approx(norm, rel=1e-5), "grad_norm is the norm before clipping"
        assert free_change > 0.5 * lr  # Adam's first step moves weights by about lr
        # clipped to 1e-10, every gradient entry is far below adam_eps: the step all but vanishes
        assert clipped_change < 0.011 * lr

    @pytest.mark.usefixtures("finetune")
    def test_weight_decay_skips_biases_and_layer_norms(self, backend: FullBackend) -> None:
        config = tiny_config()
        model, weights = _model(backend, config)
        # gradients clipped to nothing, so the step is weight decay alone: w *= 1 - lr * wd
        trainer = _fine_tuning(backend, model, _spec(config, max_grad_norm=1e-12, weight_decay=0.1))
        trainer.step(tiny_batch(), lr=0.1)
        after = backend.dump_weights(model)
        for name, before in weights.items():
            factor = 1.0 if is_no_decay(name) else 0.99
            np.testing.assert_allclose(after[name], before * factor, rtol=0, atol=2e-5, err_msg=name)

    @pytest.mark.parametrize("kind", ["finetune", "distill", "width"])
    def test_gradient_accumulation_matches_the_whole_batch(
        self, backend: FullBackend, capabilities: frozenset[str], kind: str
    ) -> None:
        """k micro-batches (sizes 8, 4+4, 3+3+2) make the update of the whole batch.

        Exact for losses that are per-example means: the task loss, the prediction
        stage's logits loss, DynaBERT's logits loss (hidden weight 0).
        """
        if kind not in capabilities:
            pytest.skip(f"backend lacks the {kind!r} capability")
        config = tiny_config(**NO_DROPOUT)
        batch = tiny_batch(seed=4, batch_size=8, max_len=14)
        runs = []
        for steps in (1, 2, 3):
            train = TrainSpec("classification", accumulation_steps=steps)
            student, _ = _model(backend, config, seed=2)
            trainer: Any
            if kind == "finetune":
                trainer = _fine_tuning(backend, student, train)
            elif kind == "distill":
                teacher, _ = _model(backend, config, seed=1)
                spec = distill_spec("prediction", layer_map=(1, 2), train=train)
                trainer = _distilling(backend, student, teacher, spec)
            else:
                teacher, _ = _model(backend, config, seed=1)
                spec_w = width_spec(config, loss_weights={"logits": 1.0, "hidden": 0.0}, train=train)
                trainer = _width_training(backend, student, teacher, spec_w)
            losses = [trainer.step(batch, lr=1e-3)["loss"] for _ in range(2)]
            runs.append((losses, backend.dump_weights(student)))
        (losses, weights), *others = runs
        for other_losses, other_weights in others:
            assert other_losses == pytest.approx(losses, rel=1e-5)
            for name, value in weights.items():
                np.testing.assert_allclose(other_weights[name], value, rtol=0, atol=1e-5, err_msg=name)

    @pytest.mark.usefixtures("finetune")
    def test_training_batch_needs_labels(self, backend: FullBackend) -> None:
        config = tiny_config()
        trainer = make_trainer(backend, _model(backend, config)[0], config, _spec(config))
        with pytest.raises(DataError, match="needs labels"):
            trainer.step(tiny_batch(labels=None), lr=1e-3)

    @pytest.mark.usefixtures("finetune")
    def test_regression_needs_one_output(self, backend: FullBackend) -> None:
        config = tiny_config()
        with pytest.raises(ModelError, match="one output"):
            make_trainer(backend, _model(backend, config)[0], config, TrainSpec("regression"))

    @pytest.mark.usefixtures("finetune")
    def test_load_state_from_nowhere_is_a_checkpoint_error(
        self, backend: FullBackend, tmp_path: Path
    ) -> None:
        """Resuming from a directory without the trainer's state names it, as a CheckpointError."""
        config = tiny_config()
        trainer = _fine_tuning(backend, _model(backend, config)[0], _spec(config))
        with pytest.raises(CheckpointError) as info:
            trainer.load_state(tmp_path)
        assert str(tmp_path) in str(info.value)

    @pytest.mark.usefixtures("finetune")
    def test_corrupt_trainer_state_is_a_one_line_checkpoint_error(
        self, backend: FullBackend, tmp_path: Path
    ) -> None:
        """Every file ``save_state`` wrote, overwritten with garbage: ``load_state`` says so in one line."""
        config = tiny_config()
        trainer = _fine_tuning(backend, _model(backend, config)[0], _spec(config))
        trainer.step(tiny_batch(), lr=1e-3)
        trainer.save_state(tmp_path)
        written = [p for p in tmp_path.iterdir() if p.is_file()]
        assert written, "save_state wrote nothing"
        for path in written:
            path.write_bytes(b"\x80garbage, not a state file\n" * 3)
        fresh = _fine_tuning(backend, _model(backend, config)[0], _spec(config))
        with pytest.raises(CheckpointError) as info:
            fresh.load_state(tmp_path)
        assert str(tmp_path) in str(info.value) and "\n" not in str(info.value)
