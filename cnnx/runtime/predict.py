"""Classify images with an exported model: ``Classifier(path).predict(["a.png"])``.

Images are decoded and preprocessed one at a time (what the spec's recipe says),
then run through the model a batch at a time; probabilities are the softmax of
the model's logits divided by the spec's calibration temperature, and an image
whose largest probability is below the spec's refusal threshold is refused: it
is not one of the model's classes (``Prediction.label`` None, ``refused`` says why).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, cast

import numpy as np

from cnnx.core import calibration as cal
from cnnx.core.contract import normalise
from cnnx.core.errors import ConfigError, ImageError, ModelFileError
from cnnx.core.machine import physical_cores
from cnnx.core.spec import SpecOptions
from cnnx.runtime.backends import open_model
from cnnx.runtime.image import (
    RECIPE_NAMES,
    EncodedImage,
    ImageSource,
    preprocess,
    preprocess_batch,
    save_preprocessed,
    source_name,
)
from cnnx.runtime.parallel import auto_workers, decode

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "mnist.onnx"
DEFAULT_BATCH = 256  # images per model call: large enough to amortise the call, small enough to stream


def resolve_model(path: str | Path | None) -> Path:
    """The model file to use: ``path``, or the default model shipped in the package."""
    if path is not None:
        return Path(path)
    if not DEFAULT_MODEL.is_file():
        raise ModelFileError(
            f"no default model: {DEFAULT_MODEL} is not installed",
            "pass --model FILE.onnx (make one with `cnnx train` and `cnnx export`)",
        )
    return DEFAULT_MODEL


@dataclass
class Prediction:
    """The result for one image; ``error`` is set (and the rest empty) when it could not be classified."""

    path: str  # the file as given, or "<Image>" / "<ndarray>" for in-memory images
    label: str | None = None  # top-1 class name; None when refused or failed
    probability: float | None = None  # its calibrated probability
    index: int | None = None  # its class index
    top_k: list[tuple[str, float]] = field(default_factory=list)  # (class, probability), best first
    error: str | None = None  # why it failed, one line
    preprocessed: str | None = None  # where --save-preprocessed wrote what the model saw
    refused: str | None = None  # why the image is not one of the classes, one line; None = answered

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        # fields read directly: dataclasses.asdict deep-copies, and a server calls this per image
        d: dict[str, Any] = {f.name: getattr(self, f.name) for f in _FIELDS}
        d["top_k"] = [{"label": c, "probability": p} for c, p in self.top_k]
        keep = {"label"} if self.refused else set()  # a refusal says "label": null outright
        return {
            k: v for k, v in d.items() if (v is not None or k in keep) and not (k == "top_k" and not v and self.error)
        }


_FIELDS = fields(Prediction)


class _Namer:
    """File names for --save-preprocessed: the source's stem, made unique within one run."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.used = Path(folder), set[str]()

    def __call__(self, source: ImageSource, position: int) -> Path:
        stem = Path(source).stem if isinstance(source, (str, Path)) else f"image-{position}"
        name, n = f"{stem}.png", 1
        while name in self.used:
            name, n = f"{stem}-{n}.png", n + 1
        self.used.add(name)
        return self.folder / name


@dataclass
class Pending:
    """Images decoded and waiting for the model (``Classifier.decode``)."""

    predictions: list[Prediction]  # one per image, in order; those that failed carry their error
    good: list[Prediction]  # those that decoded, in order
    pixels: list[np.ndarray]  # their uint8 (C, H, W) pixels, in the same order


def _chunks(items: Iterable[ImageSource], size: int) -> Iterator[tuple[int, list[ImageSource]]]:
    """(position of the first, list of up to ``size`` items), in order."""
    chunk: list[ImageSource] = []
    position = 0
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield position, chunk
            position, chunk = position + size, []
    if chunk:
        yield position, chunk


class Classifier:
    """An exported cnnx model ready to classify images.

    ``model_path``: an .onnx file from ``cnnx export``; None = the default model shipped
    with cnnx. ``threads``: onnxruntime intra-op threads, None/0 = physical cores.
    ``preprocess``: None = the recipe the model's spec names, or "plain" (resize only).
    ``workers``: processes decoding images, None/0 = the physical cores for 2,048 or more
    files on Linux, else none (1 = decode in this process).
    ``reject``: refuse images that are not one of the classes (label None, ``refused`` set);
    None = when the spec carries a refusal threshold, True = insist on one, False = never.
    ``mean``, ``std``, ``size`` ((H, W) or one side), ``classes``: for an ONNX file that carries
    no cnnx spec, what its images need (one mean/std value serves every channel); the colour
    mode follows the model's channel count, and ``preprocess`` names the recipe ("resize" default).

    One Classifier may be shared by threads: onnxruntime sessions are thread-safe and
    predicting keeps no state between calls.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        threads: int | None = None,
        preprocess: str | None = None,
        batch_size: int = DEFAULT_BATCH,
        workers: int | None = None,
        *,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        size: int | tuple[int, int] | None = None,
        classes: Sequence[str] | None = None,
        reject: bool | None = None,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {batch_size}")
        if workers is not None and workers < 0:
            raise ConfigError(f"workers must be 0 (automatic) or more, got {workers}")
        if preprocess not in (None, "plain", *RECIPE_NAMES):
            raise ConfigError(f"unknown preprocessing {preprocess!r}", "use the model's own (default) or 'plain'")
        options = SpecOptions.of(mean, std, size, classes, preprocess if preprocess in RECIPE_NAMES else "resize")
        self.model = open_model(resolve_model(model_path), threads=threads, options=options)
        self.spec = self.model.spec
        self.temperature = cal.temperature_of(self.spec.calibration)
        self.openset = self.spec.openset if reject is not False else None
        if reject and self.openset is None:
            raise ConfigError(
                f"{self.model.path} carries no refusal threshold, "
                f"so it cannot refuse what is not a {cal.noun(self.spec)}",
                "train and export it with this cnnx (held-out images fit the threshold), or leave out --reject",
            )
        self.recipe = preprocess
        self.batch_size = batch_size
        self.workers = workers or None

    @property
    def classes(self) -> list[str]:
        return self.spec.classes

    def pixels(self, source: ImageSource) -> np.ndarray:
        """One image as the uint8 (C, H, W) pixels the model sees (before normalisation)."""
        return preprocess(source, self.spec, self.recipe)

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 (N, C, H, W) preprocessed pixels -> float32 (N, num_classes) logits, as the file computes them."""
        spec = self.spec
        out = [
            self.model.run(normalise(pixels[i : i + self.batch_size], spec.mean, spec.std))
            for i in range(0, len(pixels), self.batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.spec.num_classes), np.float32)

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 (N, C, H, W) preprocessed pixels -> float32 (N, num_classes) calibrated probabilities."""
        return cal.softmax(self.logits(pixels), self.temperature)

    # predict() in three steps, for a caller that runs them apart (cnnx serve decodes on its event loop
    # and runs only the model in another thread): decode, answers (the model), finish.

    def decode(self, images: Sequence[ImageSource], save_dir: str | Path | None = None) -> Pending:
        """Step 1, no model call: the images decoded and preprocessed, and a Prediction for each
        (those that could not be read already carry their error); ``save_dir`` as in predict."""
        images = list(images)
        namer = _Namer(Path(save_dir)) if save_dir is not None else None
        return Pending(*self._prepare(0, images, preprocess_batch(images, self.spec, self.recipe), namer))

    def answers(self, pixels: np.ndarray) -> tuple[np.ndarray, list[str | None]]:
        """Step 2, the model: (calibrated probabilities, why each image is refused or None) of uint8
        (N, C, H, W) pixels (``Pending.pixels``). onnxruntime runs without the GIL."""
        return self.answers_of(self.logits(pixels))

    def answers_of(self, logits: np.ndarray) -> tuple[np.ndarray, list[str | None]]:
        """Step 2 from (N, num_classes) logits already computed (``logits``): what ``answers`` returns."""
        return cal.softmax(logits, self.temperature), self._refusals(logits)

    def iter_predict(
        self, images: Iterable[ImageSource], top_k: int = 1, save_dir: str | Path | None = None
    ) -> Iterator[Prediction]:
        """One Prediction per image, in order, a batch at a time; bad images yield an error, not an exception.

        The model runs on one batch in a background thread (onnxruntime releases the GIL)
        while the next batch is decoded, so decoding and inference overlap.
        """
        if top_k < 1:
            raise ConfigError(f"--top-k must be at least 1, got {top_k}")
        k = min(top_k, self.spec.num_classes)
        namer = _Namer(Path(save_dir)) if save_dir is not None else None
        workers = self.workers if self.workers is not None else auto_workers(images, physical_cores())
        chunks = decode(_chunks(images, self.batch_size), self.spec, self.recipe, workers)
        head = list(itertools.islice(chunks, 2))
        if len(head) == 1:  # a single batch has nothing to overlap with: no thread to start
            preds, good, pixels = self._prepare(*head[0], namer)
            yield from self._finish(preds, good, self.answers(np.stack(pixels)) if pixels else None, k)
            return
        from concurrent.futures import ThreadPoolExecutor  # (and its logging) only for many batches

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cnnx-model") as pool:
            running = None  # (predictions, decoded ones, Future of their answers: probabilities, refusals)
            for decoded in itertools.chain(head, chunks):
                preds, good, pixels = self._prepare(*decoded, namer)
                job = pool.submit(self.answers, np.stack(pixels)) if pixels else None
                if running is not None:
                    yield from self._finish(*running, k)
                running = (preds, good, job)
            if running is not None:
                yield from self._finish(*running, k)

    def _prepare(
        self, position: int, chunk: list[ImageSource], decoded: list, namer: _Namer | None
    ) -> tuple[list[Prediction], list[Prediction], list[np.ndarray]]:
        """A decoded chunk -> (all predictions, those that decoded, their pixels)."""
        preds, good, pixels = [], [], []
        for i, (source, result) in enumerate(zip(chunk, decoded, strict=False)):
            pred = Prediction(path=source_name(source))
            preds.append(pred)
            if isinstance(result, ImageError):
                pred.error = str(result)
                continue
            if namer is not None:
                try:
                    pred.preprocessed = str(save_preprocessed(result, namer(source, position + i)))
                except ImageError as exc:
                    pred.error = str(exc)
                    continue
            good.append(pred)
            pixels.append(result)
        return preds, good, pixels

    def finish(
        self, pending: Pending, answers: tuple[np.ndarray, list[str | None]] | None, top_k: int = 1
    ) -> list[Prediction]:
        """Step 3: the Predictions of ``pending`` with ``answers`` (step 2 on its pixels; None when it has none)."""
        return self._finish(pending.predictions, pending.good, answers, min(top_k, self.spec.num_classes))

    def _finish(self, preds: list[Prediction], good: list[Prediction], answers: Any, k: int) -> list[Prediction]:
        """Fill in the decoded predictions from ``answers``: ``answers()``' pair, a Future of one, or None."""
        if answers is not None:
            probs, refused = answers.result() if hasattr(answers, "result") else answers  # (n, K), n reasons
            order = np.argsort(-probs, axis=1, kind="stable")[:, :k]  # (n, k) best first
            best = np.take_along_axis(probs, order, axis=1)  # (n, k) their probabilities
            classes = self.spec.classes
            for pred, idx, ps, why in zip(good, order.tolist(), best.tolist(), refused, strict=False):
                pred.top_k = [(classes[j], p) for j, p in zip(idx, ps, strict=False)]
                pred.probability = ps[0]
                if why:
                    pred.refused = why
                else:
                    pred.index, pred.label = idx[0], classes[idx[0]]
        return preds

    def _refusals(self, logits: np.ndarray) -> list[str | None]:
        """Per row of (n, K) logits: why it is refused, or None when it is answered."""
        if self.openset is None:
            return [None] * len(logits)
        threshold = float(self.openset["threshold"])
        score = cal.scores(logits, temperature=self.temperature, method=self.openset["method"])  # (n,)
        noun = cal.noun(self.spec)
        return [
            None if s >= threshold else f"not a {noun}: score {s:.3f} is below the model's threshold {threshold:.3f}"
            for s in score.tolist()
        ]

    def predict(
        self,
        images: ImageSource | Iterable[ImageSource],
        top_k: int = 1,
        errors: str = "raise",
        save_dir: str | Path | None = None,
    ) -> list[Prediction]:
        """Classify images (paths, Pillow images, arrays, EncodedImage bytes); one Prediction each, in order.

        ``errors="raise"`` raises ImageError for the first image that cannot be read;
        ``errors="keep"`` returns it as a Prediction with ``error`` set instead.
        """
        if errors not in ("raise", "keep"):
            raise ConfigError(f"errors must be 'raise' or 'keep', got {errors!r}")
        many = not (isinstance(images, (str, Path, np.ndarray, EncodedImage)) or hasattr(images, "getpixel"))
        batch = cast("Iterable[ImageSource]", images) if many else [cast(ImageSource, images)]
        results = list(self.iter_predict(batch, top_k=top_k, save_dir=save_dir))
        if errors == "raise":
            bad = next((p for p in results if p.error), None)
            if bad is not None:
                raise ImageError(bad.error or "")
        return results
