"""Recipe sections shared by every recipe kind."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from zoo_core.errors import TaskError


class Section(BaseModel):
    """Base of every recipe model: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(Section):
    """Where the task's files are and how to tokenise them."""

    dir: Path = Field(description="folder with the task's train.tsv / dev.tsv (relative to the cwd)")
    max_seq_length: int = Field(128, ge=8, le=512, description="truncate examples to this many tokens")
    train_split: str = "train"
    eval_split: str | None = Field(None, description="default: the task's dev split")
    cache_dir: Path | None = Field(
        None, description="tokenised-data cache; default $ZOO_CACHE_DIR or ~/.cache/zoo"
    )


class TrainConfig(Section):
    """Optimisation: length, batch, AdamW, schedule, seed and logging cadence."""

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
    seed: int = 42
    logging_steps: int = Field(50, gt=0, description="log loss / lr / speed every N steps")

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
    task: str = Field(description="GLUE task: sst2, cola, mrpc, stsb, qqp, mnli, qnli, rte, wnli")
    device: Literal["cpu", "gpu", "ascend"] = "cpu"
    output_dir: Path | None = Field(None, description="default runs/<name>")
    backend_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="backend-only knobs, validated by that backend"
    )

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str) -> str:
        from zoo_core.tasks import get_task

        try:
            return get_task(value).name
        except TaskError as exc:
            raise ValueError(str(exc)) from None

    @property
    def run_dir(self) -> Path:
        """The run directory: output_dir or runs/<name>."""
        return self.output_dir or Path("runs") / self.name
