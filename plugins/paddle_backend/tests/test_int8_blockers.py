"""Why there is no Paddle-native INT8 export (README, "INT8"): Paddle 3.3's own blockers.

Each test shows one of them still holds on the installed Paddle, so an upgrade that fixes
it fails here and says the route is worth trying again:

* the static post-training quantizer (``PostTrainingQuantization``, which PaddleSlim's
  ``quant_post_static`` wraps) reads only the pre-PIR ``ProgramDesc``; the PIR inference
  model that ``paddle.jit.save`` writes (``model.json``) is refused;
* PIR's ``dequantize_linear`` kernel quantizes again instead of dequantizing, so a model
  saved from ``paddle.quantization.PTQ`` computes garbage.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import paddle
import pytest
from paddle import _C_ops, nn
from paddle.static import InputSpec
from paddle.static.quantization import PostTrainingQuantization


def test_static_ptq_refuses_a_pir_inference_model(tmp_path: Path) -> None:
    """``PostTrainingQuantization`` asserts on the PIR program it loads from ``model.json``."""
    layer = nn.Linear(4, 2)
    layer.eval()
    paddle.jit.save(layer, str(tmp_path / "model"), input_spec=[InputSpec([None, 4], "float32", "x")])
    assert (tmp_path / "model.json").is_file()

    def feeds() -> Iterator[dict[str, np.ndarray]]:
        yield {"x": np.ones((2, 4), np.float32)}

    paddle.enable_static()
    try:
        ptq = PostTrainingQuantization(
            executor=paddle.static.Executor(paddle.CPUPlace()),
            model_dir=str(tmp_path),
            model_filename="model.json",
            params_filename="model.pdiparams",
            data_loader=feeds,
            batch_nums=1,
            quantizable_op_type=["matmul_v2", "mul", "matmul"],
        )
        with pytest.raises(AssertionError):  # framework._get_var: isinstance(program, Program)
            ptq.quantize()
    finally:
        paddle.disable_static()


def test_pir_dequantize_linear_quantizes() -> None:
    """Quantize then dequantize (scale 28, 8 bits) should give the input back, roughly; it does not."""
    x = np.array([1.0, -2.0, 14.0, 28.0], np.float32)
    paddle.enable_static()
    try:
        main = paddle.static.Program()
        with paddle.static.program_guard(main):
            value = paddle.static.data("x", [4], "float32")
            scale, zero = paddle.full([1], 28.0), paddle.full([1], 0.0)
            accum, state = paddle.full([1], 0.0), paddle.full([1], 0.0)
            attrs = (-1, 8, -127, 127, 0, True, False)  # axis, bits, qmin, qmax, round, is_test, observer
            quantized = _C_ops.quantize_linear(value, scale, zero, accum, state, *attrs)[0]
            restored = _C_ops.dequantize_linear(quantized, scale, zero, accum, state, *attrs)[0]
        q, r = paddle.static.Executor(paddle.CPUPlace()).run(
            main, feed={"x": x}, fetch_list=[quantized, restored]
        )
    finally:
        paddle.disable_static()
    np.testing.assert_array_equal(q, [5, -9, 64, 127])  # round(x / 28 * 127): quantizing is right
    # dequantizing should give q * 28 / 127 = [1.1, -2.0, 14.1, 28]; Paddle 3.3.1 quantizes q again
    np.testing.assert_array_equal(r, [23, -41, 127, 127])
