"""Training throughput of zoo's mindspore backend against a MindSpore model-zoo TinyBERT-style loop.

    .venv/bin/python benchmarks/mindspore_train_throughput.py [--steps 40] [--warmup 5] [--threads 2]
        [--json F]

Both train the real MiniLM-L6-H384 weights (``minilm-l6-h384`` with the same freshly
initialised classifier) on the same SST-2 training examples, batch 32, max_seq_length 64,
constant learning rate (2e-5), in this process, both compiled (GRAPH mode):

* **zoo mindspore**: zoo's length-bucketed batches (``train_batches``, seed 42, epoch 0), each
  padded to its own longest sequence, ``train_step(trainer, batch, lr)`` of the mindspore backend
  with its defaults (``mode: graph``: one ``mindspore.jit`` step of forward, backward,
  global-norm clipping and AdamW; the backend rounds each batch's length up to a multiple
  of 16, so it compiles one graph per such length; the core's per-example dropout masks
  drawn on the host, :mod:`zoo_core.dropout`, as every zoo backend does).
* **reference**: what MindSpore's model-zoo TinyBERT (``official/nlp/tinybert``) does: GRAPH
  mode, every batch padded to max_seq_length (64) as its TFRecord/MindRecord dataset is,
  ``input_ids, input_mask, token_type_id, label_ids`` into a train cell shaped like its
  ``BertEvaluationCell`` (``GradOperation(get_by_list, sens_param)`` over a network-with-loss
  cell, per-tensor ``ClipByNorm(1.0)`` over the gradients by ``HyperMap``, then
  ``nn.AdamWeightDecay`` with weight decay 1e-4 on all but LayerNorms and biases, eps 1e-6,
  as its ``td_config_sst2.yaml``, at a constant learning rate instead of its schedule).
  Its loss-scaled cell (``BertEvaluationWithLossScaleCell``) is for float16 on Ascend: on CPU,
  MindSpore 2.10's ``TrainOneStepWithLossScaleCell`` fails to compile (no
  ``NPUGetFloatStatusV2`` kernel), so the plain cell is used.  Like that cell, it calls the
  network for the returned loss and again inside ``GradOperation``; MindSpore's compiler
  shares the forward pass between the two (a profile shows one forward's worth of matmuls,
  as many as zoo's step).  The BERT in the network-with-loss cell is zoo_mindspore's own
  model cell (the model zoo's ``BertModelCLS`` is not packaged), loaded with the same
  weights, its dropout masks drawn inside the graph by ``nn.Dropout`` (as the model zoo's
  BERT draws them), then mean cross-entropy: the comparison is about the loop (fixed
  against per-batch padding, the step wrapper and the optimizer), not the model code.

GRAPH mode compiles a graph for every new input shape.  The reference sees one shape
(32 x 64); zoo sees one per padded length (16, 32, 48 or 64).  Before timing, each loop
runs ``--warmup`` steps and then one step on a batch of every shape the timed batches
have that the warm-up did not compile; that warm-up (compiles included) is reported
separately, not timed.  Then the two loops take turns, one step each on the same batch,
each step timed on its own (the backend's PyNative context for zoo's, GRAPH for the
reference's, set outside the timing), so that load from other processes on a shared
machine weighs on both alike.  Timing covers collation/padding, host-side tensors and the
step (until its loss is back on the host), not tokenisation; the same examples are timed
in both.  Each is reported in samples/s, real (non-padding) tokens/s, padded tokens/s and
model GFLOP/s (``zoo_core.flops`` of the shapes each computes: zoo's at the backend's
multiple-of-16 length, which its graphs compute, the reference's at 64).  Target: zoo >=
2.5x the reference.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn, ops
from sst2_setup import parse_args, rates, rates_line, sst2_workload  # benchmarks/, next to this script
from zoo_mindspore.model import BertForSequenceClassification, dropout_shapes, padded_length

from zoo_core.backend import Batch, TrainSpec
from zoo_core.trainers import train_step

#: the model zoo's gradient clipping: by norm (type 1), each gradient to norm 1.0
GRADIENT_CLIP_TYPE = 1
GRADIENT_CLIP_VALUE = 1.0

clip_grad = ops.MultitypeFuncGraph("clip_grad")


@clip_grad.register("Number", "Number", "Tensor")
def _clip_grad(clip_type: int, clip_value: float, grad: Tensor) -> Tensor:
    """The model zoo's ``clip_grad``: clip one gradient by value (0) or by its norm (1)."""
    if clip_type not in (0, 1):
        return grad
    dt = ops.dtype(grad)
    if clip_type == 0:
        return ops.clip_by_value(
            grad,
            ops.cast(ops.tuple_to_array((-clip_value,)), dt),
            ops.cast(ops.tuple_to_array((clip_value,)), dt),
        )
    return nn.ClipByNorm()(grad, ops.cast(ops.tuple_to_array((clip_value,)), dt))


class NetworkWithLoss(nn.Cell):
    """The model zoo's network-with-loss shape: ``(ids, mask, types, labels) -> mean cross-entropy``.

    The model cell takes each dropout site's scaled keep-mask and multiplies by it; here each
    mask is ``nn.Dropout`` applied to ones (``1 / (1 - p)`` kept, 0 dropped), drawn inside the
    graph at the fixed shape every batch is padded to.
    """

    def __init__(self, model: BertForSequenceClassification, batch_size: int, seq_length: int) -> None:
        super().__init__()
        self.bert = model
        self.shapes = tuple(dropout_shapes(model.config, batch_size, seq_length))
        self.hidden_dropout = nn.Dropout(p=model.config.hidden_dropout_prob)
        self.attention_dropout = nn.Dropout(p=model.config.attention_probs_dropout_prob)
        self.loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")

    def construct(
        self, input_ids: Tensor, input_mask: Tensor, token_type_id: Tensor, label_ids: Tensor
    ) -> Tensor:
        keep = ()
        for shape in self.shapes:
            dropout = self.attention_dropout if len(shape) == 4 else self.hidden_dropout
            keep = keep + (dropout(ops.ones(shape, ms.float32)),)  # noqa: RUF005 (GRAPH mode parses this)
        logits = self.bert(input_ids, token_type_id, input_mask, keep)[0]
        return self.loss(logits, label_ids)


class TrainCell(nn.Cell):
    """The model zoo's ``BertEvaluationCell``: loss, gradients, per-tensor clipping, optimizer."""

    def __init__(self, network: nn.Cell, optimizer: nn.Optimizer, sens: float = 1.0) -> None:
        super().__init__(auto_prefix=False)
        self.network = network
        self.network.set_grad()
        self.weights = optimizer.parameters
        self.optimizer = optimizer
        self.sens = sens
        self.grad = ops.GradOperation(get_by_list=True, sens_param=True)
        self.cast = ops.Cast()
        self.hyper_map = ops.HyperMap()

    def construct(
        self, input_ids: Tensor, input_mask: Tensor, token_type_id: Tensor, label_ids: Tensor
    ) -> Tensor:
        weights = self.weights
        loss = self.network(input_ids, input_mask, token_type_id, label_ids)
        grads = self.grad(self.network, weights)(
            input_ids,
            input_mask,
            token_type_id,
            label_ids,
            self.cast(ops.fill(ms.float32, (), self.sens), ms.float32),
        )
        grads = self.hyper_map(ops.partial(clip_grad, GRADIENT_CLIP_TYPE, GRADIENT_CLIP_VALUE), grads)
        self.optimizer(grads)
        return loss


def pad_to(batch: Batch, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The batch's ids, mask, token types and labels with every sequence padded to ``length``."""
    extra = length - batch.input_ids.shape[1]
    ids = np.pad(batch.input_ids, ((0, 0), (0, extra)))
    mask = np.pad(batch.attention_mask, ((0, 0), (0, extra)))
    types = np.pad(batch.token_type_ids, ((0, 0), (0, extra)))
    assert batch.labels is not None
    return ids, mask, types, batch.labels


def warm_up(
    step: Callable[[Batch], object],
    warmup: list[Batch],
    timed: list[Batch],
    shape: Callable[[Batch], tuple[int, int]],
) -> tuple[int, float]:
    """Run ``step`` on ``warmup`` then on one batch of every shape of ``timed`` not seen yet.

    Returns the number of distinct shapes and the wall time of it all (compiles included).
    """
    start = time.perf_counter()
    seen = set()
    for batch in warmup:
        step(batch)
        seen.add(shape(batch))
    for batch in timed:
        if shape(batch) not in seen:
            step(batch)
            seen.add(shape(batch))
    return len(seen), time.perf_counter() - start


def main() -> int:
    """Time both loops on the same examples and print samples/s and the ratio."""
    args = parse_args(__doc__)
    work = sst2_workload(args)
    config, weights = work.config, work.weights
    batches, timed = work.batches, work.timed
    backend, model = work.zoo_model("mindspore", args.threads)

    trainer = backend.make_trainer(model, TrainSpec("classification"))
    limit = config.max_position_embeddings

    def zoo_shape(batch: Batch) -> tuple[int, int]:
        return len(batch), padded_length(batch.input_ids.shape[1], limit)

    def zoo_step(batch: Batch) -> None:
        train_step(trainer, batch, 2e-5)

    # the backend runs in PyNative mode and compiles its step with mindspore.jit
    zoo_shapes, zoo_warmup = warm_up(zoo_step, batches[: args.warmup], timed, zoo_shape)

    ms.set_context(mode=ms.GRAPH_MODE)  # as the model zoo's scripts run
    reference_model = backend.build_model(config)
    backend.load_weights(reference_model, weights)
    network = NetworkWithLoss(reference_model, 32, args.max_seq_length)
    params = network.trainable_params()
    decay = [p for p in params if "layernorm" not in p.name.lower() and "bias" not in p.name.lower()]
    other = [p for p in params if "layernorm" in p.name.lower() or "bias" in p.name.lower()]
    groups = [
        {"params": decay, "weight_decay": 1e-4},
        {"params": other, "weight_decay": 0.0},
        {"order_params": params},
    ]
    optimizer = nn.AdamWeightDecay(groups, learning_rate=2e-5, eps=1e-6)
    cell = TrainCell(network, optimizer)
    cell.set_train(True)

    def reference_step(batch: Batch) -> None:
        ids, mask, types, labels = pad_to(batch, args.max_seq_length)
        loss = cell(
            Tensor(ids.astype(np.int32)),
            Tensor(mask.astype(np.int32)),
            Tensor(types.astype(np.int32)),
            Tensor(labels.astype(np.int32)),
        )
        loss.asnumpy()

    reference_shapes, reference_warmup = warm_up(
        reference_step, batches[: args.warmup], timed, lambda batch: (len(batch), args.max_seq_length)
    )

    # the loops take turns, a step each, so that load from elsewhere weighs on both alike
    zoo_seconds = reference_seconds = 0.0
    for batch in timed:
        ms.set_context(mode=ms.PYNATIVE_MODE)
        start = time.perf_counter()
        zoo_step(batch)
        zoo_seconds += time.perf_counter() - start
        ms.set_context(mode=ms.GRAPH_MODE)
        start = time.perf_counter()
        reference_step(batch)
        reference_seconds += time.perf_counter() - start
    zoo = rates("zoo mindspore", timed, zoo_seconds, config, lambda batch: zoo_shape(batch)[1])
    reference = rates(
        f"TinyBERT-style (padded to {args.max_seq_length})",
        timed,
        reference_seconds,
        config,
        lambda batch: args.max_seq_length,
    )
    zoo_rate, reference_rate = zoo["samples_per_s"], reference["samples_per_s"]
    zoo_length = zoo["mean_padded_length"]

    print(
        f"mindspore {ms.__version__}, threads {args.threads}, batch 32, "
        f"max_seq_length {args.max_seq_length}, "
        f"{args.steps} timed steps each (alternating) after {args.warmup} "
        "(+ one per shape not yet compiled)"
    )
    print(
        f"zoo mindspore (per-batch padding, mean {zoo_length:.1f}): {rates_line(zoo)}  "
        f"[{zoo_shapes} shapes, warm-up {zoo_warmup:.0f} s]"
    )
    print(
        f"TinyBERT-style (padded to {args.max_seq_length}):          {rates_line(reference)}  "
        f"[{reference_shapes} shape, warm-up {reference_warmup:.0f} s]"
    )
    print(f"speed-up: {zoo_rate / reference_rate:.2f}x (target >= 2.5x)")
    if args.json is not None:
        ratio = zoo_rate / reference_rate
        name = "zoo mindspore / TinyBERT-style padded"
        report = {
            "environment": {"mindspore": ms.__version__, "threads": args.threads, "steps": args.steps},
            "results": [
                {**zoo, "shapes": zoo_shapes, "warmup_s": zoo_warmup},
                {**reference, "shapes": reference_shapes, "warmup_s": reference_warmup},
            ],
            "ratios": {name: ratio},
            "targets": {name: {"min": 2.5, "pass": ratio >= 2.5}},
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
