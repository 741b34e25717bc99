"""Conformance of the core contract, which every backend has whatever its capabilities.

The spec's capability flags against the protocols implemented, ``backend_options``
checked through the spec's option table, the plugin listed without importing its
framework, models built and weights loaded and dumped bit-exactly, and ``predict``
matching the numpy reference (:func:`zoo_core.testing.reference.reference_logits`).
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys

import numpy as np
import pytest
from packaging.requirements import Requirement

from zoo_core.backend import Backend, BackendSpec, implemented_capabilities
from zoo_core.errors import CheckpointError, RecipeError
from zoo_core.models.config import BertConfig
from zoo_core.models.weights import canonical_shapes, init_weights
from zoo_core.plugins import create_backend, get_backend_spec
from zoo_core.testing.conformance.helpers import (
    REFERENCE_CASES,
    ConformanceBase,
    FullBackend,
    _model,
    pad_batch,
    regression_config,
    tiny_batch,
    tiny_config,
)
from zoo_core.testing.reference import reference_logits

#: run in a fresh interpreter: the top-level modules zoo_core itself imports, then those
#: imported once the plugin's module (argv[2]) is imported and every backend is listed
LISTING = """
import importlib, json, sys
import zoo_core.plugins
core = sorted({name.partition(".")[0] for name in sys.modules})
importlib.import_module(sys.argv[2])
listed = [backend.spec.name for backend in zoo_core.plugins.list_backends()]
after = sorted({name.partition(".")[0] for name in sys.modules})
print(json.dumps({"core": core, "listed": listed, "after": after}))
"""


def _distribution(name: str) -> str:
    """A distribution name normalised (PEP 503), so ``Paddle_Slim`` and ``paddle-slim`` are one."""
    return re.sub(r"[-_.]+", "-", name).lower()


def framework_modules(spec: BackendSpec) -> set[str]:
    """The top-level modules of ``spec.framework`` and of the plugin's other requirements.

    The framework's import name need not be its distribution's (``paddlepaddle``
    installs ``paddle``), and a plugin may need more heavy packages (PaddleNLP), so
    both come from the installed distributions' metadata: the plugin's distribution is
    the one holding the package of ``spec.factory``.
    """
    owners = importlib.metadata.packages_distributions()
    wanted = {_distribution(spec.framework)}
    plugin_package = spec.factory.__module__.partition(".")[0]
    for dist in owners.get(plugin_package, []):
        for line in importlib.metadata.requires(dist) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                wanted.add(_distribution(requirement.name))
    wanted.discard("zoo-core")
    return {module for module, dists in owners.items() if any(_distribution(d) in wanted for d in dists)}


class CoreConformance(ConformanceBase):
    """The core ``Backend`` protocol and the plugin's registration: no capability needed."""

    # ---- the contract ------------------------------------------------------------
    def test_declared_capabilities_are_exactly_those_implemented(self, backend: Backend) -> None:
        """The spec's flags are the capability protocols the backend implements, no more, no fewer."""
        assert isinstance(backend, Backend)
        declared = set(get_backend_spec(backend.name).capabilities)
        implemented = implemented_capabilities(backend)
        assert implemented == declared, f"declared {sorted(declared)} but implemented {sorted(implemented)}"

    # ---- backend options -----------------------------------------------------------
    def test_options_defaults(self, backend: Backend) -> None:
        """Every declared option accepts its own default, and no options at all build the backend."""
        spec = get_backend_spec(backend.name)
        for key, option in spec.options.items():
            assert option.accepts(option.default), f"backend_options.{backend.name}.{key}: default refused"
            assert option.expected and "\n" not in option.expected, key
        built = create_backend(backend.name, backend.device, {})
        assert built.name == backend.name and built.device == backend.device

    def test_unknown_option_is_a_one_line_recipe_error(self, backend: Backend) -> None:
        with pytest.raises(RecipeError) as info:
            create_backend(backend.name, backend.device, {"no_such_option": 1})
        assert str(info.value).startswith(f"backend_options.{backend.name}.no_such_option: unknown option")
        assert "\n" not in str(info.value)

    def test_bad_options_are_recipe_errors(self, backend: Backend) -> None:
        """A value no option accepts (a list) is refused, naming the key and what it expects."""
        spec = get_backend_spec(backend.name)
        for key, option in spec.options.items():
            with pytest.raises(RecipeError) as info:
                create_backend(backend.name, backend.device, {key: ["x"]})
            where = f"backend_options.{backend.name}.{key}: expected {option.expected}"
            assert str(info.value).startswith(where), str(info.value)
            assert "\n" not in str(info.value)

    def test_every_bad_option_is_reported(self, backend: Backend) -> None:
        spec = get_backend_spec(backend.name)
        bad = {"no_such_option": 1, **{key: ["x"] for key in spec.options}}
        with pytest.raises(RecipeError) as info:
            create_backend(backend.name, backend.device, bad)
        assert len(info.value.problems) == len(bad)

    # ---- the plugin --------------------------------------------------------------
    def test_plugin_and_listing_do_not_import_the_framework(self, backend: Backend) -> None:
        """``zoo backends`` loads every plugin's module: none may import a framework (seconds each).

        In a fresh interpreter: import the plugin's module (the one holding its factory)
        and list the backends; neither the framework nor the plugin's other requirements
        (:func:`framework_modules`) may be imported, unless zoo_core itself imports them.
        """
        spec = get_backend_spec(backend.name)
        result = subprocess.run(
            [sys.executable, "-c", LISTING, backend.name, spec.factory.__module__],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        modules = json.loads(result.stdout.strip().splitlines()[-1])
        assert backend.name in modules["listed"]
        heavy = framework_modules(spec) - set(modules["core"])
        if not heavy:
            pytest.skip(f"zoo_core itself imports {spec.framework}, the framework of {backend.name!r}")
        imported = sorted(heavy & set(modules["after"]))
        assert not imported, f"listing backends imported {', '.join(imported)}"

    # ---- models and weights ------------------------------------------------------
    @pytest.mark.parametrize("config", [tiny_config(labels=("a", "b", "c")), regression_config()])
    def test_build_model_with_head(self, backend: FullBackend, config: BertConfig) -> None:
        model, _ = _model(backend, config)
        logits = backend.predict(model, tiny_batch())
        assert logits.shape == (4, config.num_labels)
        assert logits.dtype == np.float32
        assert np.isfinite(logits).all()

    def test_weights_round_trip_bit_exact(self, backend: FullBackend) -> None:
        config = tiny_config(attention_head_size=6)
        model, weights = _model(backend, config, seed=3)
        dumped = backend.dump_weights(model)
        assert set(dumped) == set(canonical_shapes(config))
        for name, value in weights.items():
            assert dumped[name].dtype == np.float32, name
            np.testing.assert_array_equal(dumped[name], value, err_msg=name)
        dumped["classifier.weight"][:] = 0  # a dump is a copy, not a view of the model
        np.testing.assert_array_equal(
            backend.dump_weights(model)["classifier.weight"], weights["classifier.weight"]
        )

    def test_load_rejects_wrong_shape(self, backend: FullBackend) -> None:
        config = tiny_config()
        model = backend.build_model(config)
        weights = init_weights(config, 0)
        weights["bert.encoder.layer.1.intermediate.dense.weight"] = np.zeros((65, 32), np.float32)
        with pytest.raises(CheckpointError, match=r"bert\.encoder\.layer\.1\.intermediate\.dense\.weight"):
            backend.load_weights(model, weights)

    def test_load_rejects_missing_parameter(self, backend: FullBackend) -> None:
        config = tiny_config()
        weights = init_weights(config, 0)
        del weights["bert.pooler.dense.bias"]
        with pytest.raises(CheckpointError, match="missing"):
            backend.load_weights(backend.build_model(config), weights)

    # ---- the math ----------------------------------------------------------------
    @pytest.mark.parametrize("case", list(REFERENCE_CASES))
    def test_logits_match_reference(self, backend: FullBackend, case: str) -> None:
        config = REFERENCE_CASES[case]
        model, weights = _model(backend, config, seed=1)
        batch = tiny_batch(seed=2, batch_size=5, max_len=16, vocab_size=config.vocab_size)
        expected = reference_logits(weights, config, batch)
        assert np.abs(expected).max() > 0.1, "logits too small for the comparison to mean much"
        np.testing.assert_allclose(backend.predict(model, batch), expected, rtol=0, atol=1e-5)

    def test_unpadded_batch_matches_reference(self, backend: FullBackend) -> None:
        config = REFERENCE_CASES["default"]
        model, weights = _model(backend, config, seed=1)
        batch = tiny_batch(seed=4, max_len=10)
        batch.attention_mask[:] = 1
        np.testing.assert_allclose(
            backend.predict(model, batch), reference_logits(weights, config, batch), rtol=0, atol=1e-5
        )

    def test_padding_does_not_change_logits(self, backend: FullBackend) -> None:
        config = REFERENCE_CASES["default"]
        model, _ = _model(backend, config, seed=1)
        batch = tiny_batch(seed=5, batch_size=6, max_len=12)
        padded = pad_batch(batch, 29)
        padded.input_ids[:, 12:] = 7  # what sits under the mask must not matter either
        np.testing.assert_allclose(backend.predict(model, padded), backend.predict(model, batch), atol=1e-5)

    def test_predict_is_deterministic(self, backend: FullBackend) -> None:
        model, _ = _model(backend, tiny_config(hidden_dropout_prob=0.5, attention_probs_dropout_prob=0.5))
        batch = tiny_batch()
        np.testing.assert_array_equal(backend.predict(model, batch), backend.predict(model, batch))
