"""Make paddleslim 2.6.0's Once-For-All (OFA) code work on Paddle 3.3.x.

paddleslim 2.6.0 (January 2024, its last release) was written for Paddle 2.x.  Paddle
3.x made the constructor arguments of ``nn.LayerNorm`` and ``nn.Embedding`` after the
first few keyword-only (and inserted new positional ones), and dropped an argument of
``_C_ops.layer_norm``.  :func:`load_ofa` applies these patches, once, and returns the
OFA names zoo uses:

1. ``SuperLayerNorm.__init__`` passes ``epsilon, weight_attr, bias_attr, name`` to
   ``nn.LayerNorm.__init__`` positionally; Paddle 3.3's signature is
   ``(normalized_shape, epsilon=1e-5, *, elementwise_affine, bias, device, dtype,
   weight_attr, bias_attr, name)``, so construction raises ``TypeError`` (and
   ``Convert`` cannot convert any model with a LayerNorm).  Patched to pass them by
   keyword.
2. ``SuperLayerNorm.forward`` calls ``_C_ops.layer_norm(x, w, b, eps, axis, False)``
   (six arguments, Paddle 2.x's ``is_test``) and unpacks three outputs; Paddle 3.3's op
   takes five and returns the normalised tensor alone, so the call raises.  Patched
   to the five-argument call, keeping 2.6.0's slicing of ``weight``/``bias`` to the
   input's last dimension (what makes it a *super* LayerNorm); outside dynamic/PIR
   mode it goes through ``F.layer_norm``.
3. ``SuperEmbedding.__init__`` passes ``padding_idx, sparse, weight_attr, name`` to
   ``nn.Embedding.__init__`` positionally; Paddle 3.3 put ``max_norm, norm_type`` after
   ``padding_idx`` and made the rest keyword-only, so ``sparse`` lands in ``max_norm``,
   ``weight_attr`` in ``norm_type`` and ``name`` raises ``TypeError``.  Patched to pass
   them by keyword.

Not patched, avoided instead: ``OFA.forward`` without a fixed sub-network config builds
its search space automatically (``_clear_search_space``): it traces the model into a
legacy static program with ``paddleslim.core.dygraph.dygraph2program`` (which fails on
Paddle 3.3 with ``AttributeError: module 'paddle.base.dygraph.base' has no attribute
'_to_static_mode_guard_'``) and walks that program with ``GraphWrapper``, written for
the pre-PIR ``ProgramDesc``.  zoo always sets a config (``OFA.set_net_config``) before
running a supernet, which skips that path.

``paddleslim.nas.ofa.utils.nlp_utils`` (its DynaBERT importance helper) replaces
``paddle.nn.MultiHeadAttention.forward``, ``._prepare_qkv``,
``paddle.nn.TransformerEncoder.forward`` and ``paddle.nn.TransformerEncoderLayer.forward``
process-wide when imported.  :func:`load_ofa` imports it and puts Paddle's own methods
back (zoo's model does not use those classes, but PaddleNLP's BERT in the same process
does, and would break).

The patches were written against the sources of paddleslim 2.6.0 and checked on
paddlepaddle 3.3.1.  Any other paddleslim is refused (:class:`BackendError`): the
patched functions are copies of 2.6.0's.  Another Paddle 3.x gets a warning.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import warnings
from types import SimpleNamespace
from typing import Any

import paddle
import paddle.nn.functional as F
from paddle import Tensor

from zoo_core.errors import BackendError

#: the paddleslim release the patches copy and fix
PADDLESLIM_VERSION = "2.6.0"
#: the Paddle releases the patches were checked on (``major.minor``)
PADDLE_SERIES = "3.3"

_NLP_UTILS = "paddleslim.nas.ofa.utils.nlp_utils"
#: the paddle.nn methods nlp_utils replaces on import: (class name, attribute)
_NLP_UTILS_PATCHED = (
    ("MultiHeadAttention", "forward"),
    ("MultiHeadAttention", "_prepare_qkv"),
    ("TransformerEncoder", "forward"),
    ("TransformerEncoderLayer", "forward"),
)
_PATCHED_FLAG = "_zoo_ofa_compat"

_loaded: SimpleNamespace | None = None
#: paddleslim's own functions the patches replaced ("SuperLayerNorm.__init__", ...): the
#: tests call them to show each patch is still needed
ORIGINALS: dict[str, Any] = {}


def check_versions() -> str:
    """Return the installed paddleslim version; refuse another than 2.6.0, warn on another Paddle."""
    try:
        version = importlib.metadata.version("paddleslim")
    except importlib.metadata.PackageNotFoundError:
        raise BackendError(
            f"DynaBERT width on paddle needs paddleslim=={PADDLESLIM_VERSION} "
            "(pip install -e plugins/paddle_backend)"
        ) from None
    if version != PADDLESLIM_VERSION:
        raise BackendError(
            f"zoo_paddle.ofa_compat patches paddleslim {PADDLESLIM_VERSION}, found {version}; "
            f"install paddleslim=={PADDLESLIM_VERSION} or update the patches"
        )
    if not paddle.__version__.startswith(PADDLE_SERIES + "."):
        warnings.warn(
            f"zoo_paddle.ofa_compat was written for paddle {PADDLE_SERIES}.x, found {paddle.__version__}; "
            "paddleslim's OFA layers may misbehave (tests/test_ofa_compat.py checks them)",
            RuntimeWarning,
            stacklevel=2,
        )
    return version


def _layer_norm_init(
    self: Any,
    normalized_shape: int | list[int],
    epsilon: float = 1e-05,
    weight_attr: Any = None,
    bias_attr: Any = None,
    name: str | None = None,
) -> None:
    """``SuperLayerNorm.__init__`` of 2.6.0 with ``nn.LayerNorm``'s keyword-only arguments by keyword."""
    paddle.nn.LayerNorm.__init__(
        self, normalized_shape, epsilon, weight_attr=weight_attr, bias_attr=bias_attr, name=name
    )
    self.cur_config = None


def _layer_norm_forward(self: Any, input: Tensor) -> Tensor:
    """``SuperLayerNorm.forward`` of 2.6.0 with Paddle 3's five-argument ``_C_ops.layer_norm``."""
    begin_norm_axis = len(input.shape) - len(self._normalized_shape)
    feature_dim = int(input.shape[-1])
    weight = bias = None
    if self._weight_attr is not False:
        weight = self.weight if self.weight.shape[0] <= feature_dim else self.weight[:feature_dim]
    if self._bias_attr is not False:
        bias = self.bias if self.bias.shape[0] <= feature_dim else self.bias[:feature_dim]
    self.cur_config = {"prune_dim": feature_dim}
    if paddle.in_dynamic_mode() or paddle.framework.in_pir_mode():
        # paddle's stub says a 3-tuple and a non-optional weight; in dynamic mode it returns the output
        return paddle._C_ops.layer_norm(input, weight, bias, self._epsilon, begin_norm_axis)  # type: ignore[return-value,arg-type]
    return F.layer_norm(input, input.shape[begin_norm_axis:], weight, bias, self._epsilon)


def _embedding_init(
    self: Any,
    num_embeddings: int,
    embedding_dim: int,
    candidate_config: dict[str, Any] | None = None,
    padding_idx: int | None = None,
    sparse: bool = False,
    weight_attr: Any = None,
    name: str | None = None,
) -> None:
    """``SuperEmbedding.__init__`` of 2.6.0 with ``nn.Embedding``'s arguments by keyword."""
    paddle.nn.Embedding.__init__(
        self,
        num_embeddings,
        embedding_dim,
        padding_idx=padding_idx,
        sparse=sparse,
        weight_attr=weight_attr,
        name=name,
    )
    candidate_config = {} if candidate_config is None else candidate_config
    self.candidate_config = candidate_config
    self.cur_config = None
    self.expand_ratio = candidate_config.get("expand_ratio")
    self.base_output_dim = self._embedding_dim
    if self.expand_ratio is not None:
        self.base_output_dim = int(self._embedding_dim / max(self.expand_ratio))


def _import_nlp_utils() -> Any:
    """Import paddleslim's ``nlp_utils`` and undo the ``paddle.nn`` methods it replaces on import."""
    if _NLP_UTILS in sys.modules:  # imported before us: whatever it patched is already patched
        return sys.modules[_NLP_UTILS]
    saved = [(cls, attr, getattr(getattr(paddle.nn, cls), attr)) for cls, attr in _NLP_UTILS_PATCHED]
    try:
        return importlib.import_module(_NLP_UTILS)
    finally:
        for cls, attr, original in saved:
            setattr(getattr(paddle.nn, cls), attr, original)


def apply_patches() -> None:
    """Apply patches 1-3 to paddleslim's OFA layers (idempotent; versions checked first)."""
    check_versions()
    with warnings.catch_warnings():  # paddleslim's imports warn about pkg_resources, ccache, ...
        warnings.simplefilter("ignore")
        layers = importlib.import_module("paddleslim.nas.ofa.layers")
    if getattr(layers, _PATCHED_FLAG, False):
        return
    patches = {
        (layers.SuperLayerNorm, "__init__"): _layer_norm_init,
        (layers.SuperLayerNorm, "forward"): _layer_norm_forward,
        (layers.SuperEmbedding, "__init__"): _embedding_init,
    }
    for (cls, attr), patched in patches.items():
        ORIGINALS[f"{cls.__name__}.{attr}"] = getattr(cls, attr)
        setattr(cls, attr, patched)
    setattr(layers, _PATCHED_FLAG, True)


def load_ofa() -> SimpleNamespace:
    """paddleslim's OFA, patched for Paddle 3.3: ``OFA``, ``Convert``, ``supernet``, ``Block``,
    ``SuperLinear``, ``SuperLayerNorm``, ``SuperEmbedding``, ``compute_neuron_head_importance``."""
    global _loaded
    if _loaded is None:
        apply_patches()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ofa = importlib.import_module("paddleslim.nas.ofa")
            layers = importlib.import_module("paddleslim.nas.ofa.layers")
            nlp_utils = _import_nlp_utils()
        _loaded = SimpleNamespace(
            OFA=ofa.OFA,
            Convert=importlib.import_module("paddleslim.nas.ofa.convert_super").Convert,
            supernet=ofa.supernet,
            Block=layers.Block,
            SuperLinear=layers.SuperLinear,
            SuperLayerNorm=layers.SuperLayerNorm,
            SuperEmbedding=layers.SuperEmbedding,
            compute_neuron_head_importance=nlp_utils.compute_neuron_head_importance,
        )
    return _loaded
