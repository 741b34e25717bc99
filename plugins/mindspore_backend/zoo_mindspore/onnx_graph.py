"""Surgery on the ONNX graph MindSpore's exporter writes: a static trace made dynamic.

MindSpore 2.10's ONNX exporter can only write a graph traced at one static shape (see
:mod:`zoo_mindspore.export`).  The trace is made at a *marker* shape whose batch size and
length occur nowhere else in the graph's shapes (:func:`marker_shape`); :func:`make_dynamic`
then replaces every marker number in a Reshape target by the runtime batch size and
length, the constant position ids by ``Range(0, T)``, and declares the axes dynamic.
"""

from __future__ import annotations

import itertools

import numpy as np
import onnx
from onnx import helper, numpy_helper

from zoo_core.backend import Batch
from zoo_core.errors import ExportError
from zoo_core.models.config import BertConfig


def marker_shape(config: BertConfig) -> tuple[int, int]:
    """The ``(batch, length)`` to trace the ONNX graph at: two numbers no other shape uses.

    Both differ from each other, from 1 and from every size a Reshape target can hold
    (hidden size, heads, head size, attention width, FFN size, labels), so
    :func:`make_dynamic` can tell the batch and length apart from everything else.  The
    length is at least 3 (``arange(2)`` = ``[0, 1]`` is too common to mark anything) and
    fits the position table.
    """
    taken = {
        1,
        config.hidden_size,
        config.num_attention_heads,
        config.head_size,
        config.num_attention_heads * config.head_size,
        config.intermediate_size,
        config.num_labels,
    }
    free = (n for n in itertools.count(3) if n not in taken)
    length, batch = next(free), next(free)
    if length > config.max_position_embeddings:
        raise ExportError(
            f"cannot export a model with max_position_embeddings={config.max_position_embeddings} "
            "to ONNX: no free sequence length to trace at"
        )
    return batch, length


def marker_batch(config: BertConfig, batch: int, length: int) -> Batch:
    """A random batch of the marker shape to trace with (every token real)."""
    rng = np.random.default_rng(0)
    ids = rng.integers(0, config.vocab_size, (batch, length))
    types = rng.integers(0, config.type_vocab_size, (batch, length))
    return Batch(ids, types, np.ones((batch, length), np.int64))


def make_dynamic(proto: onnx.ModelProto, batch: int, length: int) -> onnx.ModelProto:
    """``proto``, traced at the marker shape ``(batch, length)``, rewritten for any shape.

    Every Reshape target holding ``batch`` or ``length`` is computed from
    ``Shape(input_ids)`` instead, the constant ``arange(length)`` (the position ids)
    becomes ``Range(0, sequence)``, and inputs and output get symbolic ``batch`` and
    ``sequence`` axes.  Raises :class:`ExportError` when the graph has none of what is
    rewritten (MindSpore traced something else than expected).
    """
    graph = proto.graph
    constants: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    ids = graph.input[0].name
    prelude = [
        helper.make_node("Shape", [ids], ["zoo_shape"]),
        helper.make_node("Slice", ["zoo_shape", "zoo_0", "zoo_1"], ["zoo_batch"]),
        helper.make_node("Slice", ["zoo_shape", "zoo_1", "zoo_2"], ["zoo_length"]),
        helper.make_node("Squeeze", ["zoo_length"], ["zoo_length_scalar"], axes=[0]),
        helper.make_node("Range", ["zoo_0_scalar", "zoo_length_scalar", "zoo_1_scalar"], ["zoo_positions"]),
    ]
    extra = [
        numpy_helper.from_array(np.array([0], np.int64), "zoo_0"),
        numpy_helper.from_array(np.array([1], np.int64), "zoo_1"),
        numpy_helper.from_array(np.array([2], np.int64), "zoo_2"),
        numpy_helper.from_array(np.array(0, np.int64), "zoo_0_scalar"),
        numpy_helper.from_array(np.array(1, np.int64), "zoo_1_scalar"),
    ]
    replaced: dict[str, str] = {}  # constant name -> the name of its dynamic replacement

    def dynamic_shape(name: str, target: np.ndarray) -> str:
        """A Concat of static pieces and the runtime batch/length, for Reshape target ``target``."""
        pieces: list[str] = []
        for k, value in enumerate(target.tolist()):
            if value == batch:
                pieces.append("zoo_batch")
            elif value == length:
                pieces.append("zoo_length")
            else:
                piece = f"zoo_static_{len(extra)}_{k}"
                extra.append(numpy_helper.from_array(np.array([value], np.int64), piece))
                pieces.append(piece)
        out = f"zoo_dynamic_{len(replaced)}"
        prelude.append(helper.make_node("Concat", pieces, [out], axis=0))
        return out

    def positions(name: str, dtype: np.dtype) -> str:
        """The runtime ``arange(sequence)`` in ``dtype``."""
        out = f"zoo_positions_{len(replaced)}"
        to = helper.np_dtype_to_tensor_dtype(dtype)
        prelude.append(helper.make_node("Cast", ["zoo_positions"], [out], to=to))
        return out

    arange = np.arange(length)
    reshapes = ranges = 0
    for node in graph.node:
        for k, name in enumerate(node.input):
            value = constants.get(name)
            if value is None or value.dtype.kind not in "iu" or value.ndim != 1:
                continue
            if node.op_type == "Reshape" and k == 1 and (np.isin(value, (batch, length)).any()):
                if name not in replaced:
                    replaced[name] = dynamic_shape(name, value)
                node.input[k] = replaced[name]
                reshapes += 1
            elif value.shape == arange.shape and (value == arange).all():
                if name not in replaced:
                    replaced[name] = positions(name, value.dtype)
                node.input[k] = replaced[name]
                ranges += 1
    if not reshapes or not ranges:
        raise ExportError(
            "MindSpore's ONNX graph does not have the expected shape constants "
            f"({reshapes} batch/length reshapes, {ranges} position ranges): cannot make it dynamic"
        )
    nodes = prelude + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(extra)
    _prune(graph)
    del graph.value_info[:]
    for graph_input in graph.input:
        dims = graph_input.type.tensor_type.shape.dim
        dims[0].dim_param, dims[1].dim_param = "batch", "sequence"
    graph.output[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        detail = (str(exc).strip().splitlines() or ["invalid"])[0]
        raise ExportError(f"the rewritten ONNX graph is invalid: {detail}") from exc
    return proto


def _prune(graph: onnx.GraphProto) -> None:
    """Drop the Constant nodes and initializers nothing reads any more."""
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    keep = [n for n in graph.node if n.op_type != "Constant" or n.output[0] in used]
    del graph.node[:]
    graph.node.extend(keep)
    inits = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(inits)
