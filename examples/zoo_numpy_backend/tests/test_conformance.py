"""The numpy backend against zoo's conformance suite: the tests of capabilities it lacks skip."""

from zoo_core.testing import BackendConformance


class TestNumpyConformance(BackendConformance):
    """Every conformance test, run on the ``backend`` fixture from conftest.py."""
