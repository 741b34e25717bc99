"""Test helpers shipped with zoo_core: numpy references (BERT, TinyBERT losses), the conformance suite.

``BackendConformance`` lives in :mod:`zoo_core.testing.conformance`; it imports
pytest, which registers it for assertion rewriting first.
"""

import pytest

pytest.register_assert_rewrite("zoo_core.testing.conformance", "zoo_core.testing.parallel")

from zoo_core.testing.conformance import (  # noqa: E402
    BackendConformance,
    pad_batch,
    regression_config,
    tiny_batch,
    tiny_config,
)
from zoo_core.testing.distill_reference import reference_distill_losses  # noqa: E402
from zoo_core.testing.reference import ReferenceOutput, reference_forward, reference_logits  # noqa: E402

__all__ = [
    "BackendConformance",
    "ReferenceOutput",
    "pad_batch",
    "reference_distill_losses",
    "reference_forward",
    "reference_logits",
    "regression_config",
    "tiny_batch",
    "tiny_config",
]
