"""Recipe sections shared by every recipe kind."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from zoo_core.datasets import resolve_data_path
from zoo_core.errors import TaskError


class Section(BaseModel):
    """Base of every recipe model: unknown keys are errors, assignments are validated."""

    # allow_inf_nan: a learning rate of .inf or .nan is a typo, never a setting
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


Column = str | int  # a header name / JSON key, or a 0-based index into a headerless file


class OwnTaskConfig(Section):
    """``task:`` as a mapping: the user's own classification or regression task."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="the task's name, e.g. trec6")
    type: Literal["classification", "regression"] = "classification"
    text: Column = Field("text", description="column / JSON key of the text (an int: headerless file)")
    text_pair: Column | None = Field(None, description="second text of pair tasks")
    label: Column = Field("label", description="column / JSON key of the label")
    labels: list[str] | None = Field(
        None, description="label order; default: the sorted set of labels in data.train"
    )
    metrics: list[str] | None = Field(
        None,
        description="main metric first; default accuracy, macro_f1 (classification) or pearson, spearman",
    )

    @field_validator("name")
    @classmethod
    def _not_glue(cls, value: str) -> str:
        from zoo_core.tasks import TASKS

        if value.lower().replace("-", "").replace("_", "") in TASKS:
            raise ValueError(f"{value} is a GLUE task; write task: {value}, or give your task another name")
        return value

    @field_validator("labels")
    @classmethod
    def _distinct_labels(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        stripped = [label.strip() for label in value]
        if any(not label for label in stripped):
            raise ValueError("labels must not be blank")
        if len(set(stripped)) != len(stripped):
            raise ValueError(f"labels repeat a name: {stripped}")
        return stripped

    @model_validator(mode="after")
    def _consistent(self) -> OwnTaskConfig:
        from zoo_core.tasks.metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS

        columns = [c for c in (self.text, self.text_pair, self.label) if c is not None]
        if len({isinstance(c, int) for c in columns}) > 1:
            raise ValueError("columns are all names (a file with a header) or all indices (no header)")
        if any(isinstance(c, int) and c < 0 for c in columns):
            raise ValueError("column indices start at 0")
        if len(set(columns)) != len(columns):
            raise ValueError(f"text, text_pair and label must be different columns, got {columns}")
        if self.type == "regression" and self.labels is not None:
            raise ValueError("a regression task has no labels; remove task.labels")
        allowed = REGRESSION_METRICS if self.type == "regression" else CLASSIFICATION_METRICS
        for metric in self.metrics or ():
            if metric not in allowed:
                raise ValueError(
                    f"metric {metric!r} does not fit {self.type}; choose from {', '.join(allowed)}"
                )
        if self.metrics is not None and not self.metrics:
            raise ValueError("metrics must name at least one metric (or be left out)")
        return self


#: the union tags of ``task``, which error messages leave out of the YAML path
TASK_TAGS = ("glue", "own")

TaskField = Annotated[
    Annotated[str, Tag("glue")] | Annotated[OwnTaskConfig, Tag("own")],
    Discriminator(lambda value: "glue" if isinstance(value, str) else "own"),
]


class DataConfig(Section):
    """Where the task's files are and how to tokenise them.

    A GLUE task reads ``dir`` (GLUE's layout); an own task reads ``train`` and
    ``dev`` (or carves ``dev_split`` out of train) and optionally ``test``.
    """

    dir: Path | None = Field(
        None, description="GLUE: folder with train.tsv / dev.tsv (the cwd's; data/... else the data root's)"
    )
    train: Path | None = Field(None, description="own task: the training file (.csv, .tsv, .jsonl)")
    dev: Path | None = Field(None, description="own task: a labelled dev file; default: dev_split of train")
    dev_split: float | None = Field(
        None, gt=0, lt=1, description="own task without dev: this fraction of train (default 0.1)"
    )
    split_seed: int = Field(42, ge=0, description="seed of dev_split (stratified for classification)")
    test: Path | None = Field(None, description="own task: a labelled test file (`zoo eval --split test`)")
    format: Literal["auto", "csv", "tsv", "jsonl"] = Field("auto", description="auto: by extension")
    max_seq_length: int = Field(128, ge=8, le=512, description="truncate examples to this many tokens")
    train_split: str = "train"
    eval_split: str | None = Field(None, description="default: the task's dev split")
    cache_dir: Path | None = Field(
        None, description="tokenised-data cache; default $ZOO_CACHE_DIR or ~/.cache/zoo"
    )

    @field_validator("dir", "train", "dev", "test")
    @classmethod
    def _from_data_root(cls, value: Path | None) -> Path | None:
        """``data/...`` missing from the cwd is read from the data root (:mod:`zoo_core.datasets`)."""
        return None if value is None else resolve_data_path(value)

    @model_validator(mode="after")
    def _one_dev(self) -> DataConfig:
        if self.dev is not None and self.dev_split is not None:
            raise ValueError("give data.dev or data.dev_split, not both")
        return self


class LossScalingConfig(Section):
    """How a dynamic fp16 loss scale moves (torch.amp.GradScaler's defaults; see zoo_core/precision.py)."""

    init_scale: float = Field(2.0**16, gt=0, description="the first scale (MindSpore: loss_scale_value)")
    growth_factor: float = Field(2.0, gt=1, description="times this after growth_interval good steps")
    backoff_factor: float = Field(0.5, gt=0, lt=1, description="times this after an overflowed step")
    growth_interval: int = Field(2000, gt=0, description="good steps to grow after (scale_window)")


class TrainConfig(Section):
    """Optimisation: length, batch, AdamW, schedule, precision, seed and logging cadence."""

    num_epochs: float | None = Field(3.0, gt=0, description="epochs over the training split")
    max_steps: int | None = Field(None, gt=0, description="stop after this many steps (wins over num_epochs)")
    batch_size: int = Field(
        32, gt=0, description="examples per device per micro-batch (global batch: x accumulation x devices)"
    )
    gradient_accumulation_steps: int = Field(
        1, gt=0, description="micro-batches whose gradients are summed into one update"
    )
    learning_rate: float = Field(5e-5, gt=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="linear warm-up as a fraction of all steps")
    warmup_steps: int | None = Field(None, ge=0, description="linear warm-up steps (wins over warmup_ratio)")
    weight_decay: float = Field(0.01, ge=0)
    max_grad_norm: float | None = Field(1.0, gt=0, description="global-norm clipping; null disables")
    seed: int = Field(42, ge=0, le=2**32 - 1)
    logging_steps: int = Field(50, gt=0, description="log loss / lr / speed every N steps")
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="fp32, or bf16 / fp16 autocast (weights, optimizer and checkpoints stay fp32)"
    )
    loss_scale: Literal["dynamic", "none"] | float = Field(
        "dynamic", description="fp16 only: dynamic, a fixed positive number, or none"
    )
    loss_scaling: LossScalingConfig = Field(
        default_factory=LossScalingConfig, description="fp16 with a dynamic loss_scale: how the scale moves"
    )

    @field_validator("loss_scale", mode="before")
    @classmethod
    def _loss_scale(cls, value: Any) -> Any:
        if value in ("dynamic", "none"):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < math.inf:
            return float(value)
        raise ValueError(f"expected dynamic, none or a positive number, got {value!r}")

    @model_validator(mode="after")
    def _some_length(self) -> TrainConfig:
        if self.num_epochs is None and self.max_steps is None:
            raise ValueError("give num_epochs or max_steps")
        return self


class EvalConfig(Section):
    """When and how to evaluate on the dev split."""

    every_epoch: bool = True
    every_steps: int | None = Field(None, gt=0, description="also evaluate every N steps")
    batch_size: int = Field(128, gt=0)


class CheckpointConfig(Section):
    """Which checkpoints to write and keep (the best one is always kept)."""

    save_steps: int | None = Field(
        None, gt=0, description="also checkpoint every N steps; default: at each evaluation"
    )
    keep_last: int = Field(2, ge=1, description="how many recent step checkpoints to keep")


class RecipeBase(Section):
    """Fields every recipe kind has."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="names the run directory runs/<name>"
    )
    description: str = ""
    task: TaskField = Field(
        description="a GLUE task (sst2, cola, mrpc, stsb, qqp, mnli, qnli, rte, wnli) or your own (a mapping)"
    )
    device: Literal["cpu", "gpu", "ascend"] = "cpu"
    output_dir: Path | None = Field(None, description="default runs/<name>")
    backend_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="backend-only knobs, validated by that backend"
    )

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str | OwnTaskConfig) -> str | OwnTaskConfig:
        from zoo_core.tasks import get_task

        if isinstance(value, OwnTaskConfig):
            return value
        try:
            return get_task(value).name
        except TaskError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _data_fits_task(self) -> RecipeBase:
        data = getattr(self, "data", None)
        if isinstance(data, DataConfig):
            self._check_data(data)
        return self

    @property
    def task_name(self) -> str:
        """The task's name, GLUE or own."""
        return self.task if isinstance(self.task, str) else self.task.name

    def _check_data(self, data: DataConfig) -> None:
        """Each task kind gets the data fields it reads; an own task's dev_split defaults to 0.1."""
        own_fields = ("train", "dev", "dev_split", "test")
        if isinstance(self.task, str):
            given = [f"data.{f}" for f in own_fields if getattr(data, f) is not None]
            if given:
                raise ValueError(f"{given[0]} is for own tasks; GLUE task {self.task} reads data.dir")
            if data.dir is None:
                raise ValueError(f"data.dir: required for GLUE task {self.task} (its train.tsv / dev.tsv)")
            return
        if data.dir is not None:
            raise ValueError("data.dir is for GLUE tasks; an own task reads data.train (and data.dev)")
        if data.train is None:
            raise ValueError(f"data.train: required for own task {self.task.name}")
        if data.dev is None and data.dev_split is None:
            data.dev_split = 0.1

    @property
    def run_dir(self) -> Path:
        """The run directory: output_dir or runs/<name>."""
        return self.output_dir or Path("runs") / self.name
