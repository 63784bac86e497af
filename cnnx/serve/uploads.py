"""Uploaded images as files the runtime decodes: the same decoder, limits and recipe as ``cnnx infer``.

The runtime reads images from files (``cnnx.runtime.image.open_image``: Pillow's bomb
limit, EXIF orientation, every mode brought to 8-bit, the file handle always closed). An
upload is given to it as an in-memory file (Linux ``memfd``: no disk, gone when closed),
so a picture sent to the server is decoded by exactly the code that decodes it from disk.
Elsewhere a private temporary folder holds the files for the length of one batch.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from types import TracebackType

from cnnx.runtime.predict import Prediction


@dataclass
class Upload:
    """One image as received: the name the client gave it (file name, or "body") and its bytes."""

    name: str
    data: bytes


class AsFiles:
    """``with AsFiles(uploads) as paths``: one readable path per upload, in order; all gone on exit."""

    def __init__(self, uploads: list[Upload]) -> None:
        self.uploads = uploads
        self.fds: list[int] = []
        self.folder: str | None = None

    def __enter__(self) -> list[str]:
        try:
            return [self._file(i, u.data) for i, u in enumerate(self.uploads)]
        except BaseException:
            self.close()
            raise

    def _file(self, i: int, data: bytes) -> str:
        if hasattr(os, "memfd_create"):
            fd = os.memfd_create(f"cnnx-upload-{i}", os.MFD_CLOEXEC)
            self.fds.append(fd)
            view = memoryview(data)
            while view:  # os.write may take less than it was given
                view = view[os.write(fd, view) :]
            return f"/proc/self/fd/{fd}"
        if self.folder is None:
            self.folder = tempfile.mkdtemp(prefix="cnnx-serve-")
        path = os.path.join(self.folder, str(i))
        with open(path, "wb") as f:
            f.write(data)
        return path

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def named(pred: Prediction, path: str, name: str) -> Prediction:
    """``pred`` as the client knows it: its upload's name in place of the in-memory file's path,
    in ``path`` and at the head of an error message (the runtime's messages start "PATH: ...")."""
    pred.path = name
    if pred.error is not None and pred.error.startswith(path):
        pred.error = name + pred.error[len(path) :]
    return pred
