"""Test helpers shipped with zoo_core: the numpy reference BERT and the backend conformance suite.

``BackendConformance`` lives in :mod:`zoo_core.testing.conformance`; it imports
pytest, which registers it for assertion rewriting first.
"""

import pytest

pytest.register_assert_rewrite("zoo_core.testing.conformance")

from zoo_core.testing.conformance import (  # noqa: E402
    BackendConformance,
    pad_batch,
    regression_config,
    tiny_batch,
    tiny_config,
)
from zoo_core.testing.reference import reference_logits  # noqa: E402

__all__ = [
    "BackendConformance",
    "pad_batch",
    "reference_logits",
    "regression_config",
    "tiny_batch",
    "tiny_config",
]
