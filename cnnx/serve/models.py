"""The models a server holds: loaded from one model file or a folder of them, reloaded in place
(load, verify, swap; the old model keeps serving when the new one fails).

A folder serves every file the edge runtime opens (the suffixes of ``cnnx.runtime.backends.LOADERS``:
``.onnx``, ``.ort``, ``.xml``, ``.tflite``). A model's name is its file name less ``.onnx``; files of the other
formats keep their suffix, so the files one ``cnnx export --format all`` writes are distinct models
(``mnist.onnx``, ``mnist.fp16.onnx``, ``mnist.ort``, ``mnist.xml``: ``mnist``, ``mnist.fp16``,
``mnist.ort``, ``mnist.xml``). Two files that would share a name (``a.ort`` and ``a.ort.onnx``) are
refused when the server starts.

A name from a request is only ever a key: it must look like a file name, and a reload opens
``FOLDER/NAME.onnx`` (``FOLDER/NAME`` for a name ending in another suffix) only after
checking that the resolved path (symbolic links followed) lies inside the model folder.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnx.core.contract import first_line
from cnnx.core.errors import CnnxError, ConfigError, ModelFileError
from cnnx.runtime.backends import LOADERS
from cnnx.runtime.predict import Classifier, resolve_model
from cnnx.serve.batcher import Batcher
from cnnx.serve.config import ServeConfig
from cnnx.serve.errors import RequestError

ONNX = ".onnx"  # the one suffix a model's name leaves out
SUFFIXES = tuple(LOADERS)  # every file the runtime opens by its suffix: .onnx, .ort, .xml, .tflite
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # a file name: no separators, no leading dot


def name_of(path: Path) -> str:
    """The name ``path`` is served under: its file name less ``.onnx``; a file the runtime opens by
    another suffix keeps it (``mnist.ort``); any other file (given by itself) its stem."""
    if path.name.endswith(ONNX):
        return path.name[: -len(ONNX)]
    return path.name if path.suffix in SUFFIXES else path.stem


def file_of(name: str) -> str:
    """The file name in the model folder that ``name`` is served from: the inverse of ``name_of``."""
    return name if Path(name).suffix in SUFFIXES and not name.endswith(ONNX) else name + ONNX


@dataclass
class Model:
    """One served model: its name, file, batcher (which holds the classifier) and load record."""

    name: str
    path: Path
    batcher: Batcher
    load_seconds: float = 0.0  # how long the last successful load and verification took

    @property
    def classifier(self) -> Classifier:
        return self.batcher.current[0]

    @property
    def version(self) -> int:
        """1 for the first load, one more for each successful reload."""
        return self.batcher.current[1]


def check_name(name: str) -> str:
    """``name`` if it can be a model's name; else a 400 naming it."""
    if not NAME.fullmatch(name) or ".." in name:
        raise RequestError(
            400,
            f"model name {name[:100]!r} is not a model name",
            "a model's name is its file name without .onnx (an .ort, .xml or .tflite file keeps its suffix): "
            "letters, digits, '.', '_' and '-'",
        )
    return name


def load(path: Path, threads: int, preprocess: str | None = None) -> tuple[Classifier, float]:
    """(a verified classifier for ``path``, seconds it took). Verified: the model runs on one
    all-zero input and gives one finite row of as many scores as the spec has classes."""
    start = time.perf_counter()
    clf = Classifier(path, threads=threads, preprocess=preprocess)  # decoding: the batcher, via Classifier.decode
    x = np.zeros((1, *clf.spec.input_shape), np.float32)  # (1, C, H, W)
    logits = clf.model.run(x)
    if logits.shape != (1, clf.spec.num_classes) or not np.isfinite(logits).all():
        raise ModelFileError(
            f"{path} failed its check: an all-zero input gave {logits.shape} "
            f"{'non-finite ' if not np.isfinite(logits).all() else ''}scores, "
            f"expected (1, {clf.spec.num_classes}) finite ones"
        )
    return clf, time.perf_counter() - start


class Repository:
    """``models``: name -> Model. ``folder``: where reloads look; ``default``: what /predict uses."""

    def __init__(self, config: ServeConfig, observe: Callable[[str, int], None]) -> None:
        source = resolve_model(config.model)
        self.config, self.observe = config, observe
        self.scan = source.is_dir()  # a folder: every model file in it is a model, and new ones can be loaded
        self.folder = Path(os.path.realpath(source if self.scan else source.parent))
        files = self._files(source) if self.scan else {name_of(source): source}
        self.models: dict[str, Model] = {}
        for name, path in files.items():
            self.models[name] = self._new(name, path)
        self.default = next(iter(self.models))
        self._reloading = threading.Lock()  # one reload at a time

    @staticmethod
    def _files(folder: Path) -> dict[str, Path]:
        """name -> file of every model file in ``folder``, by name; ConfigError for none, or two files with one name."""
        files: dict[str, Path] = {}
        for path in sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES and not p.name.startswith(".")):
            other = files.setdefault(name_of(path), path)
            if other != path:
                raise ConfigError(
                    f"{folder} holds {other.name} and {path.name}, both served as {name_of(path)!r}",
                    "rename one of them, or serve them from separate folders",
                )
        if not files:
            raise ConfigError(
                f"{folder} holds no model files ({', '.join(SUFFIXES)})", "give a model file or a folder of them"
            )
        return dict(sorted(files.items()))

    def _new(self, name: str, path: Path, loaded: tuple[Classifier, float] | None = None) -> Model:
        clf, seconds = loaded or load(path, self.config.model_threads, self.config.preprocess)
        c = self.config
        batcher = Batcher(
            clf, c.max_batch, c.max_delay_ms / 1000, c.max_queue, lambda n: self.observe(name, n), name=name
        )
        return Model(name, path, batcher, load_seconds=seconds)

    def get(self, name: str | None) -> Model:
        """The model a request names (None = the default); 400 for a name that cannot be one, 404 for no such model."""
        if name is None:
            return self.models[self.default]
        model = self.models.get(check_name(name))
        if model is None:
            raise RequestError(404, f"no model named {name!r}", f"this server has: {', '.join(self.models)}")
        return model

    def path_of(self, name: str) -> Path:
        """The file a reload of ``name`` reads, checked to lie inside the model folder."""
        if name in self.models and not self.scan:
            return self.models[name].path
        if not self.scan:
            raise RequestError(404, f"no model named {name!r}", f"this server serves only {self.default!r}")
        path = self.folder / file_of(check_name(name))
        real = os.path.realpath(path)
        if os.path.commonpath([str(self.folder), real]) != str(self.folder):
            raise RequestError(403, f"model {name!r} points outside the model folder ({real})", "cnnx does not load it")
        if not os.path.isfile(real):
            raise RequestError(404, f"no model named {name!r}", f"no file {path.name} in the model folder")
        return path

    def reload(self, name: str) -> Model:
        """Load ``name`` again from its file (or for the first time, from the model folder) and swap it in.

        Blocking: run it off the event loop. Raises RequestError (422) and keeps the model that
        was serving when the new file does not load or verify."""
        path = self.path_of(name)
        with self._reloading:
            try:
                clf, seconds = load(path, self.config.model_threads, self.config.preprocess)
            except CnnxError as exc:
                raise self._kept(name, exc.message) from None
            except Exception as exc:  # anything else a broken file provokes
                raise self._kept(name, first_line(exc)) from None
            model = self.models.get(name)
            if model is None:
                model = self._new(name, path, (clf, seconds))
                self.models[name] = model
            else:
                model.batcher.current = (clf, model.version + 1)  # the swap: one reference, read once per batch
            model.load_seconds = seconds
            return model

    def _kept(self, name: str, why: str) -> RequestError:
        model = self.models.get(name)
        kept = f"; still serving version {model.version}" if model else ""
        return RequestError(422, f"model {name!r} did not reload: {why}{kept}", "fix the file and reload again")

    async def close(self, timeout: float | None = None) -> None:
        """Finish the requests already queued (each model up to ``timeout`` seconds), then stop."""
        for model in list(self.models.values()):
            await model.batcher.close(timeout)
