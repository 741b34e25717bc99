"""zoo's canonical parameter names and layouts <-> torch's (imports no torch).

Canonical names and layouts are Hugging Face's (``zoo_core.models.weights``), and
:class:`zoo_torch.model.BertForSequenceClassification` is laid out module for module as
``transformers``' ``BertForSequenceClassification``: every name and every layout
(``nn.Linear`` weights ``[out, in]``) is already canonical, so both directions are the
identity.  The module exists so that every backend plugin has the same shape (paddle and
mindspore rename); ``tests/test_torch_model.py`` checks the names against transformers.
"""

from __future__ import annotations


def torch_name(canonical: str) -> str:
    """The torch parameter name of canonical parameter ``canonical``: the same name."""
    return canonical


def to_canonical(name: str) -> str:
    """The canonical name of torch parameter ``name``: the same name."""
    return name
