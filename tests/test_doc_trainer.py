"""The small trainer docs/backends.md shows, run exactly as printed through the fine-tuning conformance tests.

The code block after ``<!-- doc-trainer -->`` is executed as a module; a torch backend whose
``make_trainer`` returns that trainer then has to pass :class:`FineTuneConformance` (loss
against the reference, with and without dropout, clipping, weight decay, determinism,
exact resumption, gradient accumulation, the non-finite guard ...).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from zoo_torch.backend import TorchBackend

from zoo_core.backend import TrainSpec
from zoo_core.testing import tiny_config
from zoo_core.testing.conformance import FineTuneConformance

DOC = Path(__file__).resolve().parent.parent / "docs" / "backends.md"
MARKER = "<!-- doc-trainer -->"


def doc_trainer() -> type:
    """``SmallTrainer`` from the code block that follows :data:`MARKER` in docs/backends.md."""
    text = DOC.read_text(encoding="utf-8")
    assert MARKER in text, f"{DOC} lost its {MARKER} marker"
    block = re.search(r"```python\n(.*?)```", text.split(MARKER, 1)[1], re.S)
    assert block is not None, f"no python block after {MARKER} in {DOC}"
    namespace: dict[str, Any] = {"__name__": "doc_trainer"}
    exec(compile(block.group(1), str(DOC), "exec"), namespace)
    return namespace["SmallTrainer"]


SmallTrainer = doc_trainer()


class DocTrainerBackend(TorchBackend):
    """The torch backend with the documentation's trainer in place of its own."""

    def make_trainer(self, model: Any, spec: TrainSpec) -> Any:
        return SmallTrainer(model, spec)


@pytest.fixture
def backend() -> DocTrainerBackend:
    return DocTrainerBackend("cpu")


def test_the_doc_trainer_is_the_one_under_test(backend: DocTrainerBackend) -> None:
    model = backend.build_model(tiny_config())
    assert type(backend.make_trainer(model, TrainSpec("classification"))).__name__ == "SmallTrainer"


class TestDocTrainerConformance(FineTuneConformance):
    """Every fine-tuning conformance test, on the documentation's trainer."""
