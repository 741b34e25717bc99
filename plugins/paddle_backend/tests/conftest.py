"""Fixtures for the paddle backend's tests: the backend, built through the plugin system.

Paddle is limited to one CPU thread: the tests use tiny models, and the machine they
run on is shared.  Run these tests in a pytest process of their own (importing
paddle and mindspore in one process, in that order, breaks).
"""

from __future__ import annotations

import pytest
from zoo_paddle.env import prepare_paddle_env

from zoo_core.backend import Backend
from zoo_core.plugins import create_backend

prepare_paddle_env()  # before any test module imports paddle, as zoo_paddle.backend would


@pytest.fixture(scope="session")
def backend() -> Backend:
    """The installed ``paddle`` backend on CPU, one thread (found through its entry point)."""
    return create_backend("paddle", "cpu", {"threads": 1})
