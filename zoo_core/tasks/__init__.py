"""GLUE tasks: layouts, label sets and metrics (see :mod:`zoo_core.tasks.glue`)."""

from zoo_core.tasks.glue import TASKS, SplitSpec, Task, get_task
from zoo_core.tasks.metrics import compute_metrics

__all__ = ["TASKS", "SplitSpec", "Task", "compute_metrics", "get_task"]
