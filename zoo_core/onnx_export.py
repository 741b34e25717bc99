"""BERT as one ONNX graph, written from the canonical weights without any framework.

:func:`write_onnx` builds the graph node by node with ``onnx.helper``, so every backend's
export can be the same file.  The graph follows the op pattern of Hugging Face's
TorchScript export, the one onnxruntime's BERT optimizer (``onnxruntime.transformers``)
recognises, so :func:`optimize_onnx` fuses it into onnxruntime's kernels:

* embeddings: ``Gather`` of the word, token-type and position tables (position ids
  ``Slice``\\ d from a ``[1, max_positions]`` constant up to the input's length), two
  ``Add`` and a ``LayerNormalization`` -> ``EmbedLayerNormalization``;
* attention: ``MatMul`` + ``Add`` for Q, K and V, ``Reshape`` to ``[0, 0, heads,
  head_size]`` and ``Transpose`` to heads, ``MatMul`` QK^T, ``Div`` by sqrt(head_size),
  ``Add`` of the additive mask ``(1 - Cast(Unsqueeze(Unsqueeze(mask)))) * finfo.min``,
  ``Softmax``, ``MatMul`` V, ``Transpose``/``Reshape`` back -> ``Attention``;
* residual ``Add`` + ``LayerNormalization`` (twice per layer) -> ``SkipLayerNormalization``;
* GELU as ``x * 0.5 * (1 + erf(x / sqrt 2))`` -> ``Gelu`` (then ``BiasGelu``), the tanh
  approximation (``gelu_new``) -> ``FastGelu``; ``relu`` stays ``Relu``;
* pooler: ``Gather`` of position 0, ``Gemm`` + ``Tanh``; classifier ``Gemm``.

Inputs are :data:`~zoo_core.backend.EXPORT_INPUTS` (int64 ``[batch, sequence]``, both axes
dynamic, sequence up to ``max_position_embeddings``); the output is ``logits``
(float32 ``[batch, num_labels]``).  MatMul weights are stored ``[in, out]`` under the
canonical name plus ``.T``; Gemm, embedding and LayerNorm weights keep their canonical
names and layouts.  A width-sliced config (``heads * head_size != hidden_size``) works:
Q/K/V are ``heads * head_size`` wide.  Needs the ``onnx`` package (and onnxruntime for
:func:`optimize_onnx`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from zoo_core.backend import EXPORT_INPUTS, EXPORT_OUTPUT
from zoo_core.errors import ExportError
from zoo_core.models.config import BertConfig
from zoo_core.models.weights import check_weights

#: LayerNormalization is an ONNX op from opset 17; onnxruntime 1.30 runs up to 23
DEFAULT_OPSET = 17
#: added to the scores of padded keys, as the torch backend does (torch.finfo(float32).min)
MASK_VALUE = float(np.finfo(np.float32).min)
#: the fused operators :func:`optimize_onnx` counts
FUSED_OPS = (
    "EmbedLayerNormalization",
    "Attention",
    "SkipLayerNormalization",
    "LayerNormalization",
    "Gelu",
    "BiasGelu",
    "FastGelu",
)


class _Graph:
    """Nodes and initializers of a graph under construction, with unique readable names."""

    def __init__(self, weights: Mapping[str, np.ndarray], eps: float) -> None:
        self.weights = weights
        self.eps = eps
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._names: set[str] = set()

    def _unique(self, name: str) -> str:
        candidate, n = name, 1
        while candidate in self._names:
            n += 1
            candidate = f"{name}_{n}"
        self._names.add(candidate)
        return candidate

    def const(self, name: str, value: np.ndarray | float | list[int]) -> str:
        """An initializer: float32 for floats, int64 for integers (a Python scalar stays 0-d)."""
        array = np.asarray(value)
        array = array.astype(np.float32 if array.dtype.kind == "f" else np.int64)
        name = self._unique(name)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def weight(self, name: str, transpose: bool = False) -> str:
        """The canonical parameter ``name`` as an initializer (``[in, out]`` as ``name.T``)."""
        value = np.asarray(self.weights[name], np.float32)
        return self.const(f"{name}.T", value.T) if transpose else self.const(name, value)

    def op(self, scope: str, op_type: str, *inputs: str, **attrs: Any) -> str:
        """Append one ``op_type`` node named ``scope/op_type``; return its (only) output."""
        name = self._unique(f"{scope}/{op_type}")
        self.nodes.append(helper.make_node(op_type, list(inputs), [name], name=name, **attrs))
        return name

    def linear(self, scope: str, x: str, module: str) -> str:
        """``x @ W.T + b`` of the Linear ``module`` as MatMul + Add (the pattern the fusions match)."""
        y = self.op(scope, "MatMul", x, self.weight(f"{module}.weight", transpose=True))
        return self.op(scope, "Add", y, self.weight(f"{module}.bias"))

    def gemm(self, scope: str, x: str, module: str) -> str:
        """``x @ W.T + b`` for 2-D ``x`` as one Gemm, the weight in its canonical ``[out, in]`` layout."""
        return self.op(
            scope, "Gemm", x, self.weight(f"{module}.weight"), self.weight(f"{module}.bias"), transB=1
        )

    def layer_norm(self, scope: str, x: str, module: str) -> str:
        """LayerNormalization over the last axis with the LayerNorm ``module``'s weight and bias."""
        gamma, beta = self.weight(f"{module}.weight"), self.weight(f"{module}.bias")
        return self.op(scope, "LayerNormalization", x, gamma, beta, axis=-1, epsilon=self.eps)


def write_onnx(
    config: BertConfig, weights: Mapping[str, np.ndarray], path: Path | str, opset: int = DEFAULT_OPSET
) -> Path:
    """Write the model (``config`` with canonical ``weights``) to ``path`` as one ONNX file.

    The graph is the op pattern onnxruntime's BERT optimizer fuses (module docstring);
    dropout is left out (inference).  ``opset`` must be at least 17 (LayerNormalization).
    Raises :class:`~zoo_core.errors.CheckpointError` when a weight is missing or has the
    wrong shape for ``config``.  Returns ``path``.
    """
    check_weights(weights, config, source="write_onnx")
    model = build_model(config, weights, opset)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))
    return path


def build_model(
    config: BertConfig, weights: Mapping[str, np.ndarray], opset: int = DEFAULT_OPSET
) -> onnx.ModelProto:
    """The ONNX model :func:`write_onnx` saves, in memory (``weights`` are not checked here)."""
    if opset < 17:
        raise ValueError(f"opset {opset}: the graph uses LayerNormalization, which needs opset 17")
    g = _Graph(weights, float(config.layer_norm_eps))
    ids, token_types, mask = EXPORT_INPUTS
    x = _embeddings(g, config, ids, token_types)
    additive_mask = _additive_mask(g, mask)
    for i in range(config.num_hidden_layers):
        x = _layer(g, config, f"bert.encoder.layer.{i}", x, additive_mask)
    first = g.op("bert.pooler", "Gather", x, g.const("bert.pooler.position", 0), axis=1)
    pooled = g.op("bert.pooler", "Tanh", g.gemm("bert.pooler", first, "bert.pooler.dense"))
    g.gemm("classifier", pooled, "classifier")
    g.nodes[-1].output[0] = EXPORT_OUTPUT

    axes = ["batch", "sequence"]
    graph = helper.make_graph(
        g.nodes,
        "bert_for_sequence_classification",
        [helper.make_tensor_value_info(name, TensorProto.INT64, axes) for name in EXPORT_INPUTS],
        [helper.make_tensor_value_info(EXPORT_OUTPUT, TensorProto.FLOAT, ["batch", config.num_labels])],
        g.initializers,
    )
    # the oldest IR version that has the opset, so older onnxruntime releases load the file too
    opsets = [helper.make_opsetid("", opset)]
    return helper.make_model_gen_version(graph, opset_imports=opsets, producer_name="zoo_core")


def _embeddings(g: _Graph, config: BertConfig, ids: str, token_types: str) -> str:
    """(word + token type) + position embeddings, then LayerNorm: Hugging Face's order of additions.

    Position ids are ``position_ids[:, :T]`` of a ``[1, max_positions]`` constant, ``T``
    read from ``Shape(input_ids)``: the path EmbedLayerNormalization's fusion matches.
    """
    scope = "bert.embeddings"
    length = g.op(scope, "Gather", g.op(scope, "Shape", ids), g.const(f"{scope}.sequence_axis", 1))
    end = g.op(scope, "Unsqueeze", length, g.const(f"{scope}.unsqueeze_axes", [0]))
    positions = g.const(f"{scope}.position_ids", np.arange(config.max_position_embeddings)[None, :])
    starts, axes, steps = (
        g.const(f"{scope}.slice_{n}", [v]) for n, v in (("starts", 0), ("axes", 1), ("steps", 1))
    )
    position_ids = g.op(scope, "Slice", positions, starts, end, axes, steps)

    def lookup(table: str, indices: str) -> str:
        return g.op(scope, "Gather", g.weight(f"{scope}.{table}.weight"), indices)

    summed = g.op(scope, "Add", lookup("word_embeddings", ids), lookup("token_type_embeddings", token_types))
    summed = g.op(scope, "Add", summed, lookup("position_embeddings", position_ids))
    return g.layer_norm(scope, summed, f"{scope}.LayerNorm")


def _additive_mask(g: _Graph, mask: str) -> str:
    """``[B, 1, 1, T]``: 0 for real keys, :data:`MASK_VALUE` for padding (the attention fusion's path)."""
    scope = "bert.extended_attention_mask"
    expanded = g.op(scope, "Unsqueeze", mask, g.const(f"{scope}.axes_1", [1]))
    expanded = g.op(scope, "Unsqueeze", expanded, g.const(f"{scope}.axes_2", [2]))
    padding = g.op(
        scope, "Sub", g.const(f"{scope}.one", 1.0), g.op(scope, "Cast", expanded, to=TensorProto.FLOAT)
    )
    return g.op(scope, "Mul", padding, g.const(f"{scope}.value", MASK_VALUE))


def _layer(g: _Graph, config: BertConfig, prefix: str, x: str, additive_mask: str) -> str:
    """One encoder layer: self-attention and FFN, each with a residual Add and LayerNorm."""
    heads, head_size = config.num_attention_heads, config.head_size
    scope = f"{prefix}.attention"
    to_heads = g.const(f"{scope}.heads_shape", [0, 0, heads, head_size])

    def split(name: str, perm: list[int]) -> str:
        projected = g.linear(f"{scope}.self.{name}", x, f"{prefix}.attention.self.{name}")
        return g.op(scope, "Transpose", g.op(scope, "Reshape", projected, to_heads), perm=perm)

    q = split("query", [0, 2, 1, 3])  # [B, heads, T, head_size]
    k = split("key", [0, 2, 3, 1])  # [B, heads, head_size, T]
    v = split("value", [0, 2, 1, 3])
    scores = g.op(
        scope, "Div", g.op(scope, "MatMul", q, k), g.const(f"{scope}.sqrt_head_size", math.sqrt(head_size))
    )
    probs = g.op(scope, "Softmax", g.op(scope, "Add", scores, additive_mask), axis=-1)
    context = g.op(scope, "Transpose", g.op(scope, "MatMul", probs, v), perm=[0, 2, 1, 3])
    context = g.op(scope, "Reshape", context, g.const(f"{scope}.merge_shape", [0, 0, heads * head_size]))
    attended = g.op(scope, "Add", g.linear(f"{scope}.output", context, f"{scope}.output.dense"), x)
    x = g.layer_norm(f"{scope}.output", attended, f"{scope}.output.LayerNorm")

    hidden = g.linear(f"{prefix}.intermediate", x, f"{prefix}.intermediate.dense")
    inner = _activation(g, config.hidden_act, f"{prefix}.intermediate", hidden)
    out = g.op(f"{prefix}.output", "Add", g.linear(f"{prefix}.output", inner, f"{prefix}.output.dense"), x)
    return g.layer_norm(f"{prefix}.output", out, f"{prefix}.output.LayerNorm")


def _activation(g: _Graph, name: str, scope: str, x: str) -> str:
    """``hidden_act`` in the op pattern onnxruntime fuses: Erf GELU, tanh GELU, or Relu."""
    if name == "relu":
        return g.op(scope, "Relu", x)
    half = g.op(scope, "Mul", x, g.const(f"{scope}.half", 0.5))
    if name == "gelu":  # x * 0.5 * (1 + erf(x / sqrt 2))
        erf = g.op(scope, "Erf", g.op(scope, "Div", x, g.const(f"{scope}.sqrt2", math.sqrt(2.0))))
        return g.op(scope, "Mul", half, g.op(scope, "Add", erf, g.const(f"{scope}.one", 1.0)))
    # gelu_new / gelu_pytorch_tanh: x * 0.5 * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 x^3)))
    cube = g.op(scope, "Pow", x, g.const(f"{scope}.three", 3.0))
    inner = g.op(scope, "Add", x, g.op(scope, "Mul", cube, g.const(f"{scope}.coefficient", 0.044715)))
    tanh = g.op(
        scope, "Tanh", g.op(scope, "Mul", inner, g.const(f"{scope}.sqrt_2_over_pi", math.sqrt(2.0 / math.pi)))
    )
    return g.op(scope, "Mul", half, g.op(scope, "Add", tanh, g.const(f"{scope}.one", 1.0)))


def expected_fusions(config: BertConfig) -> dict[str, int]:
    """The :data:`FUSED_OPS` counts of a completely fused ``config`` model.

    One EmbedLayerNormalization; per layer one Attention, two SkipLayerNormalization and,
    for ``gelu``, one BiasGelu (``gelu_new``/``gelu_pytorch_tanh``: FastGelu; ``relu``:
    none); no LayerNormalization left.
    """
    layers = config.num_hidden_layers
    gelu = {"gelu": "BiasGelu", "gelu_new": "FastGelu", "gelu_pytorch_tanh": "FastGelu"}
    expected = dict.fromkeys(FUSED_OPS, 0)
    expected.update(EmbedLayerNormalization=1, Attention=layers, SkipLayerNormalization=2 * layers)
    if config.hidden_act in gelu:
        expected[gelu[config.hidden_act]] = layers
    return expected


def optimize_onnx(src: Path | str, dst: Path | str, config: BertConfig) -> dict[str, int]:
    """Fuse :func:`write_onnx`'s file ``src`` (of ``config``) into onnxruntime's BERT kernels; write ``dst``.

    Runs ``onnxruntime.transformers.optimizer.optimize_model`` (python fusions only,
    ``opt_level=0``, CPU, float32).  The raw attention mask stays the Attention input, so
    any mask (not only right padding) gives the unfused model's logits.  Heads and Q/K/V
    width are read from the graph's Reshape shapes (``num_heads=0, hidden_size=0``), which
    is right for width-sliced models too.  ``dst`` uses ``com.microsoft`` operators: it
    runs on onnxruntime only.  Returns how many of each :data:`FUSED_OPS` ``dst`` holds;
    raises :class:`~zoo_core.errors.ExportError` (and writes nothing) when that is not
    :func:`expected_fusions` (an onnxruntime whose fusions no longer match the graph).
    """
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.use_raw_attention_mask(True)
    optimizer = optimize_model(
        str(src), model_type="bert", optimization_options=options, opt_level=0, use_gpu=False
    )
    found = optimizer.get_fused_operator_statistics()
    counts = {op: int(found.get(op, 0)) for op in FUSED_OPS}
    expected = expected_fusions(config)
    if counts != expected:
        missing = {op: f"{counts[op]} of {n}" for op, n in expected.items() if counts[op] != n}
        raise ExportError(f"{src}: onnxruntime's BERT fusions did not all apply ({missing})")
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    optimizer.save_model_to_file(str(dst))
    return counts
