"""``train.precision`` on paddle: what each device is declared to run, and the options autocast gets.

Paddle autocasts only on CUDA, XPU and custom devices (Ascend), so these tests check,
without the device, what a GPU or Ascend run would pass to ``paddle.amp.auto_cast``; the
loss-scale semantics themselves run on CPU in the conformance suite.
"""

from __future__ import annotations

import pytest
from zoo_paddle.model import amp_options

from zoo_core.plugins import get_backend_spec


def test_precisions_are_declared_per_device() -> None:
    spec = get_backend_spec("paddle")
    assert spec.precisions_on("cpu") == ("fp32",)
    assert spec.precisions_on("gpu") == spec.precisions_on("ascend") == ("fp32", "bf16", "fp16")


@pytest.mark.parametrize(
    ("precision", "options"),
    [
        ("fp16", {"enable": True, "level": "O1", "dtype": "float16"}),
        ("bf16", {"enable": True, "level": "O1", "dtype": "bfloat16"}),
        ("fp32", {"enable": False, "level": "O1", "dtype": "float16"}),
    ],
)
def test_each_precision_maps_to_paddle_autocast_options(precision: str, options: dict[str, object]) -> None:
    assert amp_options(precision) == options
