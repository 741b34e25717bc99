"""The MindSpore backend against zoo's backend conformance suite."""

from zoo_core.testing import BackendConformance


class TestMindSporeConformance(BackendConformance):
    """Every conformance test, run on the ``backend`` fixture from conftest.py."""
