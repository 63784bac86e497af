"""Micro-batching: requests that arrive together run through the model together.

Each model has a bounded queue, emptied by one task on the server's event loop. The task takes
every job waiting, up to ``max_batch`` images; while requests are still being read (``arriving``)
it waits for them, at most ``max_delay`` seconds after the batch began. A lone request therefore
never waits, and under load each model call carries the requests that came in during the previous
one.

Only the model call leaves the event loop, for the model's own thread (onnxruntime runs without
the GIL, so the loop reads and answers other requests meanwhile). Small batches of uploads, up to
INLINE_IMAGES images and INLINE_BYTES (64 digit PNGs are 20 KB, about 10 ms of decoding), are
decoded on the loop itself: decoding them in a second Python thread, as the server before this
design did, made the two threads take turns at the GIL for every batch (that server answered about
a fifth fewer requests at concurrency 32: `bench/serve_load.py --baseline`). Larger batches
(photos, a request of hundreds of images) are decoded in the model's thread, so the loop never
stalls on them for long.

The model is read once per batch: a reload swaps ``current`` (classifier, version) whole, the
batch in flight finishes on the old model and the next one runs on the new.

Everything here but ``current`` is used from the event loop only.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnx.runtime.image import EncodedImage
from cnnx.runtime.predict import Classifier, Prediction
from cnnx.serve.bodies import within
from cnnx.serve.errors import RequestError

# a batch of at most this many images and encoded bytes is decoded on the event loop
INLINE_IMAGES, INLINE_BYTES = 64, 256 * 1024


@dataclass
class Job:
    """One request's work: images to classify, or a tensor to run (the v2 protocol)."""

    uploads: list[EncodedImage] | None = None  # images, as received (the client's name, the bytes)
    tensor: np.ndarray | None = None  # float32 (n, C, H, W), already normalised
    top_k: int = 1  # classes listed per image
    preview: bool = False  # also return each image as the model saw it (a PNG data URL)
    future: asyncio.Future | None = None  # set by submit -> (version, predictions or (n, K) float32 logits)

    @property
    def size(self) -> int:
        return len(self.uploads) if self.uploads is not None else len(self.tensor)  # type: ignore[arg-type]


def _settle(job: Job, result: Any = None, error: BaseException | None = None) -> None:
    """Hand a job its answer; a job whose client has gone (its future cancelled) takes none."""
    future = job.future
    if future is None or future.done():
        return
    future.set_exception(error) if error is not None else future.set_result(result)


class Batcher:
    """A model's queue, the task that empties it and the thread the model runs in.

    ``submit(job)`` (on the event loop) returns the job's asyncio Future."""

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
        self.max_batch, self.max_delay, self.max_queue = max_batch, max_delay, max_queue  # images; seconds; jobs
        self.queue: deque[Job] = deque()  # jobs waiting for the model
        self.observe = observe or (lambda n: None)  # called with each batch's image count
        self.name = name
        self._arriving = 0  # requests being read that will submit a job
        self._more: asyncio.Event | None = None  # set by submit while a batch waits for arriving requests
        self._task: asyncio.Task | None = None  # empties the queue; started by the first job, ends with the queue
        self._model = ThreadPoolExecutor(1, thread_name_prefix=f"cnnx-model-{name}")

    @contextmanager
    def arriving(self) -> Iterator[None]:
        """Around reading a request: the batch being gathered waits for it (up to max_delay)."""
        self._arriving += 1
        try:
            yield
        finally:
            self._arriving -= 1

    def submit(self, job: Job) -> asyncio.Future:
        if len(self.queue) >= self.max_queue:
            raise RequestError(
                503,
                f"the server is busy: {self.max_queue} requests are already waiting for the model",
                "retry in a second",
                headers={"Retry-After": "1"},
            )
        loop = asyncio.get_running_loop()
        job.future = loop.create_future()
        self.queue.append(job)
        if self._more is not None:
            self._more.set()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._empty(), name=f"cnnx-batch-{self.name}")
        return job.future

    async def close(self, timeout: float | None = None) -> None:
        """Finish every job already queued (up to ``timeout`` seconds), then stop the model's thread."""
        if self._task is not None and not self._task.done():
            await asyncio.wait([self._task], timeout=timeout)
        self._model.shutdown(wait=False)

    async def _empty(self) -> None:
        while self.queue:
            batch = [j for j in await self._gather() if j.future is not None and not j.future.done()]
            if batch:  # the clients still there (a request that timed out has cancelled its future)
                await self._run(batch)

    async def _gather(self) -> list[Job]:
        """The next batch: the first job waiting, then those that fit behind it."""
        first = self.queue.popleft()
        batch, n = [first], first.size
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_delay
        while True:
            while self.queue and n + self.queue[0].size <= self.max_batch:
                job = self.queue.popleft()
                batch.append(job)
                n += job.size
            wait = deadline - loop.time()
            if self.queue or n >= self.max_batch or not self._arriving or wait <= 0:
                return batch  # full (the next job starts the next batch), or nothing more is coming in time
            self._more = asyncio.Event()
            try:
                await within(wait, self._more.wait())
            except asyncio.TimeoutError:
                pass
            finally:
                self._more = None

    async def _run(self, batch: list[Job]) -> None:
        clf, version = self.current
        images = [j for j in batch if j.uploads is not None]
        tensors = [j for j in batch if j.uploads is None]
        self.observe(sum(j.size for j in batch))
        for jobs, work in ((images, self._classify), (tensors, self._forward)):
            if not jobs:
                continue
            try:
                await work(clf, version, jobs)
            except Exception as exc:  # the model failed on this batch: its requests say so, the next batch runs
                for job in jobs:
                    _settle(job, error=exc)

    async def _off_loop(self, work: Callable, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._model, work, *args)

    async def _classify(self, clf: Classifier, version: int, jobs: list[Job]) -> None:
        uploads = [u for j in jobs for u in j.uploads or []]
        k = max(j.top_k for j in jobs)
        with _preview_folder(any(j.preview for j in jobs)) as folder:
            if len(uploads) <= INLINE_IMAGES and sum(len(u.data) for u in uploads) <= INLINE_BYTES:
                pending = clf.decode(uploads, save_dir=folder)
            else:
                pending = await self._off_loop(clf.decode, uploads, folder)
            answers = await self._off_loop(clf.answers, np.stack(pending.pixels)) if pending.pixels else None
            preds = clf.finish(pending, answers, k)
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

    async def _forward(self, clf: Classifier, version: int, jobs: list[Job]) -> None:
        x = np.concatenate([j.tensor for j in jobs if j.tensor is not None])  # (N, C, H, W) float32
        logits = await self._off_loop(clf.model.run, x)  # (N, K)
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
