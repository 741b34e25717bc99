"""The ZooError hierarchy.

Every error a user can cause (a bad recipe, a missing file, an unknown backend, a
corrupt checkpoint) is raised as a subclass of :class:`ZooError`.  The CLI turns
them into one line on stderr and the exit code below — never a traceback.
"""

from __future__ import annotations


class ZooError(Exception):
    """Base class of every error zoo reports to a user; ``exit_code`` is the CLI's."""

    exit_code: int = 2


class RecipeError(ZooError):
    """A recipe file is missing, not YAML, or does not validate."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        #: one line per problem, each naming the file, the YAML path and what was expected
        self.problems: list[str] = problems or [message]


class DataError(ZooError):
    """A data file is missing or malformed (bad row, label outside the task's set)."""


class TaskError(ZooError):
    """An unknown task name or a task that cannot do what was asked."""


class ModelError(ZooError):
    """An unknown architecture, a model directory without config/vocab/weights."""


class CheckpointError(ZooError):
    """A checkpoint is unreadable, truncated, or its weights do not fit its config."""


class RunDirError(ZooError):
    """An output directory that belongs to another recipe or cannot be written."""


class TrainingError(ZooError):
    """Training went wrong in a way the user can fix: a non-finite loss or gradient norm."""


class BackendError(ZooError):
    """Base class of errors about backends."""


class UnknownBackendError(BackendError):
    """No backend of that name is known to zoo or installed."""


class BackendUnavailableError(BackendError):
    """A known backend is not installed, or its plugin or framework fails to import."""


class IncompatiblePluginError(BackendUnavailableError):
    """A backend plugin built for another zoo-core release (outside its declared range)."""


class DeviceUnavailableError(BackendError):
    """The recipe asks for a device this backend or machine does not have."""


class ExportError(ZooError):
    """An export that cannot be made, or that does not reproduce the trained model."""
