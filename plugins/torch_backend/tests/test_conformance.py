"""The torch backend against zoo's backend conformance suite."""

from zoo_core.testing import BackendConformance


class TestTorchConformance(BackendConformance):
    """Every conformance test, run on the ``backend`` fixture from conftest.py."""
