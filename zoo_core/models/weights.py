"""Canonical parameter names and layouts (Hugging Face ``BertForSequenceClassification``).

Every backend loads and dumps weights as ``dict[str, numpy.ndarray]`` keyed by these
names, in these layouts (Linear weights are ``[out, in]``).  Backends map them to
their own names and layouts.  Random initialisation happens here, in numpy, so a
seed gives the same starting weights on every backend.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from zoo_core.errors import CheckpointError
from zoo_core.models.config import BertConfig

Weights = dict[str, np.ndarray]

_LEGACY_SUFFIXES = {".gamma": ".weight", ".beta": ".bias"}


def canonical_shapes(config: BertConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter of the model with its shape, in canonical names and layout."""
    h, ffn = config.hidden_size, config.intermediate_size
    qkv = config.num_attention_heads * config.head_size
    shapes: dict[str, tuple[int, ...]] = {
        "bert.embeddings.word_embeddings.weight": (config.vocab_size, h),
        "bert.embeddings.position_embeddings.weight": (config.max_position_embeddings, h),
        "bert.embeddings.token_type_embeddings.weight": (config.type_vocab_size, h),
        "bert.embeddings.LayerNorm.weight": (h,),
        "bert.embeddings.LayerNorm.bias": (h,),
    }
    for i in range(config.num_hidden_layers):
        p = f"bert.encoder.layer.{i}."
        for proj in ("query", "key", "value"):
            shapes[p + f"attention.self.{proj}.weight"] = (qkv, h)
            shapes[p + f"attention.self.{proj}.bias"] = (qkv,)
        shapes[p + "attention.output.dense.weight"] = (h, qkv)
        shapes[p + "attention.output.dense.bias"] = (h,)
        shapes[p + "attention.output.LayerNorm.weight"] = (h,)
        shapes[p + "attention.output.LayerNorm.bias"] = (h,)
        shapes[p + "intermediate.dense.weight"] = (ffn, h)
        shapes[p + "intermediate.dense.bias"] = (ffn,)
        shapes[p + "output.dense.weight"] = (h, ffn)
        shapes[p + "output.dense.bias"] = (h,)
        shapes[p + "output.LayerNorm.weight"] = (h,)
        shapes[p + "output.LayerNorm.bias"] = (h,)
    shapes["bert.pooler.dense.weight"] = (h, h)
    shapes["bert.pooler.dense.bias"] = (h,)
    shapes["classifier.weight"] = (config.num_labels, h)
    shapes["classifier.bias"] = (config.num_labels,)
    return shapes


def is_no_decay(name: str) -> bool:
    """True for parameters AdamW leaves without weight decay (biases and LayerNorms)."""
    return name.endswith(".bias") or "LayerNorm" in name


def init_weights(config: BertConfig, seed: int) -> Weights:
    """Fresh weights as BERT initialises them (normal(0, initializer_range), LN = 1/0)."""
    rng = np.random.default_rng(seed)
    out: Weights = {}
    for name, shape in canonical_shapes(config).items():
        if name.endswith("LayerNorm.weight"):
            out[name] = np.ones(shape, np.float32)
        elif name.endswith(".bias"):
            out[name] = np.zeros(shape, np.float32)
        else:
            out[name] = rng.normal(0.0, config.initializer_range, shape).astype(np.float32)
    return out


def normalize_names(weights: Mapping[str, np.ndarray]) -> Weights:
    """Bring a Hugging Face state dict to canonical names.

    Accepts ``BertModel`` dumps (no ``bert.`` prefix), legacy ``gamma``/``beta``
    LayerNorm names, and drops buffers such as ``embeddings.position_ids`` and the
    pre-training heads (``cls.*``) of a ``BertForPreTraining`` checkpoint.
    """
    out: Weights = {}
    for name, value in weights.items():
        if name.endswith("position_ids") or name.startswith("cls."):
            continue
        for old, new in _LEGACY_SUFFIXES.items():
            if name.endswith(old):
                name = name[: -len(old)] + new
        if not name.startswith(("bert.", "classifier.")):
            name = "bert." + name
        out[name] = value
    return out


def check_weights(
    weights: Mapping[str, np.ndarray], config: BertConfig, source: str, allow_missing: tuple[str, ...] = ()
) -> list[str]:
    """Check names and shapes against ``config``; return the names that are missing.

    Raises :class:`CheckpointError` naming ``source`` for a shape mismatch, or for a
    missing parameter whose name does not start with one of ``allow_missing``.
    Parameters the config does not know are an error too.
    """
    expected = canonical_shapes(config)
    for name, value in weights.items():
        if name not in expected:
            raise CheckpointError(f"{source}: unexpected parameter {name!r} for this config")
        if tuple(value.shape) != expected[name]:
            raise CheckpointError(
                f"{source}: {name} has shape {tuple(value.shape)} but config.json implies {expected[name]}"
            )
    missing = [n for n in expected if n not in weights]
    bad = [n for n in missing if not n.startswith(allow_missing)]
    if bad:
        raise CheckpointError(f"{source}: missing {len(bad)} parameters, first {bad[0]!r}")
    return missing


def parameter_count(config: BertConfig) -> int:
    """Number of parameters of the model with its classifier head."""
    return int(sum(int(np.prod(s)) for s in canonical_shapes(config).values()))


def complete_from(
    loaded: Mapping[str, np.ndarray], current: Mapping[str, np.ndarray], config: BertConfig, source: str
) -> Weights:
    """``loaded`` checked against ``config``, with a missing pooler or classifier taken from ``current``.

    For backends reading a framework checkpoint (``load_framework_checkpoint``): a
    pretrained model's file has no classifier, and the model keeps the one it has.
    """
    missing = check_weights(loaded, config, source=source, allow_missing=("bert.pooler.", "classifier."))
    return {**{name: current[name] for name in missing}, **loaded}
