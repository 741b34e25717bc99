"""MindSpore's fp16: the model's low-precision matmuls, both modes, every trainer, resuming.

Loss scaling itself (undone exactly, overflowed steps skipped) and a fine-tuning step
against fp32 are the conformance suite's (:mod:`zoo_core.testing.conformance.precision`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import mindspore as ms
import numpy as np
import pytest
from zoo_mindspore.model import batch_tensors

from zoo_core.backend import TrainSpec
from zoo_core.models.weights import init_weights
from zoo_core.plugins import create_backend, get_backend_spec
from zoo_core.precision import LossScaleSpec
from zoo_core.testing import tiny_batch, tiny_config
from zoo_core.testing.conformance.helpers import (
    DROPOUT,
    distill_spec,
    distill_student_config,
    distill_teacher_config,
    width_spec,
)
from zoo_core.trainers import Training, make_distill_trainer, make_trainer, make_width_trainer


def test_precisions_are_declared() -> None:
    """fp16 on every device; bf16 not on CPU (MindSpore's CPU MatMul has no bfloat16 kernel)."""
    spec = get_backend_spec("mindspore")
    assert spec.precisions_on("cpu") == ("fp32", "fp16")
    assert spec.precisions_on("gpu") == spec.precisions_on("ascend") == ("fp32", "bf16", "fp16")


def test_each_precision_maps_to_the_matmul_dtype_on_any_device() -> None:
    """What a GPU or Ascend run would be given (checked without the device)."""
    from zoo_mindspore.model import compute_dtype

    assert compute_dtype("fp32") is None
    assert compute_dtype("fp16") == ms.float16 and compute_dtype("bf16") == ms.bfloat16


def test_fp16_matmuls_are_half_and_the_rest_float32() -> None:
    """``compute=float16`` changes the logits a little (the matmuls round), returns float32, keeps weights."""
    backend = create_backend("mindspore", "cpu")
    config = tiny_config(initializer_range=0.2)
    model = backend.build_model(config)
    backend.load_weights(model, init_weights(config, 0))
    model.set_train(False)
    inputs = batch_tensors(tiny_batch(seed=1, batch_size=4))
    full = model(*inputs)[0]
    half, hidden, scores = model(*inputs, None, True, True, None, None, ms.float16)
    assert half.dtype == hidden[-1].dtype == scores[0].dtype == ms.float32
    assert not np.array_equal(half.asnumpy(), full.asnumpy())
    np.testing.assert_allclose(half.asnumpy(), full.asnumpy(), atol=2e-2)
    assert all(p.dtype == ms.float32 for p in model.get_parameters())


def _fp16(train: TrainSpec, **changes: Any) -> TrainSpec:
    return replace(train, precision="fp16", loss_scale=LossScaleSpec(), **changes)


def _run(kind: str, mode: str, precision: str) -> tuple[list[dict[str, float]], dict[str, np.ndarray]]:
    """Three steps of ``kind`` (dropout on, two micro-batches) in ``mode`` and ``precision``."""
    backend = create_backend("mindspore", "cpu")
    train = TrainSpec("classification", seed=3, accumulation_steps=2, options={"mode": mode})
    if precision == "fp16":
        train = _fp16(train)
    batches = [tiny_batch(seed=s, batch_size=8) for s in range(3)]
    training: Training
    if kind == "finetune":
        config = tiny_config(initializer_range=0.2, **DROPOUT)
        model = backend.build_model(config)
        backend.load_weights(model, init_weights(config, 5))
        training = make_trainer(backend, model, config, train)
    elif kind == "distill":
        teacher_config = distill_teacher_config(initializer_range=0.2)
        config = distill_student_config(hidden_size=24, initializer_range=0.2, **DROPOUT)
        teacher, model = backend.build_model(teacher_config), backend.build_model(config)
        backend.load_weights(teacher, init_weights(teacher_config, 1))
        backend.load_weights(model, init_weights(config, 2))
        spec = distill_spec("intermediate", train=train)
        training = make_distill_trainer(
            backend, model, teacher, spec, student_config=config, teacher_config=teacher_config
        )
    else:
        config = tiny_config(initializer_range=0.2, **DROPOUT)
        teacher, model = backend.build_model(config), backend.build_model(config)
        backend.load_weights(teacher, init_weights(config, 1))
        backend.load_weights(model, init_weights(config, 1))
        spec = width_spec(config, train=train)
        training = make_width_trainer(
            backend, model, teacher, spec, student_config=config, teacher_config=config
        )
    outs = [training.step(b if kind == "finetune" else replace(b, labels=None), lr=1e-3) for b in batches]
    return outs, backend.dump_weights(model)


@pytest.mark.parametrize("kind", ["distill", "width"])
def test_fp16_distill_and_width_steps_are_close_to_fp32(kind: str) -> None:
    """The teacher and the student in fp16, with micro-batches and the dynamic scale: close to fp32."""
    reference, weights = _run(kind, "graph", "fp32")
    low, low_weights = _run(kind, "graph", "fp16")
    assert [o["skipped"] for o in low] == [0.0, 0.0, 0.0]
    assert [o["loss_scale"] for o in low] == [2.0**16] * 3
    for want, got in zip(reference, low, strict=True):
        assert set(got) == {*want, "skipped", "loss_scale"}
        for name, value in want.items():
            assert got[name] == pytest.approx(value, rel=5e-3, abs=1e-5), name
    assert any(got["loss"] != want["loss"] for want, got in zip(reference, low, strict=True))
    for name, value in weights.items():
        assert low_weights[name].dtype == np.float32
        np.testing.assert_allclose(low_weights[name], value, atol=5e-3, err_msg=name)


def test_fp16_graph_and_pynative_steps_agree() -> None:
    """fp16 runs compiled (the default) and eagerly: the same first step, close after.

    The first step's loss and norm are equal: both modes run the same fp16 kernels.  The
    updates then differ in the last bits (fp32 too: the compiled AdamW rounds otherwise),
    which Adam magnifies on near-zero gradients and fp16's rounding carries on.
    """
    graph, graph_weights = _run("finetune", "graph", "fp16")
    eager, eager_weights = _run("finetune", "pynative", "fp16")
    assert graph[0] == eager[0]
    for want, got in zip(eager, graph, strict=True):
        assert got == pytest.approx(want, rel=2e-3)
    for name, value in eager_weights.items():
        np.testing.assert_allclose(graph_weights[name], value, atol=5e-3, err_msg=name)


def test_fp16_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    """Optimizer state and the scaler's state restored: the same steps, skips and scales as without a stop.

    The scale doubles after every good step from 2^14, so fp16's backward overflows right
    after the stop (twice, backing the scale off): the resumed run must skip the same steps.
    """
    backend = create_backend("mindspore", "cpu")
    config = tiny_config(initializer_range=0.2, **DROPOUT)
    scaling = LossScaleSpec(init_scale=2.0**14, growth_interval=1)
    spec = replace(
        TrainSpec("classification", seed=3, accumulation_steps=2), precision="fp16", loss_scale=scaling
    )
    batches = [tiny_batch(seed=s, batch_size=8) for s in range(8)]

    def trained(state: tuple[Path, dict[str, Any], dict[str, np.ndarray]] | None, todo: list[Any]) -> Any:
        model = backend.build_model(config)
        backend.load_weights(model, init_weights(config, 5) if state is None else state[2])
        training = make_trainer(backend, model, config, spec)
        assert training.scaler is not None
        if state is not None:
            training.load_state(state[0])
            training.scaler.restore(state[1])
        return training, model, [training.step(b, lr=1e-3) for b in todo]

    training, model, first = trained(None, batches[:4])
    training.save_state(tmp_path)
    assert training.scaler is not None
    state = (tmp_path, training.scaler.state(), backend.dump_weights(model))
    expected = [training.step(b, lr=1e-3) for b in batches[4:]]
    _, resumed, got = trained(state, batches[4:])
    before, after = ([o["skipped"] for o in part] for part in (first, expected))
    # the scale grown by four good steps overflows the first two steps after the stop
    assert (before, after) == ([0.0] * 4, [1.0, 1.0, 0.0, 0.0])
    assert got == expected
    for name, value in backend.dump_weights(model).items():
        np.testing.assert_array_equal(backend.dump_weights(resumed)[name], value, err_msg=name)
