"""The conformance suite every backend plugin runs.

A plugin inherits :class:`BackendConformance` in one of its test files and supplies
a ``backend`` fixture (usually in its ``conftest.py``) returning its Backend::

    # plugins/foo_backend/tests/conftest.py
    @pytest.fixture(scope="session")
    def backend():
        return zoo_core.plugins.create_backend("foo", "cpu")

    # plugins/foo_backend/tests/test_conformance.py
    class TestFooConformance(BackendConformance):
        pass

Tests that need a capability (e.g. ``"finetune"``) skip when the backend's spec
lacks it; the ``capabilities`` fixture reads the registered spec, and a plugin may
override it.  Everything runs on tiny shapes (:func:`tiny_config`) in seconds.
The numbers are pinned by :func:`zoo_core.testing.reference.reference_logits`, and
distillation's by :func:`zoo_core.testing.distill_reference.reference_distill_losses`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import pytest

from zoo_core.backend import (
    Backend,
    Batch,
    Converter,
    Distiller,
    DistillSpec,
    Exporter,
    FineTuner,
    TrainSpec,
    WidthSpec,
    WidthTrainer,
    implemented_capabilities,
)
from zoo_core.dropout import dropout_masks
from zoo_core.errors import CheckpointError, ModelError
from zoo_core.models.config import BertConfig
from zoo_core.models.student import projection_init
from zoo_core.models.weights import Weights, canonical_shapes, init_weights, is_no_decay
from zoo_core.plugins import get_backend_spec
from zoo_core.testing.distill_reference import reference_distill_losses
from zoo_core.testing.parallel import DataParallelConformance
from zoo_core.testing.reference import reference_forward, reference_logits
from zoo_core.testing.width_reference import reference_importance, reference_width_losses, task_loss
from zoo_core.trainers import Training, make_distill_trainer, make_width_trainer

CLS, SEP = 2, 3  # tiny_batch's special tokens; 0 is padding


def tiny_config(**overrides: Any) -> BertConfig:
    """A 2-layer BERT (hidden 32, 4 heads, FFN 64, vocab 100, 64 positions)."""
    fields: dict[str, Any] = dict(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    fields.update(overrides)
    return BertConfig(**fields)


def regression_config(**overrides: Any) -> BertConfig:
    """:func:`tiny_config` with a one-output regression head."""
    return tiny_config(labels=("score",), problem_type="regression", **overrides)


def tiny_batch(
    seed: int = 0,
    batch_size: int = 4,
    max_len: int = 12,
    vocab_size: int = 100,
    labels: Literal["classification", "regression"] | None = "classification",
    num_labels: int = 2,
) -> Batch:
    """Random sentence pairs ``[CLS] a [SEP] b [SEP]`` of varying length, padded to ``max_len``.

    The first example is ``max_len`` long, the others between ``max_len // 2`` (at
    least 5) and ``max_len``.  Classification labels cycle through every class;
    regression labels are floats in [0, 5].
    """
    rng = np.random.default_rng(seed)
    ids = np.zeros((batch_size, max_len), np.int64)
    token_types = np.zeros_like(ids)
    mask = np.zeros_like(ids)
    lengths = rng.integers(max(5, max_len // 2), max_len + 1, batch_size)
    lengths[0] = max_len
    for i, n in enumerate(lengths):
        sep = int(rng.integers(2, n - 2))  # position of the first [SEP]
        ids[i, :n] = rng.integers(5, vocab_size, n)
        ids[i, [0, sep, n - 1]] = [CLS, SEP, SEP]
        token_types[i, sep + 1 : n] = 1
        mask[i, :n] = 1
    y: np.ndarray | None = None
    if labels == "classification":
        y = rng.permutation(np.arange(batch_size) % num_labels).astype(np.int64)
    elif labels == "regression":
        y = rng.uniform(0.0, 5.0, batch_size).astype(np.float32)
    return Batch(ids, token_types, mask, y, np.arange(batch_size))


def pad_batch(batch: Batch, length: int) -> Batch:
    """The same examples padded (with zeros) to ``length`` positions."""
    extra = length - batch.input_ids.shape[1]

    def pad(a: np.ndarray) -> np.ndarray:
        return np.pad(a, ((0, 0), (0, extra)))

    return replace(
        batch,
        input_ids=pad(batch.input_ids),
        token_type_ids=pad(batch.token_type_ids),
        attention_mask=pad(batch.attention_mask),
    )


def _model(backend: Backend, config: BertConfig, seed: int = 0) -> tuple[Any, Weights]:
    model = backend.build_model(config)
    weights = init_weights(config, seed)
    backend.load_weights(model, weights)
    return model, weights


def _spec(config: BertConfig, **changes: Any) -> TrainSpec:
    return TrainSpec(objective="regression" if config.is_regression else "classification", **changes)


def _fine_tuning(backend: FullBackend, model: Any, spec: TrainSpec) -> Training:
    """``backend``'s fine-tuning trainer for ``model``, stepped by :func:`zoo_core.trainers.train_step`."""
    return Training(backend.make_trainer(model, spec), spec.accumulation_steps, needs_labels=True)


def _distilling(backend: FullBackend, student: Any, teacher: Any, spec: DistillSpec) -> Training:
    """``backend``'s distillation trainer, stepped by the core."""
    return Training(backend.make_distill_trainer(student, teacher, spec), spec.train.accumulation_steps)


def _width_training(backend: FullBackend, student: Any, teacher: Any, spec: WidthSpec) -> Training:
    """``backend``'s width trainer, stepped by the core."""
    return Training(backend.make_width_trainer(student, teacher, spec), spec.train.accumulation_steps)


def _max_change(before: Weights, after: Weights) -> float:
    return max(float(np.abs(after[n] - before[n]).max()) for n in before)


#: configs whose logits must match the numpy reference; a wide init makes attention non-uniform
REFERENCE_CASES = {
    "default": tiny_config(initializer_range=0.2),
    "head-size-12": tiny_config(initializer_range=0.2, attention_head_size=12),
    "relu-2-heads": tiny_config(initializer_range=0.2, hidden_act="relu", num_attention_heads=2),
    "regression": regression_config(initializer_range=0.2),
}

#: dropout off, so a distillation step's losses are a function of the weights alone
NO_DROPOUT: dict[str, Any] = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
#: dropout on at every site, at rates high enough that a wrong mask shows in the loss
DROPOUT: dict[str, Any] = dict(hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.2)


def distill_teacher_config(**overrides: Any) -> BertConfig:
    """The distillation teacher: :func:`tiny_config` (2 layers, hidden 32, 4 heads of 8)."""
    return tiny_config(**overrides)


def distill_student_config(hidden_size: int = 32, **overrides: Any) -> BertConfig:
    """A 1-layer student with the teacher's 4 heads, 6 wide, FFN 48 and ``hidden_size``."""
    fields: dict[str, Any] = dict(num_hidden_layers=1, attention_head_size=6, intermediate_size=48)
    fields.update(overrides)
    return tiny_config(hidden_size=hidden_size, **fields)


def distill_spec(
    stage: Literal["intermediate", "prediction"],
    objective: Literal["classification", "regression"] = "classification",
    layer_map: tuple[int, ...] = (2,),
    **changes: Any,
) -> DistillSpec:
    """A spec for ``stage`` with distinct weights per loss (1, 2, 0.5; 1.5 for logits)."""
    weights = {"embedding": 1.0, "hidden": 2.0, "attention": 0.5, "logits": 1.5}
    fields: dict[str, Any] = dict(
        train=TrainSpec(objective), stage=stage, layer_map=layer_map, loss_weights=weights, temperature=2.0
    )
    fields.update(changes)
    return DistillSpec(**fields)


def width_spec(config: BertConfig, **changes: Any) -> WidthSpec:
    """A spec over widths 1, 0.75 and 0.5 (4, 3 and 2 of 4 heads) with hidden weight 0.5, temperature 2."""
    fields: dict[str, Any] = dict(
        train=TrainSpec("regression" if config.is_regression else "classification"),
        widths=(1.0, 0.75, 0.5),
        loss_weights={"logits": 1.0, "hidden": 0.5},
        temperature=2.0,
    )
    fields.update(changes)
    return WidthSpec(**fields)


class FullBackend(Backend, FineTuner, Distiller, WidthTrainer, Exporter, Converter, Protocol):
    """A backend with every capability: how the tests below are typed (each skips unless declared)."""


class BackendConformance(DataParallelConformance):
    """What every backend must do, number for number; inherit it and supply ``backend``."""

    @pytest.fixture
    def capabilities(self, backend: FullBackend) -> frozenset[str]:
        """The backend's capability flags, from its registered spec."""
        return get_backend_spec(backend.name).capabilities

    @pytest.fixture
    def finetune(self, capabilities: frozenset[str]) -> None:
        """Skips the test unless the backend can fine-tune."""
        if "finetune" not in capabilities:
            pytest.skip("backend lacks the 'finetune' capability")

    @pytest.fixture
    def distill(self, capabilities: frozenset[str]) -> None:
        """Skips the test unless the backend can distil (``make_distill_trainer``)."""
        if "distill" not in capabilities:
            pytest.skip("backend lacks the 'distill' capability")

    @pytest.fixture
    def width(self, capabilities: frozenset[str]) -> None:
        """Skips the test unless the backend can train widths (``importance``, ``make_width_trainer``)."""
        if "width" not in capabilities:
            pytest.skip("backend lacks the 'width' capability")

    @pytest.fixture
    def converts(self, capabilities: frozenset[str]) -> None:
        """Skips the test unless the backend reads and writes its framework's own checkpoints."""
        if "convert" not in capabilities:
            pytest.skip("backend lacks the 'convert' capability")

    @pytest.fixture
    def exports(self, capabilities: frozenset[str]) -> None:
        """Skips the test unless the backend can export ONNX and its native format."""
        if "export" not in capabilities:
            pytest.skip("backend lacks the 'export' capability")

    # ---- the contract ------------------------------------------------------------
    def test_declared_capabilities_are_exactly_those_implemented(self, backend: Backend) -> None:
        """The spec's flags are the capability protocols the backend implements, no more, no fewer."""
        assert isinstance(backend, Backend)
        declared = set(get_backend_spec(backend.name).capabilities)
        implemented = implemented_capabilities(backend)
        assert implemented == declared, f"declared {sorted(declared)} but implemented {sorted(implemented)}"

    # ---- models and weights ------------------------------------------------------
    @pytest.mark.parametrize("config", [tiny_config(labels=("a", "b", "c")), regression_config()])
    def test_build_model_with_head(self, backend: FullBackend, config: BertConfig) -> None:
        model, _ = _model(backend, config)
        logits = backend.predict(model, tiny_batch())
        assert logits.shape == (4, config.num_labels)
        assert logits.dtype == np.float32
        assert np.isfinite(logits).all()

    def test_weights_round_trip_bit_exact(self, backend: FullBackend) -> None:
        config = tiny_config(attention_head_size=6)
        model, weights = _model(backend, config, seed=3)
        dumped = backend.dump_weights(model)
        assert set(dumped) == set(canonical_shapes(config))
        for name, value in weights.items():
            assert dumped[name].dtype == np.float32, name
            np.testing.assert_array_equal(dumped[name], value, err_msg=name)
        dumped["classifier.weight"][:] = 0  # a dump is a copy, not a view of the model
        np.testing.assert_array_equal(
            backend.dump_weights(model)["classifier.weight"], weights["classifier.weight"]
        )

    def test_load_rejects_wrong_shape(self, backend: FullBackend) -> None:
        config = tiny_config()
        model = backend.build_model(config)
        weights = init_weights(config, 0)
        weights["bert.encoder.layer.1.intermediate.dense.weight"] = np.zeros((65, 32), np.float32)
        with pytest.raises(CheckpointError, match=r"bert\.encoder\.layer\.1\.intermediate\.dense\.weight"):
            backend.load_weights(model, weights)

    def test_load_rejects_missing_parameter(self, backend: FullBackend) -> None:
        config = tiny_config()
        weights = init_weights(config, 0)
        del weights["bert.pooler.dense.bias"]
        with pytest.raises(CheckpointError, match="missing"):
            backend.load_weights(backend.build_model(config), weights)

    # ---- the math ----------------------------------------------------------------
    @pytest.mark.parametrize("case", list(REFERENCE_CASES))
    def test_logits_match_reference(self, backend: FullBackend, case: str) -> None:
        config = REFERENCE_CASES[case]
        model, weights = _model(backend, config, seed=1)
        batch = tiny_batch(seed=2, batch_size=5, max_len=16, vocab_size=config.vocab_size)
        expected = reference_logits(weights, config, batch)
        assert np.abs(expected).max() > 0.1, "logits too small for the comparison to mean much"
        np.testing.assert_allclose(backend.predict(model, batch), expected, rtol=0, atol=1e-5)

    def test_unpadded_batch_matches_reference(self, backend: FullBackend) -> None:
        config = REFERENCE_CASES["default"]
        model, weights = _model(backend, config, seed=1)
        batch = tiny_batch(seed=4, max_len=10)
        batch.attention_mask[:] = 1
        np.testing.assert_allclose(
            backend.predict(model, batch), reference_logits(weights, config, batch), rtol=0, atol=1e-5
        )

    def test_padding_does_not_change_logits(self, backend: FullBackend) -> None:
        config = REFERENCE_CASES["default"]
        model, _ = _model(backend, config, seed=1)
        batch = tiny_batch(seed=5, batch_size=6, max_len=12)
        padded = pad_batch(batch, 29)
        padded.input_ids[:, 12:] = 7  # what sits under the mask must not matter either
        np.testing.assert_allclose(backend.predict(model, padded), backend.predict(model, batch), atol=1e-5)

    def test_predict_is_deterministic(self, backend: FullBackend) -> None:
        model, _ = _model(backend, tiny_config(hidden_dropout_prob=0.5, attention_probs_dropout_prob=0.5))
        batch = tiny_batch()
        np.testing.assert_array_equal(backend.predict(model, batch), backend.predict(model, batch))

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
        from zoo_core.runners.loop import LoopPlan, LoopState, run_loop
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

        plan = LoopPlan(
            total_steps=8,
            warmup_steps=0,
            peak_lr=1e-3,
            batch_size=4,
            seed=0,
            logging_steps=1,
            eval_every_steps=2,
            eval_every_epoch=False,
            save_steps=None,
            keep_last=2,
            main_metric=None,  # every evaluation's checkpoint becomes best/
        )
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

    # ---- framework checkpoints (zoo convert) -------------------------------------
    @pytest.mark.usefixtures("converts")
    def test_framework_checkpoint_round_trip_bit_exact(self, backend: FullBackend, tmp_path: Path) -> None:
        config = tiny_config(attention_head_size=6)
        model, weights = _model(backend, config, seed=5)
        path = backend.save_framework_checkpoint(model, tmp_path)
        assert path.is_file() and path.parent == tmp_path
        fresh, _ = _model(backend, config, seed=6)
        backend.load_framework_checkpoint(fresh, path)
        for name, value in backend.dump_weights(fresh).items():
            np.testing.assert_array_equal(value, weights[name], err_msg=name)

    @pytest.mark.usefixtures("converts")
    def test_framework_checkpoint_of_another_shape_is_refused(
        self, backend: FullBackend, tmp_path: Path
    ) -> None:
        model, _ = _model(backend, tiny_config(intermediate_size=48))
        path = backend.save_framework_checkpoint(model, tmp_path)
        other, _ = _model(backend, tiny_config())
        with pytest.raises(CheckpointError, match="intermediate"):
            backend.load_framework_checkpoint(other, path)

    @pytest.mark.usefixtures("converts")
    def test_unreadable_framework_checkpoint_is_a_checkpoint_error(
        self, backend: FullBackend, tmp_path: Path
    ) -> None:
        model, _ = _model(backend, tiny_config())
        path = backend.save_framework_checkpoint(model, tmp_path)
        path.write_bytes(b"not a checkpoint")
        with pytest.raises(CheckpointError, match=str(path.name)):
            backend.load_framework_checkpoint(model, path)

    # ---- export ------------------------------------------------------------------
    @pytest.mark.usefixtures("exports")
    @pytest.mark.parametrize("fmt", ["onnx", "native"])
    def test_export_reproduces_the_model_at_any_shape(
        self, backend: FullBackend, fmt: str, tmp_path: Path
    ) -> None:
        from zoo_core.runners.export import onnx_predictor

        config = REFERENCE_CASES["default"]
        model, _ = _model(backend, config, seed=1)
        example = tiny_batch(seed=7, batch_size=4, max_len=12)
        path = backend.export(model, tmp_path, fmt, example)  # type: ignore[arg-type]
        assert path.is_file() and path.parent == tmp_path
        predict = onnx_predictor(path) if fmt == "onnx" else backend.load_native(path)
        for batch in (
            example,
            tiny_batch(seed=8, batch_size=7, max_len=21),
            tiny_batch(seed=9, batch_size=1),
        ):
            np.testing.assert_allclose(predict(batch), backend.predict(model, batch), rtol=0, atol=1e-5)

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
        ("student_changes", "layer_map", "match"),
        [
            ({"num_attention_heads": 2}, (2,), "heads"),
            ({}, (1, 2), "layer_map"),
            ({}, (0,), "layer_map"),
            ({}, (3,), "layer_map"),
            ({"num_hidden_layers": 2}, (2,), "layer_map"),
        ],
        ids=["head-count", "map-too-long", "map-zero", "map-beyond-teacher", "map-too-short"],
    )
    def test_distill_rejects_models_that_do_not_fit(
        self, backend: FullBackend, student_changes: dict[str, Any], layer_map: tuple[int, ...], match: str
    ) -> None:
        teacher, _ = _model(backend, distill_teacher_config())
        student, _ = _model(backend, distill_student_config(**student_changes))
        with pytest.raises(ModelError, match=match) as info:
            make_distill_trainer(
                backend,
                student,
                teacher,
                distill_spec("intermediate", layer_map=layer_map),
                student_config=distill_student_config(**student_changes),
                teacher_config=distill_teacher_config(),
            )
        assert "\n" not in str(info.value)

    @pytest.mark.usefixtures("distill")
    def test_distill_other_head_count_without_attention_loss(self, backend: FullBackend) -> None:
        teacher, _ = _model(backend, distill_teacher_config())
        student, _ = _model(backend, distill_student_config(num_attention_heads=2))
        spec = distill_spec("intermediate", loss_weights={"embedding": 1.0, "hidden": 1.0})
        out = _distilling(backend, student, teacher, spec).step(tiny_batch(labels=None), lr=1e-3)
        assert np.isfinite(out["loss"]) and out["loss"] == pytest.approx(out["embedding"] + out["hidden"])

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
