"""``train.precision`` in the core: the scaler's rule, the accumulation loop, recipes, refusals, resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import RecipeWriter, one_error_line
from zoo_core.backend import Batch
from zoo_core.checkpoint import open_model_dir
from zoo_core.cli.main import app
from zoo_core.errors import RecipeError
from zoo_core.precision import LossScaler, LossScaleSpec, loss_scale_spec
from zoo_core.recipes.loader import load_recipe
from zoo_core.testing import tiny_batch
from zoo_core.trainers import Training, train_step

runner = CliRunner()


# ---- the scaler's rule (torch.amp.GradScaler's) ------------------------------------------


def test_the_scale_backs_off_on_overflow_and_grows_after_an_interval() -> None:
    scaler = LossScaler(LossScaleSpec(init_scale=8.0, growth_interval=3))
    history = []
    for overflowed in (False, False, True, False, False, False, False, True):
        scaler.update(overflowed)
        history.append((scaler.scale, scaler.good_steps))
    assert history == [(8, 1), (8, 2), (4, 0), (4, 1), (4, 2), (8, 0), (8, 1), (4, 0)]


def test_a_fixed_scale_never_moves_and_state_round_trips() -> None:
    fixed = LossScaler(LossScaleSpec(dynamic=False, init_scale=128.0))
    for overflowed in (True, False, True):
        fixed.update(overflowed)
    assert fixed.scale == 128.0
    scaler = LossScaler(LossScaleSpec(init_scale=2.0**16, growth_interval=2))
    scaler.update(True)
    scaler.update(False)
    again = LossScaler(LossScaleSpec(init_scale=2.0**16, growth_interval=2))
    again.restore(json.loads(json.dumps(scaler.state())))
    assert (again.scale, again.good_steps) == (2.0**15, 1)


# ---- the one accumulation loop -------------------------------------------------------------


class RecordingTrainer:
    """A trainer without a framework: records the weights it was given; its loss is 0.5 per example."""

    def __init__(self, overflow: bool = False) -> None:
        self.weights: list[float] = []
        self.overflow = overflow
        self.kept = 0.0

    def backward(self, batch: Batch, weight: float, sync: bool) -> None:
        self.weights.append(weight)
        self.kept += 0.5 * weight

    def apply(self, lr: float, loss_scale: float | None = None) -> dict[str, float]:
        out = {"loss": self.kept, "grad_norm": float("inf") if self.overflow else 1.0}
        self.kept = 0.0
        if loss_scale is not None:
            out["skipped"] = 1.0 if self.overflow else 0.0
        return out

    def save_state(self, directory: Path) -> None: ...

    def load_state(self, directory: Path) -> None: ...


def test_the_loop_scales_every_micro_batch_and_divides_the_losses_back() -> None:
    trainer = RecordingTrainer()
    scaler = LossScaler(LossScaleSpec(init_scale=1024.0))
    out = train_step(trainer, tiny_batch(batch_size=4), lr=1e-3, accumulation_steps=2, scaler=scaler)
    assert trainer.weights == [512.0, 512.0]  # each micro-batch's share (1/2) times the scale
    assert out == {"loss": 0.5, "grad_norm": 1.0, "skipped": 0.0, "loss_scale": 1024.0}
    assert (scaler.scale, scaler.good_steps) == (1024.0, 1)


def test_an_overflow_is_reported_and_backs_the_scale_off() -> None:
    scaler = LossScaler(LossScaleSpec(init_scale=1024.0))
    out = Training(RecordingTrainer(overflow=True), scaler=scaler).step(tiny_batch(), lr=1e-3)
    assert out["skipped"] == 1.0 and out["loss_scale"] == 1024.0 and scaler.scale == 512.0


def test_without_a_scaler_nothing_changes() -> None:
    trainer = RecordingTrainer()
    assert train_step(trainer, tiny_batch(), lr=1e-3) == {"loss": 0.5, "grad_norm": 1.0}
    assert trainer.weights == [1.0]


# ---- recipes ----------------------------------------------------------------------------------


def test_recipe_fields_map_to_the_loss_scale(write_recipe: RecipeWriter) -> None:
    def spec(**train: Any) -> LossScaleSpec | None:
        return loss_scale_spec(load_recipe(write_recipe(train={"max_steps": 2, **train})).train)

    assert spec() is None and spec(precision="bf16") is None
    assert spec(precision="fp16") == LossScaleSpec()
    assert spec(precision="fp16", loss_scale=512) == LossScaleSpec(dynamic=False, init_scale=512.0)
    assert spec(precision="fp16", loss_scale="none") == LossScaleSpec(dynamic=False, init_scale=1.0)
    grown = spec(precision="fp16", loss_scaling={"init_scale": 8, "growth_interval": 10})
    assert grown == LossScaleSpec(init_scale=8.0, growth_interval=10)


@pytest.mark.parametrize(
    ("train", "where"),
    [
        ({"precision": "fp8"}, "train.precision"),
        ({"loss_scale": "auto"}, "train.loss_scale"),
        ({"loss_scaling": {"backoff_factor": 2}}, "train.loss_scaling.backoff_factor"),
    ],
)
def test_bad_precision_settings_name_the_field(
    write_recipe: RecipeWriter, train: dict[str, Any], where: str
) -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe(write_recipe(train={"max_steps": 2, **train}))
    assert where in str(info.value)


def test_a_precision_the_backend_lacks_is_refused_before_anything_runs(write_recipe: RecipeWriter) -> None:
    path = write_recipe(train={"max_steps": 2, "precision": "bf16"})
    result = runner.invoke(app, ["validate", str(path), "--backend", "paddle"])
    assert result.exit_code == 2
    assert "train.precision: backend 'paddle' cannot train in bf16 on cpu (it can: fp32)" in result.output
    ran = runner.invoke(app, ["run", str(path), "--backend", "paddle", "-q"])
    assert ran.exit_code == 2
    assert one_error_line(ran).endswith("cannot train in bf16 on cpu (it can: fp32)")
    assert not (path.parent / "runs" / "tiny").exists()


# ---- runs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_a_low_precision_run_trains_and_keeps_float32_checkpoints(
    write_recipe: RecipeWriter, precision: str
) -> None:
    path = write_recipe(train={"precision": precision})
    assert runner.invoke(app, ["run", str(path), "-q"]).exit_code == 0
    run = path.parent / "runs" / "tiny"
    weights = open_model_dir(run / "best").load_weights()
    assert all(value.dtype == np.float32 for value in weights.values())
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses and all(np.isfinite(losses))
    state = json.loads((run / "checkpoints" / "step-0000006" / "trainer_state.json").read_text())
    assert (state["loss_scale"] is not None) == (precision == "fp16")


def test_an_fp16_run_resumes_with_its_loss_scale(
    write_recipe: RecipeWriter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Interrupted after step 4 and resumed: the same weights and scale as a straight run (it moves)."""
    train = {"max_steps": 8, "precision": "fp16", "loss_scaling": {"init_scale": 64, "growth_interval": 3}}
    path = write_recipe(train=train, eval={"every_steps": 4}, checkpoints={"save_steps": 2, "keep_last": 4})
    straight = runner.invoke(app, ["run", str(path), "-q", "--set", f"output_dir={tmp_path / 'straight'}"])
    assert straight.exit_code == 0, straight.output
    original, calls = Training.step, {"n": 0}

    def step(self: Training, batch: Any, lr: float) -> dict[str, float]:
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return original(self, batch, lr)

    with monkeypatch.context() as patch:
        patch.setattr(Training, "step", step)
        assert runner.invoke(app, ["run", str(path), "-q"]).exit_code == 130
    assert runner.invoke(app, ["run", str(path), "-q"]).exit_code == 0
    run = path.parent / "runs" / "tiny"
    for step_dir in ("step-0000006", "step-0000008"):
        want = json.loads(
            (tmp_path / "straight" / "checkpoints" / step_dir / "trainer_state.json").read_text()
        )
        got = json.loads((run / "checkpoints" / step_dir / "trainer_state.json").read_text())
        assert got["loss_scale"] == want["loss_scale"]
    assert want["loss_scale"] == {"scale": 256.0, "good_steps": 2}  # grew after steps 3 and 6
    expected = open_model_dir(tmp_path / "straight" / "checkpoints" / "step-0000008").load_weights()
    got_weights = open_model_dir(run / "checkpoints" / "step-0000008").load_weights()
    for name, value in expected.items():
        np.testing.assert_allclose(got_weights[name], value, rtol=0, atol=1e-6, err_msg=name)


def test_plan_counts_half_width_activations_and_a_weight_copy_in_low_precision() -> None:
    from zoo_core.plan import plan_memory
    from zoo_core.testing import tiny_config

    fp32, bf16 = (plan_memory(tiny_config(), 32, 64, precision=p) for p in ("fp32", "bf16"))
    assert bf16.activations * 2 == fp32.activations
    assert bf16.weights == fp32.weights * 3 // 2  # fp32 master weights + a 2-byte autocast copy
    assert (bf16.gradients, bf16.optimizer) == (fp32.gradients, fp32.optimizer)


def test_a_run_whose_every_step_overflows_stops_in_one_line(tmp_path: Path) -> None:
    """Non-finite at any scale (bad data): after MAX_SKIPPED_IN_A_ROW skipped steps the loop stops."""
    from rich.console import Console

    from zoo_core.errors import TrainingError
    from zoo_core.runners.loop import MAX_SKIPPED_IN_A_ROW, LoopState, run_loop
    from zoo_core.runners.progress import TrainingProgress
    from zoo_core.runs import RunDir
    from zoo_core.testing.conformance.helpers import loop_plan

    plan = loop_plan(MAX_SKIPPED_IN_A_ROW + 10, logging_steps=10)
    training = Training(RecordingTrainer(overflow=True), scaler=LossScaler(LossScaleSpec()))
    quiet = TrainingProgress(Console(quiet=True), plan.total_steps, "test", enabled=False)
    with quiet as progress, pytest.raises(TrainingError) as info:
        run_loop(
            plan=plan,
            lengths=np.full(400, 5),
            make_batch=lambda indices: tiny_batch(batch_size=len(indices)),
            trainer=training,
            evaluate=dict,
            save_checkpoint=lambda *_: None,
            portable_files=(),
            rundir=RunDir(tmp_path / "run", writer=False),
            progress=progress,
            state=LoopState(),
        )
    message = str(info.value)
    assert message.startswith(
        f"step {MAX_SKIPPED_IN_A_ROW}: {MAX_SKIPPED_IN_A_ROW} steps in a row overflowed"
    )
    assert "nothing was saved" in message and "\n" not in message
