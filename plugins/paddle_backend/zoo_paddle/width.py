"""DynaBERT width in paddle, through paddleslim's Once-For-All (OFA) supernet.

* **Running at a width**: :class:`WidthSupernet` converts a twin of the model with OFA's
  ``Convert(supernet(expand_ratio=[1.0]))`` (every Linear becomes a ``SuperLinear`` in a
  ``Block``, every LayerNorm/Embedding its super version), makes the twin share the
  model's parameter objects, and wraps it in ``OFA``.  A width is a sub-network config
  given to ``OFA.set_net_config``: ``{"channel": heads * head_size}`` for the Q/K/V
  projections and ``{"channel": neurons}`` for the FFN input layer of every layer, ``{}``
  (whole) for everything else.  ``SuperLinear`` then uses the first output units of
  those layers and, from the width of its input, the first input rows of the attention
  output and FFN output layers; the attention reshapes to however many heads Q/K/V
  give (:class:`zoo_paddle.model.MultiHeadAttention`).  That is exactly
  :func:`zoo_core.models.width.slice_to_width`'s sub-model.
* **Importance**: paddleslim's ``compute_neuron_head_importance`` (``nlp_utils``), called on
  one batch through :class:`_HeadMaskCall`, which gives zoo's model the
  ``model(input_ids, segment_ids, attention_mask=[None, head_mask])`` call it makes.
* **Losses**: computed here, not by OFA's ``DistillConfig``/``calc_distill_loss``, whose
  losses are unmasked MSEs of hooked layer outputs and whose teacher runs inside every
  ``OFA.forward`` (once per width, not once per step as ``WidthSpec`` says).

paddleslim 2.6.0 needs patches to run on Paddle 3.3: :mod:`zoo_paddle.ofa_compat`.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import Tensor, nn

from zoo_core.backend import Batch, WidthSpec, width_loss_name
from zoo_core.dropout import dropout_masks
from zoo_core.errors import DataError, ModelError
from zoo_core.models.config import BertConfig
from zoo_core.models.width import width_dims
from zoo_core.trainers import LossSums
from zoo_paddle.distill import hidden_mse, logits_loss
from zoo_paddle.model import (
    BertForSequenceClassification,
    Dropout,
    ModelOutput,
    autocast,
    batch_inputs,
    dropout_inputs,
    to_tensor,
)
from zoo_paddle.ofa_compat import load_ofa
from zoo_paddle.optimizer import (
    apply_adamw,
    canonical_parameters,
    load_optimizer_state,
    make_adamw,
    save_optimizer_state,
)
from zoo_paddle.parallel import data_parallel, sync_if

#: the OFA sub-network config of one width: layer path -> SuperLinear/SuperEmbedding kwargs
NetConfig = dict[str, dict[str, int]]


def width_net_config(config: BertConfig, layer_paths: list[str], width_mult: float) -> NetConfig:
    """The OFA config that runs a ``config`` model at ``width_mult``.

    ``layer_paths`` are the supernet's elastic layers (``OFA.ofa_layers``); all get a
    config (OFA insists), ``{}`` meaning whole.  This replaces paddleslim's
    ``utils.dynabert_config``, which keys layers by Paddle's process-global layer
    counters (``linear_12``) and uses ``expand_ratio``: ``int(0.8333 * 768)`` units is
    not a whole number of heads, where zoo keeps ``round(w * heads)`` heads.
    """
    heads, neurons = width_dims(config, width_mult)
    net: NetConfig = {path: {} for path in layer_paths}
    for i in range(config.num_hidden_layers):
        p = f"bert.encoder.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj"):
            net[p + "self_attn." + proj] = {"channel": heads * config.head_size}
        net[p + "linear1"] = {"channel": neurons}
    missing = [path for path in net if path not in layer_paths]
    if missing:
        raise ModelError(f"the OFA supernet has no elastic layer {missing[0]!r}")
    return net


def _sublayer(root: nn.Layer, path: str) -> nn.Layer:
    """``root``'s sublayer at dotted ``path`` ("" is ``root``)."""
    layer = root
    for part in filter(None, path.split(".")):
        layer = getattr(layer, part)
    return layer


def share_parameters(twin: nn.Layer, model: nn.Layer, block: type) -> None:
    """Make every parameter of ``twin`` (an OFA-converted copy of ``model``) ``model``'s own object.

    ``Convert`` wraps converted layers in a ``Block`` (``block``) whose ``fn`` holds the
    parameters; the twin's layer at a path is the ``fn`` of the Block there.
    """
    for path, layer in model.named_sublayers(include_self=True):
        target = _sublayer(twin, path)
        if isinstance(target, block):
            target = target.fn
        for name, param in layer._parameters.items():
            if param is not None:
                target._parameters[name] = param
    if {id(p) for p in twin.parameters()} != {id(p) for p in model.parameters()}:
        raise ModelError("the OFA supernet does not share all of the model's parameters")


class WidthSupernet:
    """``model`` as an OFA supernet: run it at any width, training ``model``'s own parameters."""

    def __init__(self, model: BertForSequenceClassification) -> None:
        ofa = load_ofa()
        self.model = model
        self.config = model.config
        twin = BertForSequenceClassification(model.config)
        ofa.Convert(ofa.supernet(expand_ratio=[1.0])).convert(twin)
        share_parameters(twin, model, ofa.Block)
        self.ofa = ofa.OFA(twin)
        self.layer_paths = list(self.ofa.ofa_layers)
        self._configs: dict[float, NetConfig] = {}
        #: what a call runs once the width is set: the OFA layer, or it in ``paddle.DataParallel``
        self.forward: nn.Layer = self.ofa

    def net_config(self, width_mult: float) -> NetConfig:
        """The OFA sub-network config of ``width_mult`` (cached)."""
        if width_mult not in self._configs:
            self._configs[width_mult] = width_net_config(self.config, self.layer_paths, width_mult)
        return self._configs[width_mult]

    def __call__(self, width_mult: float, **inputs: Any) -> ModelOutput:
        """The model's forward at ``width_mult`` (``inputs`` as for the model)."""
        self.ofa.set_net_config(self.net_config(width_mult))
        return self.forward(**inputs)

    def train(self) -> None:
        """Training mode for the supernet, and so the model's layers it uses."""
        self.ofa.train()

    def dropout(self, batch: Batch, seed: int, stream: int, width_mult: float) -> Dropout | None:
        """The ``dropout`` input of ``batch``'s forward at ``width_mult`` (None without dropout).

        The core's masks of ``stream`` (:func:`zoo_core.dropout.dropout_masks`), the
        attention probabilities' cut to the width's heads (the first ones).
        """
        masks = dropout_masks(self.config, batch, seed, stream=stream)
        if masks is None:
            return None
        heads, _ = width_dims(self.config, width_mult)
        return dropout_inputs(replace(masks, attention_probs=masks.attention_probs[:, :, :heads]))


class _HeadMaskCall(nn.Layer):
    """``model`` called as paddleslim's ``compute_neuron_head_importance`` calls PaddleNLP's BERT.

    It calls ``model(input_ids, segment_ids, attention_mask=[None, head_mask])``, the
    ``None`` being the padding mask (PaddleNLP rebuilds it from the pad token); here
    the padding mask is ``mask``, and ``head_mask[i]`` gates layer ``i``'s heads.
    """

    def __init__(self, model: BertForSequenceClassification, mask: Tensor | None) -> None:
        super().__init__()
        self.model = model
        self.mask = mask

    def forward(self, input_ids: Tensor, token_type_ids: Tensor, attention_mask: list[Any]) -> Tensor:
        head_mask = attention_mask[1]
        layers = list(self.model.bert.encoder.layers)
        for i, layer in enumerate(layers):
            layer.self_attn.head_gates = head_mask[i]
        try:
            return self.model(input_ids, token_type_ids, self.mask).logits
        finally:
            for layer in layers:
                layer.self_attn.head_gates = None


def importance(model: BertForSequenceClassification, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
    """Head ``[L, H]`` and neuron ``[L, I]`` importance of one labelled batch (``Backend.importance``).

    paddleslim's ``compute_neuron_head_importance``: ``|d loss / d head_mask|`` and, per
    neuron, ``|sum_j W1 dW1 + b1 db1| + |sum_k W2 dW2|`` (Paddle's ``[in, out]`` layout).
    In inference mode; the weights are unchanged and the gradients cleared.
    """
    if batch.labels is None:
        raise DataError("importance needs a labelled batch")
    config = model.config
    regression = config.problem_type == "regression"
    inputs = batch_inputs(batch)
    labels = to_tensor(batch.labels, "float32" if regression else "int64")
    call = _HeadMaskCall(model, inputs["attention_mask"])
    model.eval()
    model.clear_gradients(set_to_zero=False)
    try:
        with warnings.catch_warnings():
            # paddleslim reads gradients with Tensor.gradient(), deprecated in Paddle: not the user's concern
            warnings.filterwarnings("ignore", message=r"(?s).*tensor_patch_methods\.gradient")
            heads, neurons = load_ofa().compute_neuron_head_importance(
                "zoo",  # any task but "mnli": the loader is one iterable of batches
                call,
                [[inputs["input_ids"], inputs["token_type_ids"], labels]],
                config.num_hidden_layers,
                config.num_attention_heads,
                loss_fct=_task_loss(regression),
                intermediate_name="linear1",
                output_name="linear2",
            )
    finally:
        model.clear_gradients(set_to_zero=False)
    return heads.numpy().astype(np.float64), np.stack(neurons).astype(np.float64)


def _task_loss(regression: bool) -> Any:
    """The mean task loss ``(logits, labels) -> scalar``: squared error or cross-entropy."""
    if regression:
        return lambda logits, labels: F.mse_loss(logits[:, 0], labels)
    return lambda logits, labels: F.cross_entropy(logits, labels)


class PaddleWidthTrainer:
    """Trains ``student`` at every width of ``spec`` each step (DynaBERT), with AdamW.

    Like :class:`zoo_paddle.train.PaddleTrainer`: AdamW without weight decay on biases
    and LayerNorms, global-norm clipping, dropout under the core's masks (the ``k``-th
    width of ``spec.widths`` under stream ``k``, the teacher not at all).  The student
    runs through its OFA supernet (:class:`WidthSupernet`, eager mode: OFA's per-call
    config dispatch is Python), the teacher once per micro-batch; each width's
    loss is backpropagated at once, so one width's activations are alive at a time.
    Under data parallelism the OFA layer runs inside ``paddle.DataParallel`` (its
    parameters are the student's), and only the last backward of a step (last
    micro-batch, last width) all-reduces the gradients.
    """

    def __init__(
        self, student: BertForSequenceClassification, teacher: BertForSequenceClassification, spec: WidthSpec
    ) -> None:
        self.student, self.teacher, self.spec = student, teacher, spec
        self.regression = spec.train.objective == "regression"
        self.weights = {name: float(spec.loss_weights.get(name, 0.0)) for name in ("logits", "hidden")}
        self.supernet = WidthSupernet(student)
        self.steps = 0
        named = canonical_parameters(student)
        self.params = [p for _, p in named]
        self.optimizer = make_adamw(named, spec.train, student.config)
        self.parallel = data_parallel(self.supernet.ofa)
        if self.parallel is not None:
            self.supernet.forward = self.parallel
        self.sums = LossSums()

    def backward(self, batch: Batch, weight: float, sync: bool) -> None:
        """Every width's forward and backward on ``batch``, each times ``weight``; see :class:`WidthSpec`.

        The teacher runs once; the gradients are all-reduced after the last width when ``sync``.
        """
        self.supernet.train()
        self.teacher.eval()
        want_hidden = bool(self.weights["hidden"])
        inputs = batch_inputs(batch)
        with paddle.no_grad(), autocast(self.spec.train.precision):
            teacher_out = self.teacher(**inputs, output_hidden_states=True)
        mask = to_tensor(batch.attention_mask, "float32")
        tokens = mask.sum()
        for stream, width in enumerate(self.spec.widths):
            last = sync and stream == len(self.spec.widths) - 1
            dropout = self.supernet.dropout(batch, self.spec.train.seed, stream, width)
            with sync_if(self.parallel, last):
                with autocast(self.spec.train.precision):
                    student_out = self.supernet(width, **inputs, output_hidden_states=True, dropout=dropout)
                losses = self._losses(student_out, teacher_out, mask, tokens)
                weighted = self.weights["logits"] * losses["logits"]
                if want_hidden:
                    weighted = weighted + self.weights["hidden"] * losses["hidden"]
                (weighted * weight).backward()
            named = {width_loss_name(name, width): value.detach() for name, value in losses.items()}
            self.sums.add({"loss": weighted.detach(), **named}, weight)

    def apply(self, lr: float, loss_scale: float | None = None) -> dict[str, float]:
        """Norm, clipping, AdamW at ``lr``; returns ``loss``, ``grad_norm``, each width's losses."""
        out = apply_adamw(
            self.optimizer, self.params, lr, self.sums.take(), self.spec.train.max_grad_norm, loss_scale
        )
        self.steps += 0 if out.get("skipped") else 1  # the optimizer's steps (an overflowed one is none)
        return out

    def _losses(
        self, student: ModelOutput, teacher: ModelOutput, mask: Tensor, tokens: Tensor
    ) -> dict[str, Tensor]:
        """``logits`` and ``hidden`` of one width, unweighted."""
        assert student.hidden_states is not None and teacher.hidden_states is not None
        pairs = zip(student.hidden_states, teacher.hidden_states, strict=True)
        hidden = paddle.add_n([hidden_mse(s, t, mask, tokens) for s, t in pairs])
        logits = logits_loss(student.logits, teacher.logits, self.regression, self.spec.temperature)
        return {"logits": logits, "hidden": hidden}

    def save_state(self, directory: Path) -> None:
        """Write ``optimizer.pdopt`` and ``trainer.json`` (the step count) into ``directory``."""
        save_optimizer_state(self.optimizer, self.student, self.steps, Path(directory))

    def load_state(self, directory: Path) -> None:
        """Restore what :meth:`save_state` wrote; raises ``CheckpointError`` if unreadable."""
        self.steps = load_optimizer_state(self.optimizer, self.student, Path(directory))
