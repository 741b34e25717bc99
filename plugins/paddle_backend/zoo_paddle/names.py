"""zoo's canonical parameter names and layouts <-> PaddleNLP's (imports no paddle).

:class:`zoo_paddle.model.BertForSequenceClassification` names its parameters exactly
as PaddleNLP 2.8's ``BertForSequenceClassification`` does
(``bert.encoder.layers.0.self_attn.q_proj.weight``, ``...norm1.weight``, ...), so a
state dict from one loads into the other.  Canonical names are Hugging Face's
(``zoo_core.models.weights``).  Paddle's ``Linear`` stores its weight ``[in, out]``,
the transpose of the canonical ``[out, in]``; embeddings, LayerNorms and biases keep
their layout.
"""

from __future__ import annotations

import re

#: canonical name pattern -> paddle name template, tried in order
_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), template)
    for pattern, template in (
        (r"^bert\.embeddings\.LayerNorm\.(weight|bias)$", r"bert.embeddings.layer_norm.\1"),
        (r"^bert\.embeddings\.(\w+_embeddings)\.weight$", r"bert.embeddings.\1.weight"),
        (
            r"^bert\.encoder\.layer\.(\d+)\.attention\.self\.query\.",
            r"bert.encoder.layers.\1.self_attn.q_proj.",
        ),
        (
            r"^bert\.encoder\.layer\.(\d+)\.attention\.self\.key\.",
            r"bert.encoder.layers.\1.self_attn.k_proj.",
        ),
        (
            r"^bert\.encoder\.layer\.(\d+)\.attention\.self\.value\.",
            r"bert.encoder.layers.\1.self_attn.v_proj.",
        ),
        (
            r"^bert\.encoder\.layer\.(\d+)\.attention\.output\.dense\.",
            r"bert.encoder.layers.\1.self_attn.out_proj.",
        ),
        (r"^bert\.encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.", r"bert.encoder.layers.\1.norm1."),
        (r"^bert\.encoder\.layer\.(\d+)\.intermediate\.dense\.", r"bert.encoder.layers.\1.linear1."),
        (r"^bert\.encoder\.layer\.(\d+)\.output\.dense\.", r"bert.encoder.layers.\1.linear2."),
        (r"^bert\.encoder\.layer\.(\d+)\.output\.LayerNorm\.", r"bert.encoder.layers.\1.norm2."),
        (r"^bert\.pooler\.dense\.", r"bert.pooler.dense."),
        (r"^classifier\.", r"classifier."),
    )
)

#: canonical ``*.weight`` names of Linear layers (stored transposed in paddle)
_LINEAR_WEIGHT = re.compile(
    r"(attention\.self\.(query|key|value)|attention\.output\.dense|intermediate\.dense"
    r"|layer\.\d+\.output\.dense|pooler\.dense|^classifier)\.weight$"
)


def paddle_name(canonical: str) -> str:
    """The paddle (PaddleNLP) parameter name of canonical parameter ``canonical``.

    Raises ``KeyError`` for a name that is not a canonical BERT parameter name.
    """
    for pattern, template in _RULES:
        name, count = pattern.subn(template, canonical)
        if count:
            return name
    raise KeyError(f"not a canonical BERT parameter name: {canonical!r}")


def is_transposed(canonical: str) -> bool:
    """True when paddle stores ``canonical`` transposed (a Linear layer's weight)."""
    return _LINEAR_WEIGHT.search(canonical) is not None
