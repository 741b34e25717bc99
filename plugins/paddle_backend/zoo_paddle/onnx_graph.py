"""Surgery on the ONNX graph paddle2onnx writes: the contract's output name, no dead weights.

paddle2onnx names the output after paddle's last variable and leaves a few initializers
no node reads; zoo's ONNX contract wants the output called
:data:`~zoo_core.backend.EXPORT_OUTPUT`, and onnxruntime warns about every unused
initializer.
"""

from __future__ import annotations

from zoo_core.errors import ExportError


def rename_output(proto: object, name: str) -> None:
    """Rename the single graph output of ONNX model ``proto`` (and every use of it) to ``name``."""
    graph = proto.graph  # type: ignore[attr-defined]
    if len(graph.output) != 1:
        raise ExportError(f"expected one ONNX output, found {len(graph.output)}")
    old = graph.output[0].name
    if old == name:
        return
    for node in graph.node:
        node.output[:] = [name if o == old else o for o in node.output]
        node.input[:] = [name if i == old else i for i in node.input]
    graph.output[0].name = name


def drop_unused_initializers(proto: object) -> None:
    """Remove initializers no node reads (paddle2onnx leaves a few; onnxruntime warns about each)."""
    graph = proto.graph  # type: ignore[attr-defined]
    if any(a.HasField("g") or len(a.graphs) for node in graph.node for a in node.attribute):
        return  # subgraphs may read outer initializers; leave the model as it is
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    unused = [t for t in graph.initializer if t.name not in used]
    for tensor in unused:
        graph.initializer.remove(tensor)
