"""Concurrent use gives the serial answers: one Classifier shared by 8 threads, two `cnnx infer` processes at once."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from cnnx.runtime import Classifier
from cnnx.testing.bad_inputs import paper
from tests.support import REPO, write_pngs

THREADS = 8


def _images(test_digits: tuple[np.ndarray, np.ndarray], folder: Path, n: int = 120) -> list[str]:
    """``n`` real digits as PNG files, a few as scans, JPEGs and arrays, and two bad files among them."""
    images, labels = test_digits
    paths: list = [str(p) for p in write_pngs(images[:n], labels[:n], folder)]
    for i in range(0, 12, 3):  # photo-like: dark ink on paper, through the general (non-vectorised) path
        paper(i).convert("RGB").save(folder / f"scan-{i}.jpg", quality=85)
        paths.insert(5 * i, str(folder / f"scan-{i}.jpg"))
    (folder / "empty.png").write_bytes(b"")
    Image.new("L", (40, 40), 255).save(folder / "white.png")
    return paths[:40] + [str(folder / "empty.png")] + paths[40:] + [str(folder / "white.png")]


def _answers(predictions: list) -> list[tuple]:
    return [(p.path, p.label, p.probability, p.top_k, p.error) for p in predictions]


def test_a_classifier_shared_by_8_threads_answers_as_a_serial_run(shipped_model, test_digits, tmp_path):
    paths = _images(test_digits, tmp_path)
    clf = Classifier(shipped_model, threads=1, batch_size=32)
    serial = _answers(clf.predict(paths, top_k=3, errors="keep"))
    assert sum(a[4] is None for a in serial) == len(paths) - 2  # the two bad files fail, the rest are answered
    start = threading.Barrier(THREADS)
    results: dict[int, object] = {}

    def work(k: int) -> None:
        start.wait()  # all at once, so decoding and model calls really overlap
        try:
            mine = paths if k % 2 == 0 else paths[::-1]  # half of them walk the list backwards
            answers = _answers(clf.predict(mine, top_k=3, errors="keep"))
            results[k] = answers if k % 2 == 0 else answers[::-1]
        except BaseException as exc:  # reported below: a thread's exception would otherwise vanish
            results[k] = exc

    threads = [threading.Thread(target=work, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert len(results) == THREADS
    for k in range(0, THREADS, 2):
        assert results[k] == serial, k  # same batches as the serial run: identical to the last bit
    for k in range(1, THREADS, 2):  # other batches: the same labels, probabilities within float32 rounding
        got = results[k]
        assert not isinstance(got, BaseException), got
        assert [(a[0], a[1], a[4]) for a in got] == [(a[0], a[1], a[4]) for a in serial]
        np.testing.assert_allclose([a[2] or 0 for a in got], [a[2] or 0 for a in serial], rtol=0, atol=1e-6)


def test_two_infer_processes_at_once_print_what_one_prints(shipped_model, test_digits, tmp_path):
    paths = _images(test_digits, tmp_path / "digits")
    args = [
        sys.executable,
        "-m",
        "cnnx",
        "infer",
        *paths,
        "--model",
        str(shipped_model),
        "--json",
        "--top-k",
        "3",
        "--threads",
        "1",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def start(seen: str) -> subprocess.Popen:
        return subprocess.Popen(
            [*args, "--save-preprocessed", str(tmp_path / seen)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    serial = start("seen-serial").communicate(timeout=300)
    # both write the same files into one --save-preprocessed folder: atomic writes must keep each whole
    pair = [start("seen"), start("seen")]
    outputs = [p.communicate(timeout=300) for p in pair]
    assert [p.returncode for p in pair] == [1, 1]
    for out, err in outputs:
        assert out.replace("seen/", "seen-serial/") == serial[0]
        # two bad files, where the preprocessed images went, and the count
        assert err.replace("/seen\n", "/seen-serial\n") == serial[1] and len(err.splitlines()) == 4
    written = sorted(p.name for p in (tmp_path / "seen").iterdir())
    assert written == sorted(p.name for p in (tmp_path / "seen-serial").iterdir()) and len(written) == len(paths) - 2
    for name in written:
        assert np.array_equal(
            np.asarray(Image.open(tmp_path / "seen" / name)), np.asarray(Image.open(tmp_path / "seen-serial" / name))
        ), name
