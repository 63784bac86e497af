"""Errors that core code raises and the CLI turns into one-line messages.

Each message names the bad value and says what to do about it; the CLI prints
``error: <message>`` and exits with the class's ``exit_code``.
"""

from __future__ import annotations


class CnnxError(Exception):
    """Base class: a user-facing failure with a way out."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
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
    """An exported model file (.onnx, TorchScript) that cannot be used."""


class TrainingError(CnnxError):
    """Training that cannot go on (e.g. the processes of a distributed run fell out of step)."""


class ImageError(CnnxError):
    """An image that cannot be decoded or preprocessed."""


class ParityError(CnnxError):
    """An export whose outputs differ from the source model beyond tolerance."""

    exit_code = 3
