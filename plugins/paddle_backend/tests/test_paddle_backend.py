"""Paddle-specific behaviour: devices, MKL, to_static, saved state.

Options, the plugin's cheap import and a missing optimizer state are the conformance
suite's (:mod:`zoo_core.testing.conformance.core`, :mod:`~zoo_core.testing.conformance.finetune`).
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import paddle
import pytest
from zoo_paddle import env
from zoo_paddle.backend import PaddleBackend, paddle_place
from zoo_paddle.optimizer import OPTIMIZER_FILE, STEP_FILE

from zoo_core.backend import Backend, Batch, TrainSpec
from zoo_core.errors import CheckpointError, DataError, DeviceUnavailableError, RecipeError
from zoo_core.models.config import BertConfig
from zoo_core.models.weights import init_weights
from zoo_core.plugins import create_backend, get_backend_spec
from zoo_core.testing import tiny_batch, tiny_config
from zoo_core.testing.conformance import (
    DROPOUT,
    NO_DROPOUT,
    distill_spec,
    distill_student_config,
    distill_teacher_config,
)
from zoo_core.trainers import train_step

# ---- devices -----------------------------------------------------------------------------


@pytest.mark.skipif(paddle.device.cuda.device_count() > 0, reason="this machine has a CUDA GPU")
def test_missing_gpu_is_a_device_error() -> None:
    with pytest.raises(DeviceUnavailableError, match="'gpu'"):
        create_backend("paddle", "gpu")


@pytest.mark.skipif("npu" in paddle.device.get_all_custom_device_type(), reason="this machine has an NPU")
def test_missing_ascend_is_a_device_error() -> None:
    with pytest.raises(DeviceUnavailableError, match="paddle-custom-npu"):
        paddle_place("ascend")


def test_unknown_device_is_a_device_error() -> None:
    with pytest.raises(DeviceUnavailableError, match="supports: cpu, gpu, ascend"):
        paddle_place("tpu")  # type: ignore[arg-type]


# ---- MKL on AMD ----------------------------------------------------------------------------


def test_mkl_variable_is_set_on_amd_only_when_unset() -> None:
    environ: dict[str, str] = {}
    assert env.prepare_paddle_env(environ, amd=True)
    assert environ == {"MKL_DEBUG_CPU_TYPE": "5"}
    user = {"MKL_DEBUG_CPU_TYPE": "4"}
    assert not env.prepare_paddle_env(user, amd=True)
    assert user == {"MKL_DEBUG_CPU_TYPE": "4"}  # the user's choice wins
    intel: dict[str, str] = {}
    assert not env.prepare_paddle_env(intel, amd=False)
    assert intel == {}


def test_cpu_vendor_is_read_from_cpuinfo(tmp_path: Path) -> None:
    amd, intel = tmp_path / "amd", tmp_path / "intel"
    amd.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\n")
    intel.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\n")
    assert env.is_amd_cpu(amd) and not env.is_amd_cpu(intel)
    assert not env.is_amd_cpu(tmp_path / "missing")


# ---- to_static ---------------------------------------------------------------------------


def _eager_and_static_losses(
    backend: Backend, config: BertConfig, batches: list[Batch], lr: float
) -> list[list[float]]:
    """The step losses of ``batches`` from the same start, eager then ``to_static``."""
    runs = []
    for to_static in (False, True):
        model = backend.build_model(config)
        backend.load_weights(model, init_weights(config, 0))
        spec = TrainSpec("classification", options={"to_static": to_static, "threads": 1})
        trainer = backend.make_trainer(model, spec)
        runs.append([train_step(trainer, b, lr=lr)["loss"] for b in batches])
    return runs


def test_to_static_trains_as_eager(backend: Backend) -> None:
    batches = [tiny_batch(seed=s, batch_size=4, max_len=8 + s) for s in range(3)]
    eager, static = _eager_and_static_losses(backend, tiny_config(**NO_DROPOUT), batches, lr=1e-3)
    np.testing.assert_allclose(static, eager, rtol=1e-5)


def test_to_static_drops_as_eager(backend: Backend) -> None:
    """The masks are inputs of the static program: each step's own, not the first call's."""
    batch = tiny_batch(seed=1, batch_size=4, max_len=10)
    batches = [replace(batch, step=step, indices=np.arange(4) + step) for step in range(3)]
    # lr 0: only the masks change from step to step
    eager, static = _eager_and_static_losses(backend, tiny_config(**DROPOUT), batches, lr=0.0)
    assert len(set(eager)) == len(batches)
    np.testing.assert_allclose(static, eager, rtol=1e-5)


def test_to_static_with_accumulation_is_refused(backend: Backend) -> None:
    model = backend.build_model(tiny_config())
    spec = TrainSpec("classification", options={"to_static": True}, accumulation_steps=2)
    with pytest.raises(
        RecipeError, match=r"to_static: cannot be combined with train.gradient_accumulation_steps = 2"
    ):
        backend.make_trainer(model, spec)


def test_to_static_distills_as_eager(backend: Backend) -> None:
    teacher = backend.build_model(distill_teacher_config(**NO_DROPOUT))
    backend.load_weights(teacher, init_weights(teacher.config, 1))
    batch = tiny_batch(seed=3, batch_size=4, labels=None)
    results = []
    for to_static in (False, True):
        student = backend.build_model(distill_student_config(hidden_size=24, **NO_DROPOUT))
        backend.load_weights(student, init_weights(student.config, 2))
        train = TrainSpec("classification", options={"to_static": to_static, "threads": 1})
        trainer = backend.make_distill_trainer(student, teacher, distill_spec("intermediate", train=train))
        results.append(train_step(trainer, batch, lr=1e-3))
    for name in ("embedding", "hidden", "attention", "loss"):
        assert results[1][name] == pytest.approx(results[0][name], rel=1e-5), name


# ---- saved state ---------------------------------------------------------------------------


def test_optimizer_state_is_keyed_by_structured_names(backend: Backend, tmp_path: Path) -> None:
    config = tiny_config()
    model = backend.build_model(config)
    backend.load_weights(model, init_weights(config, 0))
    trainer = backend.make_trainer(model, TrainSpec("classification"))
    train_step(trainer, tiny_batch(), lr=1e-3)
    trainer.save_state(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [OPTIMIZER_FILE, STEP_FILE]
    state = paddle.load(str(tmp_path / OPTIMIZER_FILE))
    assert "bert.encoder.layers.1.linear2.weight@_moment1_0" in state
    assert not any(key.startswith("linear_") for key in state)  # no process-dependent names


def test_corrupt_optimizer_state_is_a_checkpoint_error(backend: Backend, tmp_path: Path) -> None:
    """(A missing one is the conformance suite's ``test_load_state_from_nowhere_is_a_checkpoint_error``.)"""
    config = tiny_config()
    model = backend.build_model(config)
    trainer = backend.make_trainer(model, TrainSpec("classification"))
    (tmp_path / OPTIMIZER_FILE).write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot restore"):
        trainer.load_state(tmp_path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"steps": "\xff"}', "not UTF-8 text"),
        (b"[3]", "expected a JSON object, got a list"),
        (b'{"steps": -1}', "steps: expected an integer >= 0"),
        (b'{"step": 3}', "no steps field"),
    ],
    ids=["non-utf8", "list", "negative", "missing"],
)
def test_corrupt_step_count_in_saved_state_is_a_one_line_error(
    backend: Backend, tmp_path: Path, content: bytes, expected: str
) -> None:
    trainer = backend.make_trainer(backend.build_model(tiny_config()), TrainSpec("classification"))
    trainer.save_state(tmp_path)
    (tmp_path / STEP_FILE).write_bytes(content)
    where = re.escape(str(tmp_path / STEP_FILE))
    with pytest.raises(
        CheckpointError, match=rf"^{where}(:1)?: cannot restore the optimizer state: "
    ) as info:
        trainer.load_state(tmp_path)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_backend_is_built_for_cpu() -> None:
    backend = PaddleBackend("cpu", {"threads": 1})
    assert (backend.name, backend.device, backend.rank, backend.world_size) == ("paddle", "cpu", 0, 1)


def test_width_is_a_capability_and_importance_needs_labels(backend: Backend) -> None:
    assert "width" in get_backend_spec("paddle").capabilities
    model = backend.build_model(tiny_config())
    with pytest.raises(DataError, match="labelled batch"):
        backend.importance(model, tiny_batch(labels=None))
