"""Micro-batching: requests that arrive together run through the model together.

One thread per model takes jobs from a bounded queue. It takes every job already
waiting, up to ``max_batch`` images; while requests are still being read (``arriving``)
it waits for them, at most ``max_delay`` seconds after the batch began. A lone request
therefore never waits, and under load each model call carries the requests that came
in during the previous one. Decoding happens in this thread too, through the runtime's
own ``Classifier.predict``, so the event loop only moves bytes.

The model is read once per batch: a reload swaps ``current`` (classifier, version) whole, the
batch in flight finishes on the old model and the next one runs on the new.
"""

from __future__ import annotations

import queue
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, InvalidStateError
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnx.runtime.image import EncodedImage
from cnnx.runtime.predict import Classifier, Prediction
from cnnx.serve.errors import RequestError

_STOP = object()  # the last item a closing batcher takes


@dataclass
class Job:
    """One request's work: images to classify, or a tensor to run (the v2 protocol)."""

    uploads: list[EncodedImage] | None = None  # images, as received (the client's name, the bytes)
    tensor: np.ndarray | None = None  # float32 (n, C, H, W), already normalised
    top_k: int = 1  # classes listed per image
    preview: bool = False  # also return each image as the model saw it (a PNG data URL)
    future: Future = field(default_factory=Future)  # -> (version, predictions or (n, K) float32 logits)

    @property
    def size(self) -> int:
        return len(self.uploads) if self.uploads is not None else len(self.tensor)  # type: ignore[arg-type]


def _settle(job: Job, result: Any = None, error: BaseException | None = None) -> None:
    """Hand a job its answer; a job whose client has gone (cancelled) takes none."""
    with suppress(InvalidStateError):
        job.future.set_exception(error) if error is not None else job.future.set_result(result)


class Batcher:
    """A model's queue and the thread that runs it; ``submit(job)`` returns the job's Future."""

    def __init__(
        self,
        classifier: Classifier,
        max_batch: int,
        max_delay: float,
        max_queue: int,
        observe: Callable[[int], None] | None = None,
        name: str = "model",
    ) -> None:
        self.current = (classifier, 1)  # (classifier, version): replaced whole by a reload; a batch reads it once
        self.max_batch, self.max_delay = max_batch, max_delay  # images; seconds
        self.queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self.observe = observe or (lambda n: None)  # called with each batch's image count
        self._arriving = 0  # requests being read that will submit a job
        self._lock = threading.Lock()
        self._carry: Job | None = None  # a job that did not fit the last batch: the next one starts with it
        self.thread = threading.Thread(target=self._loop, name=f"cnnx-batch-{name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    @contextmanager
    def arriving(self) -> Iterator[None]:
        """Around reading a request: the batch being gathered waits for it (up to max_delay)."""
        with self._lock:
            self._arriving += 1
        try:
            yield
        finally:
            with self._lock:
                self._arriving -= 1

    def submit(self, job: Job) -> Future:
        try:
            self.queue.put_nowait(job)
        except queue.Full:
            raise RequestError(
                503,
                f"the server is busy: {self.queue.maxsize} requests are already waiting for the model",
                "retry in a second",
                headers={"Retry-After": "1"},
            ) from None
        return job.future

    def close(self, timeout: float | None = None) -> None:
        """Finish every job already queued, then stop the thread."""
        if self.thread.is_alive():
            self.queue.put(_STOP)
            self.thread.join(timeout)

    def _loop(self) -> None:
        while True:
            first = self._carry if self._carry is not None else self.queue.get()
            self._carry = None
            if first is _STOP:
                return
            batch, stop = self._gather(first)
            batch = [j for j in batch if j.future.set_running_or_notify_cancel()]  # clients still there
            if batch:
                self._run(batch)
            if stop:
                return

    def _gather(self, first: Job) -> tuple[list[Job], bool]:
        """(the batch starting with ``first``, whether the stop sign was met)."""
        batch, n = [first], first.size
        deadline = time.monotonic() + self.max_delay
        while n < self.max_batch:
            try:
                job = self.queue.get_nowait()
            except queue.Empty:
                wait = deadline - time.monotonic()
                if wait <= 0 or not self._arriving:
                    break
                try:
                    job = self.queue.get(timeout=wait)
                except queue.Empty:
                    break
            if job is _STOP:
                return batch, True
            if n + job.size > self.max_batch:
                self._carry = job
                break
            batch.append(job)
            n += job.size
        return batch, False

    def _run(self, batch: list[Job]) -> None:
        clf, version = self.current
        images = [j for j in batch if j.uploads is not None]
        tensors = [j for j in batch if j.uploads is None]
        self.observe(sum(j.size for j in batch))
        for jobs, work in ((images, self._classify), (tensors, self._forward)):
            if not jobs:
                continue
            try:
                work(clf, version, jobs)
            except Exception as exc:  # the model failed on this batch: its requests say so, the next batch runs
                for job in jobs:
                    _settle(job, error=exc)

    @staticmethod
    def _classify(clf: Classifier, version: int, jobs: list[Job]) -> None:
        uploads = [u for j in jobs for u in j.uploads or []]
        k = max(j.top_k for j in jobs)
        with _preview_folder(any(j.preview for j in jobs)) as folder:
            preds = clf.predict(uploads, top_k=k, errors="keep", save_dir=folder)
            if folder is not None:
                _read_previews(preds)
        start = 0
        for job in jobs:
            mine = preds[start : start + job.size]
            start += job.size
            for p in mine:
                p.top_k = p.top_k[: job.top_k]  # the best k of a longer best-first list
                if not job.preview:
                    p.preprocessed = None
            _settle(job, (version, mine))

    @staticmethod
    def _forward(clf: Classifier, version: int, jobs: list[Job]) -> None:
        x = np.concatenate([j.tensor for j in jobs if j.tensor is not None])  # (N, C, H, W) float32
        logits = clf.model.run(x)  # (N, K)
        start = 0
        for job in jobs:
            _settle(job, (version, logits[start : start + job.size]))
            start += job.size


@contextmanager
def _preview_folder(wanted: bool) -> Iterator[str | None]:
    """A folder for the runtime's --save-preprocessed PNGs while a batch runs, when a job asked for them."""
    if not wanted:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="cnnx-serve-seen-") as folder:
        yield folder


def _read_previews(preds: list[Prediction]) -> None:
    """Each saved PNG (exactly the pixels the model saw) as a data URL in place of its path."""
    import base64

    for p in preds:
        if p.preprocessed is not None:
            with open(p.preprocessed, "rb") as f:
                p.preprocessed = "data:image/png;base64," + base64.b64encode(f.read()).decode("ascii")
