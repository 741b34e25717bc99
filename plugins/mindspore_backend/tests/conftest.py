"""Fixtures for the MindSpore backend's tests: the backend, built through the plugin system."""

from __future__ import annotations

import pytest

from zoo_core.backend import Backend
from zoo_core.plugins import create_backend


@pytest.fixture(scope="session")
def backend() -> Backend:
    """The installed ``mindspore`` backend on CPU (found through its entry point)."""
    return create_backend("mindspore", "cpu")
