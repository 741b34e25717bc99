"""Conformance of capability ``convert``: the framework's own checkpoints (``zoo convert``).

A checkpoint written by ``save_framework_checkpoint`` loads back bit-exactly, and one
of another shape or an unreadable file is a :class:`~zoo_core.errors.CheckpointError`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from zoo_core.errors import CheckpointError
from zoo_core.testing.conformance.helpers import ConformanceBase, FullBackend, _model, tiny_config


class ConvertConformance(ConformanceBase):
    """Framework checkpoints: each test skips unless the backend declares ``convert``."""

    # ---- framework checkpoints (zoo convert) -------------------------------------
    @pytest.mark.usefixtures("converts")
    def test_framework_checkpoint_round_trip_bit_exact(self, backend: FullBackend, tmp_path: Path) -> None:
        config = tiny_config(attention_head_size=6)
        model, weights = _model(backend, config, seed=5)
        path = backend.save_framework_checkpoint(model, tmp_path)
        assert path.is_file() and path.parent == tmp_path
        fresh, _ = _model(backend, config, seed=6)
        backend.load_framework_checkpoint(fresh, path)
        for name, value in backend.dump_weights(fresh).items():
            np.testing.assert_array_equal(value, weights[name], err_msg=name)

    @pytest.mark.usefixtures("converts")
    def test_framework_checkpoint_of_another_shape_is_refused(
        self, backend: FullBackend, tmp_path: Path
    ) -> None:
        model, _ = _model(backend, tiny_config(intermediate_size=48))
        path = backend.save_framework_checkpoint(model, tmp_path)
        other, _ = _model(backend, tiny_config())
        with pytest.raises(CheckpointError, match="intermediate"):
            backend.load_framework_checkpoint(other, path)

    @pytest.mark.usefixtures("converts")
    def test_unreadable_framework_checkpoint_is_a_checkpoint_error(
        self, backend: FullBackend, tmp_path: Path
    ) -> None:
        model, _ = _model(backend, tiny_config())
        path = backend.save_framework_checkpoint(model, tmp_path)
        path.write_bytes(b"not a checkpoint")
        with pytest.raises(CheckpointError, match=str(path.name)):
            backend.load_framework_checkpoint(model, path)
