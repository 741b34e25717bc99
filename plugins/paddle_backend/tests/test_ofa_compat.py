"""zoo_paddle.ofa_compat: paddleslim 2.6.0's OFA layers on Paddle 3.3.

Each patch has a test that fails without it (the super layer cannot be built, or its
forward raises) and one that shows paddleslim's own function is still broken here, so
a Paddle or paddleslim upgrade that fixes it shows up as a failing test.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from types import SimpleNamespace

import numpy as np
import paddle
import pytest
from zoo_paddle import ofa_compat

from zoo_core.errors import BackendError


@pytest.fixture(scope="module")
def ofa() -> SimpleNamespace:
    return ofa_compat.load_ofa()


def _random(shape: list[int], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def test_super_layer_norm_matches_layer_norm(ofa: SimpleNamespace) -> None:
    sup = ofa.SuperLayerNorm(8, epsilon=1e-6)
    ref = paddle.nn.LayerNorm(8, epsilon=1e-6)
    for i, (a, b) in enumerate(((sup.weight, ref.weight), (sup.bias, ref.bias))):
        value = _random([8], i)
        a.set_value(value)
        b.set_value(value)
    x = paddle.to_tensor(_random([2, 3, 8], 5))
    np.testing.assert_allclose(sup(x).numpy(), ref(x).numpy(), rtol=0, atol=1e-6)
    # a narrower input uses the first weights and biases: the "super" in SuperLayerNorm
    narrow = paddle.nn.LayerNorm(5, epsilon=1e-6)
    narrow.weight.set_value(sup.weight[:5])
    narrow.bias.set_value(sup.bias[:5])
    np.testing.assert_allclose(sup(x[:, :, :5]).numpy(), narrow(x[:, :, :5]).numpy(), rtol=0, atol=1e-6)


def test_super_layer_norm_gradients_flow(ofa: SimpleNamespace) -> None:
    sup = ofa.SuperLayerNorm(4)
    x = paddle.to_tensor(_random([3, 4], 1), stop_gradient=False)
    (sup(x) * paddle.to_tensor(_random([3, 4], 2))).sum().backward()
    assert x.grad is not None and sup.weight.grad is not None and sup.bias.grad is not None


def test_super_embedding_matches_embedding(ofa: SimpleNamespace) -> None:
    sup = ofa.SuperEmbedding(10, 6, padding_idx=0, sparse=False)
    assert sup._padding_idx == 0 and sup._sparse is False and sup._max_norm is None
    ref = paddle.nn.Embedding(10, 6, padding_idx=0)
    ref.weight.set_value(sup.weight)
    ids = paddle.to_tensor([[0, 3, 9], [4, 4, 1]])
    np.testing.assert_array_equal(sup(ids).numpy(), ref(ids).numpy())
    np.testing.assert_array_equal(sup(ids, channel=4).numpy(), ref(ids).numpy()[..., :4])


def test_super_embedding_keeps_its_candidate_config(ofa: SimpleNamespace) -> None:
    sup = ofa.SuperEmbedding(10, 8, candidate_config={"expand_ratio": [0.5, 1.0]})
    assert sup.expand_ratio == [0.5, 1.0] and sup.base_output_dim == 8
    assert sup(paddle.to_tensor([[1, 2]]), expand_ratio=0.5).shape == [1, 2, 4]


def test_paddleslims_own_functions_still_break_on_this_paddle(ofa: SimpleNamespace) -> None:
    """Each patch is still needed: paddleslim 2.6.0's own code raises on Paddle 3.3."""
    originals = ofa_compat.ORIGINALS
    assert set(originals) == {"SuperLayerNorm.__init__", "SuperLayerNorm.forward", "SuperEmbedding.__init__"}
    with pytest.raises(TypeError):
        originals["SuperLayerNorm.__init__"](ofa.SuperLayerNorm.__new__(ofa.SuperLayerNorm), 4)
    with pytest.raises(TypeError):
        originals["SuperEmbedding.__init__"](ofa.SuperEmbedding.__new__(ofa.SuperEmbedding), 10, 4)
    with pytest.raises((TypeError, ValueError, RuntimeError)):
        originals["SuperLayerNorm.forward"](ofa.SuperLayerNorm(4), paddle.ones([2, 4]))


def test_patching_is_idempotent(ofa: SimpleNamespace) -> None:
    before = (ofa.SuperLayerNorm.__init__, ofa.SuperLayerNorm.forward, ofa.SuperEmbedding.__init__)
    ofa_compat.apply_patches()
    assert ofa_compat.load_ofa() is ofa
    assert (ofa.SuperLayerNorm.__init__, ofa.SuperLayerNorm.forward, ofa.SuperEmbedding.__init__) == before
    assert ofa_compat.ORIGINALS["SuperLayerNorm.__init__"] is not before[0]


def test_nlp_utils_import_leaves_paddle_nn_alone(
    ofa: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """paddleslim's nlp_utils replaces paddle.nn transformer methods on import; zoo's import undoes it."""
    assert callable(ofa.compute_neuron_head_importance)
    targets = [(getattr(paddle.nn, cls), attr) for cls, attr in ofa_compat._NLP_UTILS_PATCHED]
    before = [getattr(cls, attr) for cls, attr in targets]
    monkeypatch.delitem(sys.modules, ofa_compat._NLP_UTILS)  # import it afresh (put back after)
    fresh = ofa_compat._import_nlp_utils()
    assert callable(fresh.compute_neuron_head_importance)
    assert [getattr(cls, attr) for cls, attr in targets] == before
    # without the undo, the import does patch them (the reason for it)
    monkeypatch.delitem(sys.modules, ofa_compat._NLP_UTILS)
    importlib.import_module(ofa_compat._NLP_UTILS)
    patched = [getattr(cls, attr) for cls, attr in targets]
    for (cls, attr), original in zip(targets, before, strict=True):
        setattr(cls, attr, original)
    assert all(p is not b for p, b in zip(patched, before, strict=True))


def test_versions_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ofa_compat.check_versions() == ofa_compat.PADDLESLIM_VERSION
    real = importlib.metadata.version
    monkeypatch.setattr(
        importlib.metadata, "version", lambda name: "2.5.0" if name == "paddleslim" else real(name)
    )
    with pytest.raises(BackendError, match=r"patches paddleslim 2\.6\.0, found 2\.5\.0"):
        ofa_compat.check_versions()
    monkeypatch.setattr(importlib.metadata, "version", real)
    monkeypatch.setattr(paddle, "__version__", "3.4.0")
    with pytest.warns(RuntimeWarning, match=r"written for paddle 3\.3\.x, found 3\.4\.0"):
        ofa_compat.check_versions()
