"""Errors that core code raises and the CLI turns into one-line messages.

Each message names the bad value and says what to do about it; the CLI prints
``error: <message>`` and exits with the class's ``exit_code``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# One rejected try at making an export file: {"method", "error", "kind" (the error's class name),
# and "parity" (the gate's numbers) when the file was made and measured}
Attempt = dict[str, Any]


class CnnxError(Exception):
    """Base class: a user-facing failure with a way out.

    ``report``: the command's result when the failure is a result in its own right (a failed
    parity gate's numbers), printed by ``--json`` before the one-line error; None otherwise.
    """

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None, *, report: dict[str, Any] | None = None) -> None:
        self.message = message
        self.hint = hint
        self.report = report
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(CnnxError):
    """An option value or a combination of options that cannot work."""


class DataNotFoundError(CnnxError):
    """A dataset is neither on disk nor downloadable."""


class CheckpointError(CnnxError):
    """A checkpoint that is missing, corrupt, unsafe or of another architecture."""


class ModelFileError(CnnxError):
    """An exported model file (.onnx, TorchScript) that cannot be used, or cannot be made.

    ``attempts``: when every way of making an export file failed, what each one said.
    """

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        attempts: Sequence[Attempt] = (),
        report: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, hint, report=report)
        self.attempts = list(attempts)


class NoSpecError(ModelFileError):
    """A model file (ONNX from another tool) without the cnnx spec that says how to prepare its images."""


class TrainingError(CnnxError):
    """Training that cannot go on (e.g. the processes of a distributed run fell out of step)."""


class ImageError(CnnxError):
    """An image that cannot be decoded or preprocessed."""


class ParityError(CnnxError):
    """An export whose outputs differ from the source model beyond tolerance.

    ``summary``: the gate's numbers for the file that failed (differences, agreement, accuracy,
    size ratio, ``passed``); ``attempts``: every method tried, when none passed.
    """

    exit_code = 3

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        summary: dict[str, Any] | None = None,
        attempts: Sequence[Attempt] = (),
        report: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, hint, report=report)
        self.summary = dict(summary or {})
        self.attempts = list(attempts)
