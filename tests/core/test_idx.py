"""IDX files read ahead in a thread (what `cnnx train mnist` does while torch imports) give what a
plain read gives, errors included."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from cnnx.cli.train import prefetch_mnist
from cnnx.core import idx
from cnnx.core.errors import DataNotFoundError
from tests.support import MINI_MNIST


def _files() -> list[Path]:
    return sorted(MINI_MNIST.glob("*-ubyte.gz"))


def test_a_prefetched_file_reads_as_the_file_itself_and_is_then_let_go():
    plain = {p.name: idx.read_idx(p).copy() for p in _files()}
    idx.prefetch(_files())
    assert set(idx._PREFETCHED) == {p.resolve() for p in _files()}
    for p in _files():
        assert np.array_equal(idx.read_idx(p), plain[p.name])
    assert idx._PREFETCHED == {}  # the bytes are not kept once read


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda data: data[: len(data) // 2], "cannot read"),  # gzip cut off
        (lambda data: data[:10] + bytes(len(data) - 10), "cannot read"),  # gzip body zeroed
        (lambda data: b"not gzip at all", "cannot read"),
        (lambda data: gzip.compress(gzip.decompress(data)[:-100]), "truncated"),  # a valid gzip of a short file
    ],
)
def test_a_damaged_file_is_reported_the_same_whether_prefetched_or_not(tmp_path, damage, words):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(damage((MINI_MNIST / path.name).read_bytes()))
    with pytest.raises(DataNotFoundError, match=words) as plain:
        idx.read_idx(path)
    idx.prefetch([path])
    with pytest.raises(DataNotFoundError, match=words) as fetched:
        idx.read_idx(path)
    assert str(fetched.value) == str(plain.value)


def test_train_prefetches_the_mnist_files_it_finds_and_nothing_elsewhere(tmp_path, monkeypatch):
    shutil.copytree(MINI_MNIST, tmp_path / "data")
    prefetch_mnist(str(tmp_path / "data"))
    found = {p.resolve() for p in (tmp_path / "data").glob("*-ubyte.gz")}
    assert len(found) == 4 and found <= set(idx._PREFETCHED)
    for p in found:
        idx.read_idx(p)
    monkeypatch.setenv("CNNX_DATA_DIR", str(tmp_path / "empty"))
    prefetch_mnist(None)  # the default folder holds no MNIST: nothing to read ahead
    assert idx._PREFETCHED == {}
