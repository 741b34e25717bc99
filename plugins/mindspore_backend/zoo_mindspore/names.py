"""The map between MindSpore parameter names and zoo's canonical (Hugging Face) names.

:class:`zoo_mindspore.model.BertForSequenceClassification` mirrors Hugging Face's module
tree, so only the last name component differs, where MindSpore's own cells name their
parameters differently:

==========================================  ==========================================
MindSpore                                   canonical
==========================================  ==========================================
``...word_embeddings.embedding_table``       ``...word_embeddings.weight``
``...LayerNorm.gamma``                      ``...LayerNorm.weight``
``...LayerNorm.beta``                       ``...LayerNorm.bias``
``...dense.weight`` / ``.bias`` (nn.Dense)  the same (``[out, in]``, as torch)
==========================================  ==========================================

Layouts are identical on both sides, so a map of names is the whole conversion.
This module imports no mindspore.
"""

from __future__ import annotations

#: the last name component of a MindSpore parameter -> its canonical one
_TO_CANONICAL = {"embedding_table": "weight", "gamma": "weight", "beta": "bias"}


def to_canonical(name: str) -> str:
    """The canonical name of the MindSpore parameter ``name`` (a path in the cell tree)."""
    head, _, last = name.rpartition(".")
    return f"{head}.{_TO_CANONICAL.get(last, last)}"


def to_mindspore(name: str) -> str:
    """The MindSpore parameter name (cell path) of the canonical parameter ``name``."""
    head, _, last = name.rpartition(".")
    component = head.rpartition(".")[2]
    if component == "LayerNorm":
        last = {"weight": "gamma", "bias": "beta"}.get(last, last)
    elif component.endswith("_embeddings") and last == "weight":
        last = "embedding_table"
    return f"{head}.{last}"
