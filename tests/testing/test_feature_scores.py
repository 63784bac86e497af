"""bench/feature_scores.py: the feature-space refusal scores it compares with the energy."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from cnnx.core.idx import locate_mnist, read_idx
from cnnx.train.honesty import held_out_indices
from tests.support import MINI_MNIST, REPO

torch = pytest.importorskip("torch")

_spec = importlib.util.spec_from_file_location("bench_feature_scores", REPO / "bench" / "feature_scores.py")
assert _spec is not None and _spec.loader is not None
fs = importlib.util.module_from_spec(_spec)
sys.modules["bench_feature_scores"] = fs
_spec.loader.exec_module(fs)


def _clusters() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    means = np.array([[10.0, 0.0, 0.0], [0.0, 10.0, 0.0]])
    labels = np.repeat([0, 1], 500)
    return means[labels] + rng.normal(0, 1, (1000, 3)), labels, means


def test_mahalanobis_is_highest_at_a_class_mean_and_falls_away_from_every_class() -> None:
    features, labels, means = _clusters()
    scorer = fs.FeatureScores(features, labels, 2)
    at_mean, near, far = scorer.mahalanobis(np.array([means[0], means[1] + 1.0, [-30.0, -30.0, 5.0]]))
    assert at_mean == pytest.approx(0.0, abs=0.05)
    assert at_mean > near > far
    assert near == pytest.approx(-3.0, rel=0.2)  # one unit in each of 3 unit-variance directions


def test_knn_gives_a_training_point_similarity_one_and_orders_by_direction() -> None:
    features, labels, _ = _clusters()
    scorer = fs.FeatureScores(features, labels, 2)
    first = scorer.knn(features[:5], 1)
    assert first == pytest.approx(np.ones(5))
    tenth = scorer.knn(features[:5], 10)
    assert np.all(tenth <= first + 1e-12) and np.all(tenth > 0.9)
    assert scorer.knn(np.array([[0.0, 0.0, 1.0]]), 1)[0] < 0.5  # a direction no training point has


def test_features_are_what_the_last_layer_reads() -> None:
    from cnnx.train.models import build_model

    torch.manual_seed(0)
    model = build_model("mnist-bn", 10).eval()
    pixels = np.random.default_rng(1).integers(0, 256, (5, 1, 28, 28), dtype=np.uint8)
    features, logits = fs.features_and_logits(model, pixels, (0.1307,), (0.3081,))
    assert features.shape == (5, 9 * 128) and logits.shape == (5, 10)
    with torch.no_grad():
        again = model.head(torch.from_numpy(features)).numpy()
    np.testing.assert_allclose(again, logits, rtol=1e-5, atol=1e-5)


def test_fit_digits_are_trained_digits_never_held_out_or_behind_the_photo_like_tune_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fs.honest, "PHOTO_TUNE", 300)  # the sample's 1,000 would all be tune sources
    files = locate_mnist(MINI_MNIST)
    assert files is not None
    x, y = read_idx(files["train-images"]), read_idx(files["train-labels"])
    got_x, got_y = fs.fit_digits(MINI_MNIST, {"holdout": 0.08, "seed": 3}, 400)
    assert got_x.shape == (400, 1, 28, 28) and got_x.dtype == np.uint8
    where = {x[i].tobytes(): i for i in range(len(y))}
    index = np.array([where[im[0].tobytes()] for im in got_x])
    np.testing.assert_array_equal(y[index], got_y)
    _, held = held_out_indices(len(y), 0.08, 3)
    assert held is not None and not set(index) & set(held.tolist())
    assert not set(index) & set(fs.honest.tune_digit_order(len(y))[:300].tolist())
