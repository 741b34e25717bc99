"""The ``backend`` fixture the conformance suite asks for."""

from __future__ import annotations

import pytest

from zoo_core.backend import Backend
from zoo_core.plugins import create_backend


@pytest.fixture
def backend() -> Backend:
    """The numpy backend, created through its registered spec (so registration is tested too)."""
    return create_backend("numpy", "cpu", {})
