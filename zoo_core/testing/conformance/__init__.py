"""The conformance suite every backend plugin runs, one module per capability.

A plugin inherits :class:`BackendConformance` in one of its test files and supplies
a ``backend`` fixture (usually in its ``conftest.py``) returning its Backend::

    # plugins/foo_backend/tests/conftest.py
    @pytest.fixture(scope="session")
    def backend():
        return zoo_core.plugins.create_backend("foo", "cpu")

    # plugins/foo_backend/tests/test_conformance.py
    class TestFooConformance(BackendConformance):
        pass

Tests that need a capability (e.g. ``"finetune"``) skip when the backend's spec
lacks it; the ``capabilities`` fixture reads the registered spec, and a plugin may
override it.  Everything runs on tiny shapes (:func:`tiny_config`) in seconds.
The numbers are pinned by :func:`zoo_core.testing.reference.reference_logits`, and
distillation's by :func:`zoo_core.testing.distill_reference.reference_distill_losses`.

The modules, as in fsspec's abstract test suite (one mixin class per concern), are
:mod:`.core` (the contract every backend has, options, listing, weights, predict),
:mod:`.finetune`, :mod:`.distill`, :mod:`.width`, :mod:`.export` and :mod:`.convert`
(a capability each), :mod:`.precision` (bf16, fp16 and loss scaling), with the shared
configs, batches, specs and fixtures in :mod:`.helpers`; data parallelism is
:mod:`zoo_core.testing.parallel`.  A plugin may also inherit only the mixins it wants,
e.g. ``class TestFoo(CoreConformance)``.
"""

from zoo_core.testing.conformance.convert import ConvertConformance
from zoo_core.testing.conformance.core import CoreConformance
from zoo_core.testing.conformance.distill import DistillConformance
from zoo_core.testing.conformance.export import ExportConformance
from zoo_core.testing.conformance.finetune import FineTuneConformance
from zoo_core.testing.conformance.helpers import (
    DROPOUT,
    NO_DROPOUT,
    REFERENCE_CASES,
    ConformanceBase,
    FullBackend,
    distill_spec,
    distill_student_config,
    distill_teacher_config,
    pad_batch,
    regression_config,
    tiny_batch,
    tiny_config,
    width_spec,
)
from zoo_core.testing.conformance.precision import PrecisionConformance
from zoo_core.testing.conformance.width import WidthConformance
from zoo_core.testing.parallel import DataParallelConformance


# pytest collects a class's tests base by base from the last in its MRO to the first, so
# the mixins are listed in reverse: the suite runs data parallel, core, fine-tuning,
# convert, export, distillation, width, as it did as one class.
class BackendConformance(
    PrecisionConformance,
    WidthConformance,
    DistillConformance,
    ExportConformance,
    ConvertConformance,
    FineTuneConformance,
    CoreConformance,
    DataParallelConformance,
):
    """What every backend must do, number for number; inherit it and supply ``backend``."""


__all__ = [
    "DROPOUT",
    "NO_DROPOUT",
    "REFERENCE_CASES",
    "BackendConformance",
    "ConformanceBase",
    "ConvertConformance",
    "CoreConformance",
    "DataParallelConformance",
    "DistillConformance",
    "ExportConformance",
    "FineTuneConformance",
    "FullBackend",
    "PrecisionConformance",
    "WidthConformance",
    "distill_spec",
    "distill_student_config",
    "distill_teacher_config",
    "pad_batch",
    "regression_config",
    "tiny_batch",
    "tiny_config",
    "width_spec",
]
