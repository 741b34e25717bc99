"""The core's FLOPs formula (zoo_core.flops) against torch's own count of the torch model's work.

``torch.utils.flop_counter.FlopCounterMode`` counts the FLOPs of every matmul-like op
torch runs (``mm``, ``addmm``, ``bmm``, the fused attention kernels), forward and backward,
and nothing else, which is the core's definition.  On a tiny model's training forward
and backward (the explicit attention path the dropout masks select, as training takes)
the two agree exactly on torch 2.13 (the tests allow 1%).  What differs elsewhere:

* nothing in the explicit path: the formula takes the backward as 2x the forward, and
  torch's autograd computes every matmul's two gradients, including the input gradient
  of the first layer (the embeddings are trained);
* the fused ``scaled_dot_product_attention`` path (inference, or training without
  dropout) runs CPU kernels torch's counter has no formula for
  (``aten._scaled_dot_product_flash_attention_for_cpu`` and its backward, torch 2.13), so
  torch counts none of attention's matmuls there; for the GPU kernels it counts the
  scores' recomputation in the backward (5 attention matmuls instead of 4), which the
  formula does not;
* neither counts the embeddings, LayerNorm, softmax, GELU or the optimizer.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode
from zoo_torch.backend import TorchBackend
from zoo_torch.model import BertForSequenceClassification, batch_inputs, training_inputs
from zoo_torch.width import at_width

from zoo_core.backend import Batch, TrainSpec, WidthSpec
from zoo_core.flops import forward_flops, training_flops, width_step
from zoo_core.models.config import BertConfig
from zoo_core.models.weights import init_weights

CONFIG = BertConfig(
    vocab_size=200, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128
)
B, T = 4, 16


@pytest.fixture(scope="module")
def model() -> BertForSequenceClassification:
    backend = TorchBackend("cpu")
    model = backend.build_model(CONFIG)
    backend.load_weights(model, init_weights(CONFIG, 0))
    return model


def padded_batch() -> Batch:
    """``B`` sequences, the longest ``T`` tokens, the others shorter (padding included)."""
    lengths = np.array([T, 12, 9, 5])
    mask = (np.arange(T)[None, :] < lengths[:, None]).astype(np.int64)
    ids = np.random.default_rng(0).integers(1, CONFIG.vocab_size, (B, T)) * mask
    return Batch(ids, np.zeros_like(ids), mask, np.array([0, 1, 1, 0]), np.arange(B), step=3)


def counted(run: object) -> int:
    """torch's FLOP count of calling ``run()``."""
    with FlopCounterMode(display=False) as counter:
        run()  # type: ignore[operator]
    return int(counter.get_total_flops())


def test_forward_matches_torchs_count(model: BertForSequenceClassification) -> None:
    batch = padded_batch()
    inputs = training_inputs(batch, torch.device("cpu"), CONFIG, seed=1)
    assert "dropout" in inputs  # the explicit attention path, as in training

    def forward() -> None:
        with torch.no_grad():
            model(**inputs)

    assert counted(forward) == pytest.approx(forward_flops(CONFIG, B, T), rel=0.01)


def test_forward_and_backward_match_torchs_count(model: BertForSequenceClassification) -> None:
    batch = padded_batch()
    inputs = training_inputs(batch, torch.device("cpu"), CONFIG, seed=1)
    labels = torch.from_numpy(batch.labels)  # type: ignore[arg-type]

    def step() -> None:
        model.zero_grad()
        F.cross_entropy(model(**inputs).logits, labels).backward()

    torch_count = counted(step)
    formula = training_flops(CONFIG, B, T)
    assert torch_count == pytest.approx(formula, rel=0.01), (torch_count, formula)


def test_each_width_matches_torchs_count(model: BertForSequenceClassification) -> None:
    batch = padded_batch()
    inputs = training_inputs(batch, torch.device("cpu"), CONFIG, seed=1)
    labels = torch.from_numpy(batch.labels)  # type: ignore[arg-type]
    step = width_step(CONFIG, CONFIG, WidthSpec(TrainSpec("classification"), widths=(1.0, 0.75, 0.5)))
    for width, sliced in zip((1.0, 0.75, 0.5), step.students, strict=True):

        def train(width: float = width) -> None:
            model.zero_grad()
            with at_width(model, width):
                F.cross_entropy(model(**inputs).logits, labels).backward()

        assert counted(train) == pytest.approx(training_flops(sliced, B, T), rel=0.01), width


def test_fused_attention_is_what_torchs_count_differs_on(model: BertForSequenceClassification) -> None:
    """Without dropout the model takes ``scaled_dot_product_attention``, which torch counts otherwise.

    On CPU it runs ``aten._scaled_dot_product_flash_attention_for_cpu`` (and its backward),
    ops torch 2.13's counter has no formula for: it counts none of attention's matmuls,
    forward or backward.  Were they registered like the GPU kernels', the backward would
    count a recomputation of the scores (5 attention matmuls instead of 4).  Either way
    the rest of the step agrees exactly.
    """
    batch = padded_batch()
    inputs = batch_inputs(batch, torch.device("cpu"))
    labels = torch.from_numpy(batch.labels)  # type: ignore[arg-type]

    def step() -> None:
        model.zero_grad()
        F.cross_entropy(model(**inputs).logits, labels).backward()

    torch_count, formula = counted(step), training_flops(CONFIG, B, T)
    # one attention matmul (Q·Kᵀ or probs·V) of every layer, forward
    matmul = CONFIG.num_hidden_layers * 2 * B * T * T * CONFIG.hidden_size
    uncounted = formula - 3 * 2 * matmul  # the two matmuls, forward and backward (2x)
    recomputed = formula + matmul
    assert torch_count in (uncounted, recomputed), (torch_count, formula)
