"""``zoo plan``: the memory estimate against what torch's autograd actually keeps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner
from zoo_torch.model import BertForSequenceClassification, training_inputs

from tests.conftest import TINY, RecipeWriter
from zoo_core.backend import Batch
from zoo_core.cli.main import app
from zoo_core.models.config import BertConfig
from zoo_core.models.weights import parameter_count
from zoo_core.plan import plan_memory

runner = CliRunner()


def measured_training_memory(config: BertConfig, batch_size: int, seq_len: int) -> tuple[int, int]:
    """(tensor bytes at the peak of one AdamW step, of which activations) as torch accounts them.

    Activations are the tensors autograd saves for backward (``saved_tensors_hooks``), each
    storage counted once and parameters left out; the rest is the parameters, their
    gradients and AdamW's states after the step.
    """
    torch.manual_seed(0)
    model = BertForSequenceClassification(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    rng = np.random.default_rng(0)
    ids = rng.integers(1, config.vocab_size, size=(batch_size, seq_len))
    batch = Batch(ids, np.zeros_like(ids), np.ones_like(ids), indices=np.arange(batch_size))
    inputs = training_inputs(batch, torch.device("cpu"), config, seed=0)  # with the core's dropout masks
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits = model(**inputs).logits
        loss = torch.nn.functional.cross_entropy(logits, torch.zeros(batch_size, dtype=torch.long))
    loss.backward()
    optimizer.step()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    states = sum(
        t.numel() * t.element_size()
        for state in optimizer.state.values()
        for t in state.values()
        if torch.is_tensor(t) and t.dim() > 0
    )
    activations = sum(saved.values())
    return weights + grads + states + activations, activations


@pytest.mark.parametrize(
    ("config", "batch_size", "seq_len"),
    [
        (
            BertConfig(
                vocab_size=2000,
                hidden_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                intermediate_size=256,
            ),
            16,
            32,
        ),
        (
            BertConfig(
                vocab_size=500,
                hidden_size=128,
                num_hidden_layers=2,
                num_attention_heads=2,
                intermediate_size=512,
            ),
            8,
            64,
        ),
    ],
)
def test_estimate_is_within_30_percent_of_the_measured_peak(
    config: BertConfig, batch_size: int, seq_len: int
) -> None:
    measured, activations = measured_training_memory(config, batch_size, seq_len)
    estimate = plan_memory(config, batch_size, seq_len)
    assert estimate.weights == parameter_count(config) * 4
    assert abs(estimate.activations - activations) / activations < 0.3, (estimate.activations, activations)
    assert abs(estimate.total - measured) / measured < 0.3, (estimate.total, measured)


def test_plan_of_each_recipe_kind(write_recipe: RecipeWriter, tmp_path: Path) -> None:
    teacher = write_recipe(name="teacher")
    result = runner.invoke(app, ["plan", str(teacher), "--set", "train.batch_size=64"])
    assert result.exit_code == 0, result.output
    assert (
        f"{parameter_count(TINY.replace(labels=('0', '1'))) / 1e6:.1f} M parameters trained" in result.stdout
    )
    assert "activations (64 x 32 tokens)" in result.stdout and "total" in result.stdout
    width = tmp_path / "w.yaml"
    width.write_text(
        f"kind: width\nname: w\ntask: sst2\nteacher: {teacher}\ndata: {{dir: {tmp_path / 'SST-2'}}}\n"
        "width: {width_mult_list: [1.0, 0.5]}\ntrain: {max_steps: 2}\n"
    )
    result = runner.invoke(app, ["plan", str(width)])
    assert result.exit_code == 0, result.output
    assert "; teacher" in result.stdout and "teacher (weights and outputs)" in result.stdout


def test_plan_of_a_missing_recipe_is_a_one_line_error() -> None:
    result = runner.invoke(app, ["plan", "nosuch_recipe"])
    assert result.exit_code == 2 and "recipe file not found" in result.stderr
