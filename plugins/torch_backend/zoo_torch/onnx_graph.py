"""Surgery on the ONNX graph torch's exporter writes, before zoo saves it.

torch's dynamo exporter records a shape for every intermediate value (``graph.value_info``)
from the one trace it made, e.g. a ``[2, ...]`` batch where the graph says ``batch``.  The
graph itself is dynamic and right, but tools that trust the recorded shapes fail:
onnxruntime's quantizer stops with ``Inferred shape and existing shape differ in
dimension 0``.  ``value_info`` is optional (a cache of what shape inference can recompute),
so zoo drops it.
"""

from __future__ import annotations

from pathlib import Path


def drop_value_info(path: Path) -> None:
    """Remove every intermediate shape record from the ONNX file at ``path`` (inputs, outputs stay)."""
    import onnx

    proto = onnx.load(str(path))
    del proto.graph.value_info[:]
    onnx.save(proto, str(path))
